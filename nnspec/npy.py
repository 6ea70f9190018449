""".npy arrays and .npz members read without pickle, header first: nothing is read before its dtype
and size are known. Used for weight files (nnspec.weights) and input files (nnspec.files) alike.
"""

from __future__ import annotations

import math
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .limits import Limits, env_var, human_bytes

# What zipfile raises on a damaged archive or member: bad CRC or header, bad deflate data, early end,
# an unknown compression or version, fields that do not unpack or decode, a member flagged as encrypted
# (RuntimeError: "password required"). The last three were found by tests/test_fuzz.py.
ZIP_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    ValueError,
    struct.error,
    OverflowError,
    RuntimeError,
)


class NpyError(Exception):
    """Why a file or stream is not a usable numeric array; the message reads `expected ..., found ...`.

    `whole_file` is True when the file itself is the problem (not a zip), not one array in it.
    """

    def __init__(self, message: str, *, whole_file: bool = False) -> None:
        super().__init__(message)
        self.whole_file = whole_file


@dataclass(frozen=True)
class Header:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(f: IO[bytes], what: str) -> Header:
    """The header of the .npy stream `f` (named `what` in messages); object arrays are refused here."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        with warnings.catch_warnings():  # a damaged header's text may draw Python's escape-sequence warnings
            warnings.simplefilter("ignore")
            shape, _fortran, dtype = read(f)
    except (zipfile.BadZipFile, zlib.error):
        raise  # the zip stream under the header is damaged: the caller's damage_as_npy_error says so
    except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError, TokenError, SyntaxError...
        # NOTE: the header is at most a few KiB of Python-literal text, parsed without evaluation; any
        # failure to parse it means the file is not an array, whatever numpy's parser raised.
        detail = str(exc) or type(exc).__name__
        raise NpyError(f"expected a .npy array, found {what}, which is not one ({detail})") from None
    if dtype.hasobject:
        raise NpyError(
            f"expected real numbers (int or float), found Python objects in {what} (nnspec never unpickles; "
            "save a numeric array)"
        )
    return Header(tuple(shape), dtype)


def read_data(f: IO[bytes], what: str) -> np.ndarray:
    """The array of a .npy stream whose header was checked: exactly the bytes the header declares."""
    f.seek(0)
    try:
        return np.lib.format.read_array(f, allow_pickle=False)
    except ValueError as exc:
        raise NpyError(f"expected a complete .npy array, found {what} damaged ({exc})") from None


@contextmanager
def open_npz(path: Path) -> Iterator[zipfile.ZipFile]:
    """The zip archive at `path`; NpyError when it is not one."""
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_DAMAGE:
        raise NpyError(f"expected a .npz (zip) file, found {path.name!r}, which is not one", whole_file=True) from None
    with archive:
        yield archive


@contextmanager
def damage_as_npy_error(what: str) -> Iterator[None]:
    """Turn a zip member's damage (bad CRC, deflate data, early end) into an NpyError naming it."""
    try:
        yield
    except ZIP_DAMAGE as exc:
        raise NpyError(f"expected an intact .npz file, found {what} damaged ({exc})") from None


def member_problem(info: zipfile.ZipInfo, what: str, limits: Limits) -> str | None:
    """Why an .npz member is refused from its declared decompressed size, before any of it is inflated.

    The zip directory may understate the size; readers then still stop at what the .npy header declares.
    """
    if info.file_size <= limits.max_npz_member_bytes:
        return None
    return (
        f"expected an .npz member of at most {human_bytes(limits.max_npz_member_bytes)} decompressed "
        f"({env_var('max_npz_member_bytes')}), found {what}, which declares {human_bytes(info.file_size)} "
        f"({human_bytes(info.compress_size)} compressed)"
    )
