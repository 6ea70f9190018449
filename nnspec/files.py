"""Reading and writing the files nnspec's commands take and make. Every write is atomic."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from .errors import InputDataError
from .ir import TensorInfo


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None] | bytes) -> Path:
    """Write through a temporary file in the same folder, then rename it into place.

    A reader sees either the old file or the complete new one, never a part; on error no file is left.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes | bytearray):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_arrays(path: str | Path, inputs: tuple[TensorInfo, ...]) -> dict[str, np.ndarray]:
    """Arrays for a model's inputs from `.npy` (single-input models) or `.npz` (keyed by input name)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            if len(inputs) != 1:
                names = ", ".join(i.name for i in inputs)
                raise InputDataError(f"the model has {len(inputs)} inputs ({names}); give them in one .npz keyed by name", source=str(path))
            return {inputs[0].name: np.load(path, allow_pickle=False)}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    except InputDataError:
        raise
    except FileNotFoundError:
        raise InputDataError("no such file", source=str(path)) from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        why = "it holds Python objects, which nnspec never unpickles" if "pickle" in str(exc) else str(exc)
        raise InputDataError(f"cannot read arrays: {why}", source=str(path)) from None
    raise InputDataError(f"expected a .npy or .npz file, found {path.name!r}", source=str(path))


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """`.npy` for a single array, `.npz` keyed by name for any number."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(arrays) != 1:
            raise InputDataError(
                f"the model has {len(arrays)} outputs ({', '.join(arrays)}); write them to a .npz file", source=str(path)
            )
        (array,) = arrays.values()
        return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return atomic_write(path, buffer.getvalue())
    raise InputDataError(f"expected an output file ending in .npy or .npz, found {path.name!r}", source=str(path))
