"""Turn a weight source (inline numbers, a file, an initializer) into an array of a known shape.

Files are confined to the spec's folder, read without pickle, and checked against the expected
shape from their header before their data is read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

from . import npy
from .errors import Loc, WeightError, unknown
from .fields import FileRef, Init, Inline, WeightSource
from .ir import Shape
from .limits import Limits

# A .npy header is at most a few hundred bytes; 64 KiB is the format's own upper bound (v2/v3 headers
# may be longer, but numpy refuses headers over 10 000 bytes by default when not told otherwise).
_NPY_HEADER_ALLOWANCE = 1 << 16


def materialize(
    source: WeightSource,
    shape: Shape,
    reason: str,
    dtype: np.dtype,
    base_dir: Path | None,
    loc: Loc,
    limits: Limits | None = None,
) -> np.ndarray:
    """The array for `source`, of exactly `shape`, in `dtype`; WeightError otherwise."""
    if isinstance(source, Inline):
        array = source.array
        _check_shape(array.shape, shape, reason, loc)
    elif isinstance(source, FileRef):
        array = _load_file(source, shape, reason, base_dir, loc, limits or Limits.from_env())
    else:
        array = _initialize(source, shape)
    with np.errstate(over="ignore"):  # an overflow becomes inf, reported below with its index
        out = np.ascontiguousarray(array, dtype=dtype)
    if not np.isfinite(out).all():
        where = [int(i) for i in np.argwhere(~np.isfinite(out))[0]]
        original = array[tuple(where)]
        origin = f" in {_describe(source)}" if isinstance(source, FileRef) else ""
        if np.isfinite(original):
            found = f"{original} at index {where}{origin}, too large for {dtype.name}"
        else:
            found = f"{original} at index {where}{origin}"
        raise WeightError(f"expected finite numbers, found {found}", loc)
    return out


def _describe(ref: FileRef) -> str:
    return repr(ref.file) if ref.key is None else f"{ref.file}[{ref.key!r}]"


def _check_shape(found: Sequence[int], expected: Shape, reason: str, loc: Loc) -> None:
    if tuple(found) != tuple(expected):
        raise WeightError(f"expected shape {list(expected)} ({reason}), found {list(found)}", loc)


# --- files -------------------------------------------------------------------------------------


def resolve_inside(base_dir: Path | None, relative: str, loc: Loc) -> Path:
    """`relative` resolved (symlinks followed) inside `base_dir`; refuses anything that leaves it."""
    if base_dir is None:
        raise WeightError(
            f"expected a spec folder to find {relative!r} in, found none: this spec was not loaded from a file "
            "(pass base_dir to nnspec.from_dict)",
            loc,
        )
    if Path(relative).is_absolute() or relative.startswith("~"):
        raise WeightError(f"expected a path relative to the spec's folder, found the absolute path {relative!r}", loc)
    base = base_dir.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        via = "" if target == (base / relative).absolute() else f" (it leads to {target})"
        raise WeightError(
            f"expected a path inside the spec's folder ({base}), found {relative!r}, which leaves it{via}", loc
        )
    return target


def _load_file(ref: FileRef, shape: Shape, reason: str, base_dir: Path | None, loc: Loc, limits: Limits) -> np.ndarray:
    file_loc = (*loc, "file")
    path = resolve_inside(base_dir, ref.file, file_loc)
    if not path.is_file():
        found = "a folder" if path.is_dir() else "no such file"
        raise WeightError(f"expected a file {ref.file!r} (looked for {path}), found {found}", file_loc)
    try:
        if ref.sha256 is not None:
            found = file_sha256(path)
            if found != ref.sha256:
                raise WeightError(
                    f"expected the file {ref.file!r} to have SHA-256 {ref.sha256}, found {found} (it has changed)",
                    (*loc, "sha256"),
                )
        if ref.key is None:
            with path.open("rb") as f:
                return _read_npy(f, shape, reason, loc, repr(ref.file))
        return _read_npz_member(path, ref, shape, reason, loc, limits)
    except npy.NpyError as exc:
        raise WeightError(str(exc), file_loc if exc.whole_file else loc) from None
    except OSError as exc:
        raise WeightError(f"expected a readable file, found {ref.file!r}: {exc.strerror or exc}", file_loc) from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weights may be far larger than memory allows twice)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_npy(f: IO[bytes], shape: Shape, reason: str, loc: Loc, what: str) -> np.ndarray:
    """Read one .npy stream, checking the header's dtype and shape before reading any data."""
    header = npy.read_header(f, what)
    if header.dtype.kind not in "iuf":
        raise WeightError(f"expected real numbers (int or float), found dtype {header.dtype} in {what}", loc)
    _check_shape(header.shape, shape, reason, loc)
    return npy.read_data(f, what)


