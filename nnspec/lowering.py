"""The small interface through which layers and activations emit ONNX nodes without importing onnx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class OpBuilder(Protocol):
    """Implemented by the ONNX exporter; lowerings call it with operator names and attributes."""

    opset: int
    dtype: np.dtype

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        """Add one node and return the name of its (single) output; `out` names it explicitly."""
        ...

    def const(self, value: float | np.ndarray, hint: str = "c") -> str:
        """A constant of the network's dtype, as an initializer; returns its name."""
        ...
