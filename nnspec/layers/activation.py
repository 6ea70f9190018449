"""`activation`: applies an activation function alone, a = f(p)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ..activations import Precision
from ..affine import Affine, activate
from ..fields import ActivationField
from ..ir import LayerPlan, Node, Source
from ..lifting import ACTIVATION_OP, Lifted, ModelView, OnnxNode
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, no_multiply_adds, register


class ActivationLayer(LayerSpec):
    """Elementwise (softmax, log_softmax: over the last axis); the shape is unchanged."""

    type: Literal["activation"]
    activation: ActivationField

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        return LayerPlan(shape=src.shape, activation=self.activation)


def activation(x: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """a = f(p): the activation's formula, its parameters bound."""
    return function(x)


def prepare(node: Node) -> Arguments:
    assert node.activation is not None
    return {"function": node.activation.function}


def onnx_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    assert node.activation is not None
    return node.activation.lower(g, inputs[0], out)


def vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """dL/dp = f'(p) * dL/da (a row Jacobian for softmax and log_softmax): the activation's own rule."""
    assert node.activation is not None
    return [node.activation.vjp(inputs[0], output, upstream)], {}


def error_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    assert node.activation is not None
    return activate(inputs[0], node.activation, precision)


def formula(node: Node) -> str:
    assert node.activation is not None
    return f"{node.activation.label}({node.inputs[0]})"


def lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """An activation the importer recognised (its lowering traced as a pattern), standing alone."""
    if node.op != ACTIVATION_OP:
        return None
    return Lifted("activation", {"activation": node.attrs["activation"]}, {}, node.inputs, (node,), node.outputs[0])


EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "activation_example",
        "inputs": [{"name": "p", "shape": [4]}],
        "layers": [
            {"type": "dense", "name": "scores", "units": 3, "weights": {"init": "glorot_uniform", "seed": 1}},
            {"type": "activation", "name": "probs", "activation": "softmax"},
        ],
    },
)

register(
    LayerType(
        "activation",
        ActivationLayer,
        onnx_lowering,
        error_bound,
        formula,
        doc=__doc__ or "",
        examples=EXAMPLES,
        lift=lift,
        vjp=vjp,
        multiply_adds=no_multiply_adds,
        kernel=activation,
        prepare=prepare,
    )
)
