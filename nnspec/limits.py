"""Resource limits, checked from declared sizes before anything is allocated."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Each default has its reason next to it; NNSPEC_MAX_* environment variables override them.


@dataclass(frozen=True)
class Limits:
    # An ONNX model is one protobuf, and protobuf refuses messages over 2 GiB; 1 GiB of weights
    # leaves room for the serialized copy, the graph and metadata in a single file.
    max_weight_bytes: int = 1 << 30
    # A spec is text reviewed by people; 256 MiB of JSON is already ~30M inline numbers, far past
    # what belongs inline (use .npy/.npz files for large weights).
    max_spec_bytes: int = 256 << 20
    # A layer list longer than this is a generated spec gone wrong, not a network to review.
    max_layers: int = 10_000
    # One batch of inputs or outputs in run/check: 1 GiB keeps a check within a laptop's memory.
    max_batch_bytes: int = 1 << 30

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by `NNSPEC_MAX_WEIGHT_BYTES` and friends where set."""
        values = {}
        for name in cls.__dataclass_fields__:
            raw = os.environ.get(f"NNSPEC_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = int(raw)
                except ValueError:
                    from .errors import NNSpecError

                    raise NNSpecError(
                        f"NNSPEC_{name.upper()}: expected an integer number of bytes, found {raw!r}"
                    ) from None
        return cls(**values)


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
