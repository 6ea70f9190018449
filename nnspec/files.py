"""Reading and writing the files nnspec's commands take and make. Every write is atomic."""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from . import jsontext, npy
from .errors import InputDataError, OutputError
from .feeds import check_arrays
from .ir import TensorInfo
from .limits import Limits, human_bytes

Write = Callable[[IO[bytes]], None] | bytes


def atomic_write(path: str | Path, write: Write) -> Path:
    """Write through a temporary file in the same folder, then rename it into place.

    A reader sees either the old file or the complete new one, never a part; on error no file is left.
    """
    return atomic_write_all([(Path(path), write)])[0]


def atomic_write_all(files: Sequence[tuple[Path, Write]]) -> list[Path]:
    """Several files written as `atomic_write` writes one: every one completely under a temporary name
    first, then each renamed into place, in order. On error none is replaced and no temporary file is left.

    (A model and its data file: the data file goes first, so that a reader of the new model finds its data.)
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in files:
            staged.append((_write_temporary(Path(path), write), Path(path)))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return [path for _, path in staged]


def _write_temporary(path: Path, write: Write) -> str:
    """`write` to a new temporary file beside `path`, flushed to disk; its name."""
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
            # mkstemp creates the file readable by its owner only; give it the permissions a plain
            # open() would (or the replaced file's), so a compiled model can be shipped as it is.
            os.fchmod(f.fileno(), _mode_for(path))
            os.fsync(f.fileno())
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return tmp


def _mode_for(path: Path) -> int:
    """The replaced file's permission bits, or those of a new file under the process's umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Errors met while reading `path` (`what` it should be: "an input file") as InputDataError naming it:
    a damaged array, a missing file, a folder, an unreadable file."""
    try:
        yield
    except npy.NpyError as exc:
        raise InputDataError(str(exc), source=str(path)) from None
    except InputDataError as exc:
        exc.source = str(path)
        raise
    except FileNotFoundError:
        raise InputDataError(f"expected {what}, found no such file", source=str(path)) from None
    except IsADirectoryError:
        raise InputDataError(f"expected {what}, found a folder", source=str(path)) from None
    except OSError as exc:
        raise InputDataError(f"expected a readable file, found: {exc.strerror or exc}", source=str(path)) from None


def load_arrays(
    path: str | Path, inputs: tuple[TensorInfo, ...], limits: Limits | None = None
) -> dict[str, np.ndarray]:
    """Arrays for a model's inputs, keyed by input name, from one file:

    - `.npy`: one array, for a single-input model;
    - `.npz`: arrays keyed by input name;
    - `.csv`: a single-input model's samples, one per line, each flattened in row-major order;
      a first line that holds no number at all is a header and is skipped;
    - `.json`: an object keyed by input name whose values are nested lists, or, for a single-input
      model, the nested list alone.

    Each `.npy` array's header is read first: object arrays are refused without unpickling, and
    arrays larger than `NNSPEC_MAX_BATCH_BYTES` are refused before their data is read. Text files
    over that size are refused before they are parsed. Names and shapes are checked against
    `inputs`; errors name the file (and, in a CSV file, the line).
    """
    path = Path(path)
    limits = limits or Limits.from_env()
    limit = limits.max_batch_bytes
    suffix = path.suffix.lower()
    with reading(path, "an input file"):
        if suffix == ".npy":
            _single_input(inputs, "a .npy file, which holds one array")
            with path.open("rb") as f:
                arrays = {inputs[0].name: _read_npy(f, repr(path.name), limit)}
        elif suffix == ".npz":
            arrays = read_npz(path, limits)
        elif suffix == ".csv":
            arrays = {
                _single_input(inputs, "a .csv file, which holds one table").name: _read_csv(path, inputs[0], limit)
            }
        elif suffix == ".json":
            arrays = _read_json(path, inputs, limits)
        else:
            raise InputDataError(f"expected a .npy, .npz, .csv or .json file, found {path.name!r}")
        return check_arrays(inputs, arrays)


def _single_input(inputs: tuple[TensorInfo, ...], found: str) -> TensorInfo:
    """The model's one input; a file that holds one array cannot feed more."""
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise InputDataError(
            f"expected a .npz or .json file keyed by input name (the model has {len(inputs)} inputs: {names}), "
            f"found {found}"
        )
    return inputs[0]


