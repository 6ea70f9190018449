"""Resource limits, checked from declared sizes before anything is allocated.

Every limit has a default with its reason, an environment variable (`NNSPEC_MAX_WEIGHT_BYTES`, ...)
and a command-line form (`nnspec --limit max-spec-bytes=512MiB ...`). `nnspec limits` prints them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

Unit = Literal["bytes", "count"]


def _limit(default: int, unit: Unit, what: str, why: str) -> Any:
    return field(default=default, metadata={"unit": unit, "what": what, "why": why})


@dataclass(frozen=True)
class Limits:
    """The resource limits in force; `Limits()` holds the defaults, `Limits.from_env()` what is set."""

    max_weight_bytes: int = _limit(
        4 << 30,
        "bytes",
        "weights materialized, in the spec's dtype",
        "memory: compile holds the weights once and run about twice, check 4 to 5x (measured on 3 GB of weights: "
        "3.7x, and 4.7x with --onnx and external data; the weights, the NumPy evaluator's transposed copy, one "
        "onnxruntime session at a time, one layer in float64, the data file's pages as read); models over "
        "protobuf's 2 GiB are written with external data",
    )
    max_parameters: int = _limit(
        1 << 30,
        "count",
        "weight and bias numbers in all",
        "4 GiB of float32, the weight budget counted in numbers, so a budget can be set independent of dtype",
    )
    max_npz_member_bytes: int = _limit(
        2 << 30,
        "bytes",
        "one .npz member once decompressed (read from the zip directory, before inflating)",
        "a member is inflated whole: 2 GiB is a 16k x 16k float64 matrix; larger arrays belong in .npy files, "
        "read without inflating",
    )
    max_spec_bytes: int = _limit(
        128 << 20,
        "bytes",
        "a spec file",
        "a 2000 x 2000 matrix of float64 numbers written in full is 79 MB; larger weights belong in .npy/.npz",
    )
    max_json_values: int = _limit(
        1 << 23,
        "count",
        "values (numbers, strings, arrays, objects) in one JSON text",
        "each becomes a 32-100 byte Python object: 8M keeps a parse under ~1 GiB; a 2000 x 2000 matrix is 4M",
    )
    max_json_depth: int = _limit(
        64,
        "count",
        "nesting of arrays and objects in one JSON text",
        "the deepest spec structure is inline weights inside a layer, about 10 levels; 64 is far above that",
    )
    max_layers: int = _limit(
        10_000,
        "count",
        "layers in a spec",
        "a longer list is a generator gone wrong, not a network to review",
    )
    max_batch_bytes: int = _limit(
        1 << 30,
        "bytes",
        "one batch of inputs or outputs in run/check",
        "1 GiB keeps a check within a laptop's memory; random check batches shrink to fit",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults, overridden by `NNSPEC_MAX_WEIGHT_BYTES` and friends where set."""
        environ = os.environ if environ is None else environ
        values = {}
        for name in cls.names():
            raw = environ.get(env_var(name))
            if raw is not None:
                values[name] = parse_value(name, raw, env_var(name))
        return cls(**values)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# protobuf cannot serialize or parse one message of 2 GiB or more: a fixed limit of the ONNX format. A
# model whose weights would take it past this is written with its weights as external data.
PROTOBUF_MAX_BYTES = (2 << 30) - 1


def env_var(name: str) -> str:
    """`max_weight_bytes` -> `NNSPEC_MAX_WEIGHT_BYTES`."""
    return f"NNSPEC_{name.upper()}"


def describe(name: str) -> dict[str, str]:
    """The unit, meaning and reason of one limit, as documented."""
    meta = next(f.metadata for f in fields(Limits) if f.name == name)
    return {"unit": meta["unit"], "what": meta["what"], "why": meta["why"]}


_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE = re.compile(r"\s*(\d[\d_]*)\s*([a-z]*)\s*", re.IGNORECASE)


def parse_value(name: str, raw: str, where: str) -> int:
    """`"2GiB"` -> 2147483648 for a byte limit, `"5000"` -> 5000 for any; NNSpecError naming `where` otherwise."""
    from .errors import NNSpecError

    unit = describe(name)["unit"]
    match = _SIZE.fullmatch(raw)
    suffix = match[2].lower() if match else ""
    if match is None or suffix not in _UNITS or (suffix and unit != "bytes"):
        expected = "a number of bytes such as 1073741824 or 1GiB" if unit == "bytes" else "a whole number"
        raise NNSpecError(f"{where}: expected {expected}, found {raw!r}")
    return int(match[1].replace("_", "")) * _UNITS[suffix]


def human_bytes(n: int) -> str:
    """`1073741824` -> `1.0 GiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            if unit == "B":
                return f"{size:.0f} B"
            return f"{size:.1f} {unit}" if size < 10_000 else f"{size:.3g} {unit}"
        size /= 1024
    return f"{n} B"


def show(name: str, value: int) -> str:
    """A limit's value as people read it: bytes in KiB/MiB/GiB, counts as numbers."""
    return human_bytes(value) if describe(name)["unit"] == "bytes" else f"{value:,}"
