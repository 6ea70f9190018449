"""The resolved network that backends consume: names, shapes, dtype and loaded weights; no pydantic."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from .activations import Activation
from .fields import WeightSource

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Source:
    """A value a layer reads: a network input or an earlier layer's output (per-sample shape)."""

    name: str
    shape: Shape
    kind: str  # "input" or "layer"
    dtype: str | None = None  # "int64"/"int32" for an integer input; None: the network's float dtype

    def describe(self) -> str:
        return f"{self.kind} {self.name!r}"

    @property
    def integer(self) -> bool:
        return self.dtype is not None and self.dtype.startswith("int")


@dataclass(frozen=True)
class ParamPlan:
    """A parameter a layer needs: its shape, where its numbers come from, and why that shape."""

    shape: Shape
    source: WeightSource | None
    reason: str


@dataclass(frozen=True)
class LayerPlan:
    """What a layer spec resolves to before any weight is loaded."""

    shape: Shape
    params: dict[str, ParamPlan] = field(default_factory=dict)
    activation: Activation | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # Numbers per sample the kernel holds besides its output (a padded input, gathered windows): bounded by
    # the batch memory limit like the output itself, since a tiny output may need a huge workspace.
    scratch: int = 0


@dataclass(frozen=True, eq=False)
class Node:
    """One layer of the resolved network. `params` hold arrays in the network's dtype."""

    name: str
    op: str
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    shape: Shape
    params: dict[str, np.ndarray]
    activation: Activation | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # position in the spec's `layers`
    scratch: int = 0  # numbers per sample the kernel holds besides its output (see LayerPlan)


@dataclass(frozen=True)
class TensorInfo:
    """A network input or output: its name, per-sample shape, and dtype (None: the network's)."""

    name: str
    shape: Shape
    dtype: str | None = None


# A graph keeps its float64 copy, made once, while that copy is at most this size: the bounds, the oracle and the
# layer steps read each layer's float64 parameters on every pass. A larger network's layers are converted when
# read and dropped after, so that a check holds one layer's float64 parameters at a time (a 3 GB float32 network
# would otherwise hold 6 GB more, and as much again in their magnitudes, nnspec.affine).
WIDE_KEPT_BYTES = 256 << 20


def _widen(node: Node) -> Node:
    return replace(node, params={k: v.astype(np.float64) for k, v in node.params.items()})


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated network: inputs, nodes in evaluation order, outputs, and a fingerprint of it all."""

    name: str
    dtype: np.dtype
    inputs: tuple[TensorInfo, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[TensorInfo, ...]
    description: str | None = None
    tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)  # output -> (rtol, atol), from the spec
    # input or output -> its name in the ONNX model the spec was imported from; for checking that model only,
    # so it is no part of the fingerprint (a fresh export uses the spec's names)
    onnx_names: dict[str, str] = field(default_factory=dict)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def widened(self) -> Graph:
        """The same network in float64, its weights converted exactly (the float64 oracle); made once and kept.
        The check reads its layers through `wide_node`, which keeps no copy of a large network."""
        return self._widened

    @cached_property
    def _widened(self) -> Graph:
        if self.dtype == np.float64:
            return self
        return replace(self, dtype=np.dtype(np.float64), nodes=tuple(_widen(n) for n in self.nodes))

    def wide_node(self, node: Node) -> Node:
        """One of this graph's nodes in float64, its parameters converted exactly (what the oracle, the bounds
        and the layer steps compute with): from `widened()` while the network's float64 parameters are within
        WIDE_KEPT_BYTES, else made for this call, for the caller to drop when done with the layer."""
        if self.dtype == np.float64:
            return node
        if self._wide_bytes <= WIDE_KEPT_BYTES:
            return self._wide_nodes[node]
        return _widen(node)

    @cached_property
    def _wide_bytes(self) -> int:
        return self.parameter_count * np.dtype(np.float64).itemsize

    @cached_property
    def _wide_nodes(self) -> dict[Node, Node]:
        return dict(zip(self.nodes, self._widened.nodes, strict=True))

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the network's meaning: dtype, wiring, activations and the weights' bytes.

        Computed on first use (hashing runs at about 1.4 GB/s), not on every load.
        """
        h = hashlib.sha256()
        structure = {
            "dtype": self.dtype.name,
            # an input's dtype only where it has its own (integer ids), so float specs keep their hashes
            "inputs": [[i.name, list(i.shape), *([i.dtype] if i.dtype else [])] for i in self.inputs],
            "layers": [
                [
                    n.name,
                    n.op,
                    list(n.inputs),
                    n.activation.to_json() if n.activation else None,
                    n.attrs,
                    {k: list(v.shape) for k, v in n.params.items()},
                ]
                for n in self.nodes
            ],
            "outputs": [o.name for o in self.outputs],
        }
        h.update(json.dumps(structure, sort_keys=True).encode())
        for node in self.nodes:
            for key in sorted(node.params):
                h.update(memoryview(np.ascontiguousarray(node.params[key])).cast("B"))
        return h.hexdigest()

    @cached_property
    def largest_value(self) -> tuple[int, str]:
        """The largest per-sample value (an input or a layer output) in bytes, and its name."""
        values = [(int(np.prod(t.shape)) * self.dtype.itemsize, t.name) for t in (*self.inputs, *self.nodes)]
        scratch = [(n.scratch * self.dtype.itemsize, f"{n.name} (its workspace)") for n in self.nodes if n.scratch]
        return max(values + scratch)

    @property
    def parameter_count(self) -> int:
        return sum(int(a.size) for n in self.nodes for a in n.params.values())