def _read_npy(f: IO[bytes], what: str, limit: int, used: int = 0) -> np.ndarray:
    """One .npy stream: header checked (no objects, at most `limit - used` bytes) before any data is read."""
    header = npy.read_header(f, what)
    if used + header.nbytes > limit:
        found = f"{human_bytes(header.nbytes)} in {what}" + (
            f", {human_bytes(used + header.nbytes)} with the arrays before it" if used else ""
        )
        raise InputDataError(
            f"expected at most {human_bytes(limit)} of input data (NNSPEC_MAX_BATCH_BYTES), found {found} "
            f"(shape {list(header.shape)}, dtype {header.dtype})"
        )
    return npy.read_data(f, what)


def read_npz(path: Path, limits: Limits) -> dict[str, np.ndarray]:
    """Every array of an .npz file by name, each member's size checked before it is inflated, all of them
    within the batch memory limit (input files here, `nnspec train`'s examples)."""
    arrays: dict[str, np.ndarray] = {}
    used = 0
    with npy.open_npz(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise InputDataError(f"expected only .npy arrays in {path.name!r}, found {info.filename!r}")
            name = info.filename[:-4]
            what = f"{path.name}[{name!r}]"
            if (refused := npy.member_problem(info, what, limits)) is not None:
                raise InputDataError(refused)
            # Only the header is inflated before the size check; read_data then reads exactly the bytes
            # the header declares, however large the member claims to be.
            with npy.damage_as_npy_error(what), archive.open(info) as member:
                arrays[name] = _read_npy(member, what, limits.max_batch_bytes, used)
            used += arrays[name].nbytes
    return arrays


# --- text inputs: CSV and JSON ------------------------------------------------------------------

# A number as people write it in CSV: decimal, optional exponent, or inf/nan (as .npy files may hold).
# Python's float() alone would also take "1_000"; nothing else is ever evaluated.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE)


def check_text_size(path: Path, limit: int) -> None:
    # NOTE: a text number takes at least two characters ("0,") and becomes 8 bytes of float64, so the
    # exact check is on the numbers parsed (below); this one keeps a huge file from being read at all.
    size = path.stat().st_size
    if size > limit:
        raise InputDataError(
            f"expected at most {human_bytes(limit)} of input data (NNSPEC_MAX_BATCH_BYTES), "
            f"found a {human_bytes(size)} {path.suffix.lower()} file (large batches belong in .npy files)"
        )


def _check_count(count: int, limit: int, where: str) -> None:
    if count * 8 > limit:
        raise InputDataError(
            f"expected at most {human_bytes(limit)} of input data (NNSPEC_MAX_BATCH_BYTES), found {count} numbers "
            f"{where} ({human_bytes(count * 8)} as float64)"
        )


def _read_csv(path: Path, info: TensorInfo, limit: int) -> np.ndarray:
    """`[N, *info.shape]` float64 from one sample per line, `prod(info.shape)` comma-separated numbers each."""
    check_text_size(path, limit)
    width = math.prod(info.shape)
    columns = (
        f"{width} comma-separated number{'s' if width > 1 else ''} (input {info.name!r} has shape {list(info.shape)})"
    )
    data = path.read_bytes()
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode()  # a spreadsheet's byte-order mark is not data
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start + len(codecs.BOM_UTF8) * data.startswith(codecs.BOM_UTF8)) + 1
        raise InputDataError(
            f"line {line}: expected UTF-8 text, found the byte 0x{exc.object[exc.start]:02x}"
        ) from None
    rows: list[np.ndarray] = []
    header = False
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            line = reader.line_num
            fields = [field.strip() for field in row]
            if fields in ([], [""]):
                continue  # a blank line
            numeric = [bool(_NUMBER.fullmatch(field)) for field in fields]
            if not rows and not header and not any(numeric):
                header = True  # column names
                if len(fields) != width:
                    raise InputDataError(f"line {line} (a header): expected {columns}, found {len(fields)} columns")
                continue
            if len(fields) != width:
                raise InputDataError(f"line {line}: expected {columns}, found {len(fields)}")
            if not all(numeric):
                column = numeric.index(False)
                found = repr(fields[column]) if fields[column] else "an empty field"
                hint = " (a header line names every column)" if not rows and not header and fields[column] else ""
                raise InputDataError(f"line {line}, column {column + 1}: expected a number, found {found}{hint}")
            rows.append(np.array([float(field) for field in fields]))
            _check_count(len(rows) * width, limit, f"by line {line}")
    except csv.Error as exc:
        raise InputDataError(f"line {reader.line_num}: expected CSV, found {exc}") from None
    if not rows:
        raise InputDataError(
            f"expected one line of {columns} per sample, found {'only a header' if header else 'none'}"
        )
    return np.stack(rows).reshape(len(rows), *info.shape)


