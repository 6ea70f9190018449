"""The small interface through which layer types recognise their ONNX patterns, without importing onnx.

The importer (nnspec.onnxio.importer) cleans a model (opset upgrade, constants folded, activations
recognised), then offers each node to every layer type's `lift`, in graph order. A lift inverts the
type's own lowering (and the idioms other exporters use for the same layer): it returns what the layer is,
or None when the node does not start its pattern, or raises `Unliftable` when it does but uses an
attribute the format cannot hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# The op type of a node that stands for a recognised activation (one ONNX node, or several an exporter
# wrote for it); its `activation` attribute holds the bound nnspec Activation.
ACTIVATION_OP = "nnspec.Activation"


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node, as plain data: attributes are Python values, with the operator's defaults filled in."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """`TopK 'pick_best'`: how a refusal names the node."""
        return f"{self.op} {self.name!r}" if self.name else f"{self.op} (unnamed, writes {self.outputs[0]!r})"


class Unliftable(Exception):
    """The node starts this type's pattern, but something in it has no place in the format."""


@dataclass(frozen=True)
class Lifted:
    """One layer recognised in an ONNX graph.

    fields: the layer's spec fields besides its name, inputs and weights (`units`, `strides`, an
    `activation` as an nnspec Activation). params: its weight fields, as the arrays the model stores
    (reordered where the layouts differ, never rounded). sources: the ONNX values it reads; output: the
    value that holds its result; nodes: every node it stands for.
    """

    type: str
    fields: dict[str, Any]
    params: dict[str, np.ndarray]
    sources: tuple[str, ...]
    nodes: tuple[OnnxNode, ...]
    output: str
    notes: tuple[str, ...] = ()
    # params that hold exactly the format's default (a scale of ones): left out of a spec, unless the model's
    # recorded spec names them
    defaults: frozenset[str] = frozenset()


class ModelView(Protocol):
    """What a lift may ask about the cleaned model."""

    opset: int
    dtype: np.dtype

    def const(self, value: str) -> np.ndarray | None:
        """The value's array when it is a constant (an initializer, or folded), else None."""
        ...

    def producer(self, value: str) -> OnnxNode | None:
        """The node that computes a value, None for graph inputs and constants."""
        ...

    def consumers(self, value: str) -> list[OnnxNode]:
        """Every node that reads a value."""
        ...

    def sole_consumer(self, value: str) -> OnnxNode | None:
        """The one node that reads a value, when exactly one does and it is no graph output; else None."""
        ...

    def shape(self, value: str) -> tuple[int | None, ...] | None:
        """A value's inferred shape, batch axis first, None where unknown."""
        ...


Lift = Callable[[OnnxNode, ModelView], Lifted | None]


def computed(view: ModelView, names: Sequence[str]) -> bool:
    """True when every named value is computed (not a constant)."""
    return all(name and view.const(name) is None for name in names)


def tidy_float(value: float) -> float:
    """A float attribute (ONNX stores them as float32) as its shortest decimal: 1e-05, not 9.99999974738e-06."""
    return float(str(np.float32(value)))


def int_list(value: Any) -> list[int]:
    return [int(v) for v in value]


def rank_of(view: ModelView, value: str) -> int | None:
    shape = view.shape(value)
    return None if shape is None else len(shape)


def last_axis(view: ModelView, value: str, axis: int) -> bool:
    """True when `axis` (as ONNX writes it, negative or not) is the value's last axis."""
    rank = rank_of(view, value)
    return axis == -1 or (rank is not None and axis == rank - 1)
