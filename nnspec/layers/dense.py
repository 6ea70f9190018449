"""`dense`: a = f(W p + b), W of shape [units, in_features] with one row per neuron."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from ..activations import Activation, Precision
from ..affine import Affine, activate, linear
from ..fields import ActivationField, WeightField, parse_activation
from ..ir import LayerPlan, Node, ParamPlan, Source
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, register


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


def dense(
    x: np.ndarray, weights_t: np.ndarray, bias: np.ndarray | None, activation: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """a = f(W p + b) for batch-first rows p, W given transposed ([in, units]), f None for linear."""
    n = x @ weights_t
    if bias is not None:
        n += bias
    return activation(n) if activation is not None else n


def prepare(node: Node) -> Arguments:
    """W transposed once ([in, units]: x @ W.T without a per-call copy), and the activation's formula with its
    parameters bound once rather than unpacked on every call."""
    act: Activation | None = node.activation
    return {
        "weights_t": np.ascontiguousarray(node.params["weights"].T),
        "bias": node.params.get("bias"),
        "activation": None if act is None or act.name == "linear" else act.function,
    }


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


def vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """Backpropagation through a = f(W p + b): g = f'(n) * dL/da, then dL/dW = g^T p, dL/db = sum g, dL/dp = g W
    (summed over the batch and any leading axes, which share W)."""
    (x,) = inputs
    weights, bias = node.params["weights"], node.params.get("bias")
    g = upstream
    if node.activation is not None and node.activation.name != "linear":
        n = x @ weights.T if bias is None else x @ weights.T + bias
        g = node.activation.vjp(n, output, upstream)
    rows = g.reshape(-1, g.shape[-1])
    grads = {"weights": rows.T @ x.reshape(-1, x.shape[-1])}
    if bias is not None:
        grads["bias"] = rows.sum(axis=0)
    return [g @ weights], grads


def error_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Rounding-error bound of W p + b, then of the activation (see nnspec.affine)."""
    (x,) = inputs
    n = linear(x, node.params["weights"], node.params.get("bias"), precision)
    if node.activation is None or node.activation.name == "linear":
        return n
    return activate(n, node.activation, precision)


def multiply_adds(node: Node) -> int:
    """One per weight use: units x inputs, for every position of the leading axes ([T, in] gives T of them)."""
    return math.prod(node.shape) * int(node.params["weights"].shape[1])


def formula(node: Node) -> str:
    """`tanh(W x + b)`: the seed's a = f(W p + b), with the layer's own source for p."""
    affine = f"W {node.inputs[0]}" + (" + b" if "bias" in node.params else "")
    if node.activation is None or node.activation.name == "linear":
        return affine
    return f"{node.activation.label}({affine})"


def lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Gemm by constant weights (transB either way; alpha and beta folded in), or MatMul by a constant
    [in, units] matrix (how the layer is lowered for inputs of more than one axis), then an optional Add of
    a constant bias."""
    if node.op == "Gemm":
        return _lift_gemm(node, view)
    if node.op != "MatMul":
        return None
    x, w = node.inputs
    matrix = view.const(w)
    if matrix is None or matrix.ndim != 2 or not computed(view, [x]):
        return None
    params = {"weights": np.ascontiguousarray(matrix.T)}
    nodes, out = [node], node.outputs[0]
    add = view.sole_consumer(out)
    if add is not None and add.op == "Add":
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        bias = view.const(other)
        if bias is not None and bias.shape[-1:] == (matrix.shape[1],) and bias.size == matrix.shape[1]:
            params["bias"] = bias.reshape(-1)
            nodes.append(add)
            out = add.outputs[0]
    return Lifted("dense", {"units": int(matrix.shape[1])}, params, (x,), tuple(nodes), out)


def _lift_gemm(node: OnnxNode, view: ModelView) -> Lifted | None:
    a, b, *rest = node.inputs
    matrix = view.const(b)
    if matrix is None or not computed(view, [a]):
        return None
    if node.attrs.get("transA", 0):
        raise Unliftable("transA=1 (the input transposed) has no dense form")
    weights = matrix if node.attrs.get("transB", 0) else matrix.T
    units = int(weights.shape[0])
    notes = []
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    if alpha != 1.0:
        weights = weights * weights.dtype.type(alpha)
        notes.append(f"{node.describe()}: alpha={alpha:g} multiplied into the weights")
    params = {"weights": np.ascontiguousarray(weights)}
    c = rest[0] if rest and rest[0] else None
    if c is not None:
        bias = view.const(c)
        if bias is None:
            raise Unliftable("its C input is computed, not a constant bias")
        if bias.size == 1:
            bias = np.full(units, bias.reshape(()), dtype=bias.dtype)
            notes.append(f"{node.describe()}: its one bias value repeated for each of the {units} units")
        elif bias.size != units or bias.shape[-1] != units:
            raise Unliftable(f"a bias of shape {list(bias.shape)} (expected [{units}], one per unit)")
        bias = bias.reshape(units)
        if beta != 1.0:
            bias = bias * bias.dtype.type(beta)
            notes.append(f"{node.describe()}: beta={beta:g} multiplied into the bias")
        params["bias"] = bias
    return Lifted("dense", {"units": units}, params, (a,), (node,), node.outputs[0], tuple(notes))


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
    LayerType(
        "dense",
        Dense,
        onnx_lowering,
        error_bound,
        formula,
        doc=__doc__ or "",
        examples=EXAMPLES,
        lift=lift,
        vjp=vjp,
        multiply_adds=multiply_adds,
        kernel=dense,
        prepare=prepare,
    )
)