def _read_json(path: Path, inputs: tuple[TensorInfo, ...], limits: Limits) -> dict[str, np.ndarray]:
    """Nested lists keyed by input name, or one nested list for a single-input model."""
    limit = limits.max_batch_bytes
    data = read_json(path, limits)
    if isinstance(data, list):
        data = {_single_input(inputs, "a bare JSON list, which holds one array").name: data}
    elif not isinstance(data, dict):
        raise InputDataError(
            f"expected a JSON object keyed by input name (or, for a single-input model, a list of samples), "
            f"found {_json_kind(data)}"
        )
    shapes = {i.name: i.shape for i in inputs}
    # An unknown name gets a placeholder, so that check_arrays names it (with a suggestion) unread.
    arrays = {
        name: _nested_array(value, name, shapes[name]) if name in shapes else np.empty(0)
        for name, value in data.items()
    }
    _check_count(sum(a.size for a in arrays.values()), limit, "in all")
    return arrays


def read_json(path: Path, limits: Limits) -> Any:
    """A JSON file of data (input arrays, training examples), parsed: its size within the batch limit and its
    text within the spec limits (nesting, numbers) checked first, an invalid file an InputDataError."""
    check_text_size(path, limits.max_batch_bytes)
    text = path.read_bytes()
    refused = jsontext.problem(text, limits)
    if refused is not None:
        raise InputDataError(str(refused))
    try:
        return jsontext.loads(text)
    except ValueError as exc:  # orjson.JSONDecodeError is one
        raise InputDataError(f"expected JSON, found invalid JSON ({exc})") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return "an object" if isinstance(value, dict) else "a list"


def _nested_array(value: Any, name: str, expected: tuple[int, ...]) -> np.ndarray:
    """A rectangular nested list of numbers (never booleans, strings or null) as float64.

    Lists nested deeper than `[N, *shape]` are refused as they are met; other shapes are left to
    check_arrays, whose message says what was expected.
    """
    flat: list[int | float] = []
    ndim = 1 + len(expected)

    def walk(item: Any, where: str, level: int) -> tuple[int, ...]:
        if not isinstance(item, list):
            if type(item) not in (int, float):
                place = f"a number at {where}" if where else "a nested list of numbers"
                raise InputDataError(f"input {name!r}: expected {place}, found {_json_kind(item)}")
            flat.append(item)
            return ()
        if level == ndim:
            raise InputDataError(
                f"input {name!r}: expected shape {['N', *expected]} ({ndim} levels of lists), found a deeper list at {where}"
            )
        if item and all(type(x) in (int, float) for x in item):  # the common innermost level, in one step
            flat.extend(item)
            return (len(item),)
        shapes = [walk(x, f"{where}[{i}]", level + 1) for i, x in enumerate(item)]
        for i, found in enumerate(shapes):
            if found != shapes[0]:
                raise InputDataError(
                    f"input {name!r}: expected {_describe_shape(shapes[0])} at {where}[{i}] (as at {where}[0]), "
                    f"found {_describe_shape(found)}"
                )
        return (len(item), *(shapes[0] if shapes else ()))

    shape = walk(value, "", 0)
    return np.array(flat, dtype=np.float64).reshape(shape)


