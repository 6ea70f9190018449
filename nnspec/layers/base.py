"""What every layer type provides, and the registry that holds them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..activations import Precision
from ..affine import Affine
from ..fields import Name, StrictModel
from ..ir import LayerPlan, Node, Source
from ..lowering import OpBuilder

Kernel = Callable[..., np.ndarray]


class LayerSpec(StrictModel):
    """Fields shared by every layer: its type tag, an optional name, and optional explicit sources."""

    type: str
    name: Name | None = None
    inputs: list[Name] | None = None

    arity: ClassVar[int] = 1  # how many sources the layer reads

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        """The output shape and the parameters this layer needs, given its sources' shapes."""
        raise NotImplementedError


@dataclass(frozen=True)
class LayerType:
    """One layer type: its spec model, a NumPy kernel factory and an ONNX lowering."""

    name: str
    spec: type[LayerSpec]
    numpy: Callable[[Node], Kernel]  # built once per node; the kernel is then called per batch
    onnx: Callable[[Node, OpBuilder, Sequence[str], str], str]
    # (float64 node, its inputs as affine error forms, the arithmetic) -> its output's affine form
    bound: Callable[[Node, Sequence[Affine], Precision], Affine]
    # what the layer computes, in the seed's notation, for people reviewing a spec: `tanh(W x + b)`
    formula: Callable[[Node], str]
    doc: str = ""


LAYERS: dict[str, LayerType] = {}


def register(entry: LayerType) -> LayerType:
    """Add a layer type; refuses a duplicate tag."""
    if entry.name in LAYERS:
        raise ValueError(f"layer type {entry.name!r} is already registered")
    LAYERS[entry.name] = entry
    return entry