def _read_npz_member(path: Path, ref: FileRef, shape: Shape, reason: str, loc: Loc, limits: Limits) -> np.ndarray:
    what = _describe(ref)
    with npy.open_npz(path) as archive:
        names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
        if ref.key not in names:
            assert ref.key is not None
            if not names:
                raise WeightError(f"expected an array {ref.key!r}, found {ref.file!r} holds no arrays", (*loc, "key"))
            raise WeightError(unknown("array", ref.key, names, f" in {ref.file!r}"), (*loc, "key"))
        info = archive.getinfo(f"{ref.key}.npy")
        if (refused := npy.member_problem(info, what, limits)) is not None:
            raise WeightError(refused, loc)
        expected_bytes = math.prod(shape) * 8 + _NPY_HEADER_ALLOWANCE  # at most 8 bytes per real number
        if info.file_size > expected_bytes:
            raise WeightError(
                f"expected at most {expected_bytes} bytes for an array of shape {list(shape)}, "
                f"found {what} inflates to {info.file_size} bytes",
                loc,
            )
        with npy.damage_as_npy_error(what), archive.open(info) as member:
            return _read_npy(member, shape, reason, loc, what)


# --- initializers ------------------------------------------------------------------------------


def _uniform01(seed: int, count: int, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """`count` numbers in [0, 1) from PCG64's raw stream, stable across NumPy versions: float64 of 53 random
    bits, or float32 of 24."""
    bits = np.random.PCG64(seed).random_raw(count)
    mantissa = np.finfo(dtype).nmant + 1
    return (bits >> np.uint64(64 - mantissa)).astype(dtype) * dtype(2.0**-mantissa)


def _normal(seed: int, count: int, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """Standard normal numbers by Box-Muller on the raw stream (not Generator.normal, which may change), in
    `dtype` arithmetic (float32: NumPy's float32 logarithm, sine and cosine are vectorized, its float64 ones not
    everywhere; 24-bit uniforms, so the tails end at 5.8)."""
    pairs = (count + 1) // 2
    u = _uniform01(seed, 2 * pairs, dtype)
    radius = np.sqrt(dtype(-2.0) * np.log1p(-u[:pairs]))
    angle = dtype(2.0 * np.pi) * u[pairs:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]


def _fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out): [units, in_features] gives (in_features, units); a convolution's
    [filters, in_channels, *kernel] follows the receptive field, (in_channels, filters) x prod(kernel)."""
    if len(shape) >= 2:
        field = math.prod(shape[2:])
        return shape[1] * field, shape[0] * field
    return shape[0], shape[0]


def _initialize(init: Init, shape: Shape) -> np.ndarray:
    count = math.prod(shape)
    p = init.params
    if init.init == "zeros":
        return np.zeros(shape)
    if init.init == "ones":
        return np.ones(shape)
    if init.init == "constant":
        return np.full(shape, p["value"])
    if init.init == "uniform":
        values = p["low"] + (p["high"] - p["low"]) * _uniform01(p["seed"], count)
    elif init.init == "normal":
        values = p["mean"] + p["std"] * _normal(p["seed"], count)
    elif init.init == "glorot_uniform":
        fan_in, fan_out = _fans(shape)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        values = -limit + 2 * limit * _uniform01(p["seed"], count)
    elif init.init == "he_normal":
        fan_in, _ = _fans(shape)
        values = math.sqrt(2.0 / fan_in) * _normal(p["seed"], count)
    else:  # pragma: no cover - the spec stage refuses unknown initializers
        raise AssertionError(init.init)
    return values.reshape(shape)