def _describe_shape(shape: tuple[int, ...]) -> str:
    return "a number" if not shape else f"a list of shape {list(shape)}"


OUTPUT_SUFFIXES = (".npy", ".npz", ".json", ".csv")

# Significant digits that read back as the same number: 9 for float32, 17 for float64 (IEEE 754, 5.12.2).
ROUND_TRIP_DIGITS = {np.dtype(np.float32): 9, np.dtype(np.float64): 17}


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Arrays by name, written atomically in the format the suffix names:

    - `.npy`: a single array; `.npz`: keyed by name;
    - `.json`: an object keyed by name, each a nested list (NaN and infinity, which JSON cannot hold, as null);
    - `.csv`: a row per sample, every array's values side by side in row-major order, under a header that
      names each column (`probs[0]`, `probs[1]`, ...); numbers with enough digits to read back exactly.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(arrays) != 1:
            raise InputDataError(
                f"the model has {len(arrays)} outputs ({', '.join(arrays)}); write them to a .npz, .json or .csv file",
                source=str(path),
            )
        (array,) = arrays.values()
        return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
    if suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return atomic_write(path, buffer.getvalue())
    if suffix == ".json":
        return atomic_write(path, json_text({name: _nested_list(a) for name, a in arrays.items()}).encode())
    if suffix == ".csv":
        return atomic_write(path, _csv_text(arrays).encode())
    raise InputDataError(
        f"expected an output file ending in {', '.join(OUTPUT_SUFFIXES)}, found {path.name!r}", source=str(path)
    )


def _nested_list(array: np.ndarray) -> Any:
    """Nested lists of numbers that read back as exactly the array's values (in its dtype); NaN and infinity,
    which JSON cannot hold, as None."""
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        # The shortest decimal that reads back as the same float32 (56.831913, not 56.831912994384766).
        values = [float(str(v)) for v in array.ravel()]
    else:
        values = array.ravel().tolist()
    flat: list[Any] = [v if not isinstance(v, float) or math.isfinite(v) else None for v in values]
    for size in reversed(array.shape[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


def json_text(data: Any, indent: str = "  ") -> str:
    """JSON as people write specs: an object's keys one per line, a list of numbers on one line (so a matrix
    reads row by row), other lists one item per line."""

    def dump(value: Any, depth: int) -> str:
        pad, inner = indent * depth, indent * (depth + 1)
        if isinstance(value, dict) and value:
            items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {dump(v, depth + 1)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
            return "[\n" + ",\n".join(f"{inner}{dump(v, depth + 1)}" for v in value) + f"\n{pad}]"
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    return dump(data, 0) + "\n"


def _csv_text(arrays: dict[str, np.ndarray]) -> str:
    """A row per sample, the arrays' values side by side; a header names each column."""
    header, columns = [], []
    for name, array in arrays.items():
        per_sample = array.shape[1:]
        header += [f"{name}[{','.join(map(str, index))}]" for index in np.ndindex(*per_sample)]
        columns.append(array.reshape(array.shape[0], -1))
    table = np.concatenate(columns, axis=1) if columns else np.zeros((0, 0))
    digits = ROUND_TRIP_DIGITS.get(table.dtype, 17)
    buffer = io.StringIO()
    np.savetxt(buffer, table, fmt=f"%.{digits}g", delimiter=",", header=",".join(header), comments="")
    return buffer.getvalue()
