"""`dense`: a = f(W p + b), W of shape [units, in_features] with one row per neuron."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from ..activations import Activation, Precision
from ..affine import Affine, activate, linear
from ..fields import ActivationField, WeightField, parse_activation
from ..ir import LayerPlan, Node, ParamPlan, Source
from ..lowering import OpBuilder
from .base import Kernel, LayerSpec, LayerType, register


class Dense(LayerSpec):
    """A fully connected layer over the last axis of its input."""

    type: Literal["dense"]
    units: int = Field(ge=1, description="number of neurons S; the layer outputs S values")
    activation: ActivationField = Field(default_factory=lambda: parse_activation("linear"))
    weights: WeightField = Field(description="W, shape [units, in_features]; row i is neuron i's weights")
    bias: WeightField | None = Field(default=None, description="b, shape [units]; omitted means no bias")

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        in_features = src.shape[-1]
        why = f"{self.units} units x {in_features} inputs, because {src.describe()} has {in_features} outputs"
        params = {"weights": ParamPlan((self.units, in_features), self.weights, why)}
        if self.bias is not None:
            params["bias"] = ParamPlan((self.units,), self.bias, f"one per unit, units = {self.units}")
        return LayerPlan(shape=(*src.shape[:-1], self.units), params=params, activation=self.activation)


def numpy_kernel(node: Node) -> Kernel:
    weights_t = np.ascontiguousarray(node.params["weights"].T)  # [in, units]: x @ W.T without a per-call copy
    bias = node.params.get("bias")
    act: Activation | None = node.activation
    if act is not None and act.name == "linear":
        act = None

    def dense(x: np.ndarray) -> np.ndarray:
        n = x @ weights_t
        if bias is not None:
            n += bias
        return act(n) if act is not None else n

    return dense


def onnx_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    (x,) = inputs
    linear = node.activation is None or node.activation.name == "linear"
    pre = out if linear else f"{node.name}/n"
    gemm = len(node.input_shapes[0]) == 1
    # Gemm is 2-D only; for [N, ..., in] inputs the layer is MatMul with W transposed (`<layer>.weights_t`).
    weights = node.params["weights"]
    w = g.const(weights, f"{node.name}.weights") if gemm else g.const(weights.T.copy(), f"{node.name}.weights_t")
    b = g.const(node.params["bias"], f"{node.name}.bias") if "bias" in node.params else None
    if gemm:
        g.op("Gemm", [x, w] + ([b] if b else []), pre, transB=1)
    else:
        product = g.op("MatMul", [x, w], pre if b is None else None)
        if b is not None:
            g.op("Add", [product, b], pre)
    if linear:
        return out
    assert node.activation is not None
    return node.activation.lower(g, pre, out)


def error_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Rounding-error bound of W p + b, then of the activation (see nnspec.affine)."""
    (x,) = inputs
    n = linear(x, node.params["weights"], node.params.get("bias"), precision)
    if node.activation is None or node.activation.name == "linear":
        return n
    return activate(n, node.activation, precision)


def formula(node: Node) -> str:
    """`tanh(W x + b)`: the seed's a = f(W p + b), with the layer's own source for p."""
    affine = f"W {node.inputs[0]}" + (" + b" if "bias" in node.params else "")
    if node.activation is None or node.activation.name == "linear":
        return affine
    return f"{node.activation.label}({affine})"


EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "dense_example",
        "inputs": [{"name": "p", "shape": [3]}],
        "layers": [
            {
                "type": "dense",
                "name": "hidden",
                "units": 4,
                "activation": "tanh",
                "weights": {"init": "glorot_uniform", "seed": 1},
                "bias": {"init": "normal", "seed": 2},
            },
            {"type": "dense", "name": "out", "units": 2, "weights": {"init": "glorot_uniform", "seed": 3}},
        ],
    },
    {
        "format": "nnspec/1",
        "name": "dense_rows",
        "inputs": [{"name": "p", "shape": [5, 3]}],
        "layers": [
            {
                "type": "dense",
                "name": "rows",
                "units": 2,
                "activation": "relu",
                "weights": {"init": "he_normal", "seed": 4},
                "bias": [0.5, -0.5],
            }
        ],
    },
)

register(
    LayerType("dense", Dense, numpy_kernel, onnx_lowering, error_bound, formula, doc=__doc__ or "", examples=EXAMPLES)
)
