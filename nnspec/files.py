"""Reading and writing the files nnspec's commands take and make. Every write is atomic."""

from __future__ import annotations

import io
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from .errors import InputDataError, OutputError
from .feeds import check_arrays
from .ir import TensorInfo
from .limits import Limits, human_bytes


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes) -> Path:
    """Write through a temporary file in the same folder, then rename it into place.

    A reader sees either the old file or the complete new one, never a part; on error no file is left.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"expected a file name to write, found a folder: {path}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes | bytearray):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def load_arrays(
    path: str | Path, inputs: tuple[TensorInfo, ...], limits: Limits | None = None
) -> dict[str, np.ndarray]:
    """Arrays for a model's inputs from `.npy` (single-input models) or `.npz` (keyed by input name).

    Each array's header is read first: object arrays are refused without unpickling, and arrays
    larger than `NNSPEC_MAX_BATCH_BYTES` are refused before their data is read. Names and shapes are
    checked against `inputs`; errors name the file.
    """
    path = Path(path)
    limit = (limits or Limits.from_env()).max_batch_bytes
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if len(inputs) != 1:
                names = ", ".join(i.name for i in inputs)
                raise InputDataError(
                    f"expected a .npz file keyed by input name (the model has {len(inputs)} inputs: {names}), "
                    "found a .npy file, which holds one array"
                )
            with path.open("rb") as f:
                arrays = {inputs[0].name: _read_npy(f, repr(path.name), limit)}
        elif suffix == ".npz":
            arrays = _read_npz(path, limit)
        else:
            raise InputDataError(f"expected a .npy or .npz file, found {path.name!r}")
        return check_arrays(inputs, arrays)
    except InputDataError as exc:
        exc.source = str(path)
        raise
    except FileNotFoundError:
        raise InputDataError("expected an input file, found no such file", source=str(path)) from None
    except IsADirectoryError:
        raise InputDataError("expected an input file, found a folder", source=str(path)) from None
    except OSError as exc:
        raise InputDataError(f"expected a readable file, found: {exc.strerror or exc}", source=str(path)) from None


def _read_npy(f: IO[bytes], what: str, limit: int, used: int = 0) -> np.ndarray:
    """One .npy stream: header checked (no objects, at most `limit - used` bytes) before any data is read."""
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(f)
    except (ValueError, EOFError) as exc:
        raise InputDataError(f"expected a .npy array, found {what}, which is not one ({exc})") from None
    if dtype.hasobject:
        raise InputDataError(
            f"expected real numbers (int or float), found Python objects in {what} (nnspec never unpickles; "
            "save a numeric array)"
        )
    size = math.prod(shape) * dtype.itemsize
    if used + size > limit:
        found = f"{human_bytes(size)} in {what}" + (
            f", {human_bytes(used + size)} with the arrays before it" if used else ""
        )
        raise InputDataError(
            f"expected at most {human_bytes(limit)} of input data (NNSPEC_MAX_BATCH_BYTES), found {found} "
            f"(shape {list(shape)}, dtype {dtype})"
        )
    f.seek(0)
    try:
        return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        raise InputDataError(f"expected a complete .npy array, found {what} damaged ({exc})") from None


def _read_npz(path: Path, limit: int) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputDataError(f"expected a .npz (zip) file, found {path.name!r}, which is not one") from None
    arrays: dict[str, np.ndarray] = {}
    used = 0
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise InputDataError(f"expected only .npy arrays in {path.name!r}, found {info.filename!r}")
            name = info.filename[:-4]
            what = f"{path.name}[{name!r}]"
            try:
                with archive.open(info) as member:
                    # Only the header is inflated before the size check; read_array then reads exactly
                    # the bytes the header declares, however large the member claims to be.
                    arrays[name] = _read_npy(member, what, limit, used)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise InputDataError(f"expected an intact .npz file, found {what} damaged ({exc})") from None
            used += arrays[name].nbytes
    return arrays


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """`.npy` for a single array, `.npz` keyed by name for any number."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(arrays) != 1:
            raise InputDataError(
                f"the model has {len(arrays)} outputs ({', '.join(arrays)}); write them to a .npz file",
                source=str(path),
            )
        (array,) = arrays.values()
        return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return atomic_write(path, buffer.getvalue())
    raise InputDataError(f"expected an output file ending in .npy or .npz, found {path.name!r}", source=str(path))
