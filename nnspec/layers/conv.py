"""`conv1d`, `conv2d`: a = f(W ⊛ x + b) over channels-first inputs, W of shape [filters, in_channels / groups,
*kernel] (the ONNX and PyTorch layout); a cross-correlation, as every framework computes it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from ..activations import Precision
from ..affine import Affine, activate, elementwise, sum_of_products, unfold
from ..errors import SpecError
from ..fields import ActivationField, WeightField, parse_activation, spec_error
from ..ir import LayerPlan, Node, ParamPlan, Source
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed, int_list
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerType, register
from .spatial import PerAxis, Window, WindowSpec, compact, lift_window


class Conv(WindowSpec):
    """A convolution over the spatial axes of a [C, *spatial] input, `rank` of them."""

    kernel_field: ClassVar[str] = "kernel_size"
    per_axis_fields: ClassVar[tuple[str, ...]] = ("kernel_size", "strides", "dilation")

    filters: int = Field(ge=1, description="number of filters F; the layer outputs F channels")
    kernel_size: PerAxis = Field(description="the window, one size per spatial axis (or one for all)")
    strides: PerAxis = Field(default=1, description="the step between windows, per spatial axis")
    dilation: PerAxis = Field(default=1, description="the step between a window's taps, per spatial axis")
    groups: int = Field(
        default=1, ge=1, description="channel groups; each filter sees in_channels / groups; depthwise when = C"
    )
    activation: ActivationField = Field(default_factory=lambda: parse_activation("linear"))
    weights: WeightField = Field(description="W, shape [filters, in_channels / groups, *kernel_size]")
    bias: WeightField | None = Field(default=None, description="b, shape [filters]; omitted means no bias")

    @model_validator(mode="after")
    def _filters_in_groups(self) -> Conv:
        if self.filters % self.groups:
            raise spec_error(
                f"expected filters divisible by groups ({self.groups}), found {self.filters} filters "
                f"({self.filters} % {self.groups} = {self.filters % self.groups})",
                "filters",
            )
        return self

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        channels, spatial = self.split_input(src)
        if channels % self.groups:
            raise SpecError(
                f"expected the input's channels divisible by groups ({self.groups}), found {channels} channels in "
                f"{src.describe()} ({channels} % {self.groups} = {channels % self.groups})",
                ("groups",),
            )
        kernel = self.per_axis(self.kernel_size)
        window = self.window(spatial, kernel, self.per_axis(self.strides), self.per_axis(self.dilation))
        per_group = channels // self.groups
        shown = "x".join(map(str, kernel))
        grouping = f" ({channels} channels / groups {self.groups})" if self.groups > 1 else ""
        why = (
            f"{self.filters} filters x {per_group} input channels{grouping} x kernel {shown}, because "
            f"{src.describe()} has {channels} channels"
        )
        params = {"weights": ParamPlan((self.filters, per_group, *kernel), self.weights, why)}
        if self.bias is not None:
            params["bias"] = ParamPlan((self.filters,), self.bias, f"one per filter, filters = {self.filters}")
        return LayerPlan(
            shape=(self.filters, *window.output_shape(spatial)),
            params=params,
            activation=self.activation,
            attrs={**window.attrs(), "group": self.groups},
            scratch=window.scratch(channels, spatial),
        )


class Conv1D(Conv):
    """A 1-D convolution: [C, L] in, [filters, L'] out."""

    type: Literal["conv1d"]
    rank: ClassVar[int] = 1


class Conv2D(Conv):
    """A 2-D convolution: [C, H, W] in, [filters, H', W'] out."""

    type: Literal["conv2d"]
    rank: ClassVar[int] = 2


def convolve(x: np.ndarray, weights: np.ndarray, window: Window, groups: int) -> np.ndarray:
    """[N, C, *in] ⊛ [F, C / groups, *kernel] -> [N, F, *out], no bias: the windows gathered once (im2col) into
    [groups, C / groups * kernel, N * out], then one matmul batched over the groups."""
    cols = window.view(x, 0.0)
    n, rank = x.shape[0], window.rank
    filters, per_group = weights.shape[:2]
    out = cols.shape[2 : 2 + rank]
    # [N, G, Cg, *out, *k] -> [G, Cg, *k, N, *out]: splitting C is free; the reshape copies once, the samples
    # and positions innermost (twice as fast as the taps innermost, four times for depthwise)
    cols = cols.reshape(n, groups, per_group, *out, *window.kernel)
    cols = cols.transpose(1, 2, *range(3 + rank, 3 + 2 * rank), 0, *range(3, 3 + rank))
    cols = cols.reshape(groups, per_group * math.prod(window.kernel), n * math.prod(out))
    y = np.matmul(weights.reshape(groups, filters // groups, -1), cols)  # [G, F / G, N * out]
    return np.ascontiguousarray(y.reshape(filters, n, *out).swapaxes(0, 1))


# Bytes of im2col workspace the error bound of one convolution uses at a time: enough for a few 224x224
# samples of a first layer, so that batches of 64 run in chunks rather than in gigabytes at once.
BOUND_WORKSPACE = 256 << 20


def _bias_shape(node: Node) -> tuple[int, ...]:
    return (-1, *(1,) * (len(node.shape) - 1))


def _linear(node: Node) -> bool:
    return node.activation is None or node.activation.name == "linear"


def conv(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    window: Window,
    groups: int,
    activation: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """a = f(W ⊛ x + b), the bias shaped [F, 1, ...] to broadcast over the positions, f None for linear."""
    n = convolve(x, weights, window, groups)
    if bias is not None:
        n += bias
    return activation(n) if activation is not None else n


def prepare(node: Node) -> Arguments:
    act = None if _linear(node) else node.activation
    return {
        "weights": node.params["weights"],
        "bias": node.params["bias"].reshape(_bias_shape(node)) if "bias" in node.params else None,
        "window": Window.from_attrs(node.attrs),
        "groups": node.attrs["group"],
        "activation": act.function if act is not None else None,
    }


def vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """Backpropagation through a = f(W ⊛ x + b), on convolve's own im2col layout: with g = f'(n) * dL/da per
    group, dL/dW = g cols^T, dL/db = g summed over samples and positions, and dL/dx the windows' gradients
    W^T g summed back into the positions they read (Window.unview)."""
    (x,) = inputs
    window, groups = Window.from_attrs(node.attrs), node.attrs["group"]
    weights = node.params["weights"]
    g = upstream
    if not _linear(node):
        assert node.activation is not None
        n = convolve(x, weights, window, groups)
        if "bias" in node.params:
            n += node.params["bias"].reshape(_bias_shape(node))
        g = node.activation.vjp(n, output, upstream)
    batch, rank = x.shape[0], window.rank
    filters, per_group = weights.shape[:2]
    out = g.shape[2:]
    cols = window.view(x, 0.0).reshape(batch, groups, per_group, *out, *window.kernel)
    cols = cols.transpose(1, 2, *range(3 + rank, 3 + 2 * rank), 0, *range(3, 3 + rank))
    cols = cols.reshape(groups, per_group * math.prod(window.kernel), batch * math.prod(out))
    rows = g.swapaxes(0, 1).reshape(groups, filters // groups, batch * math.prod(out))  # [G, F / G, N * out]
    grads = {"weights": np.matmul(rows, cols.swapaxes(1, 2)).reshape(weights.shape)}
    if "bias" in node.params:
        grads["bias"] = g.sum(axis=(0, *range(2, g.ndim)))
    taps = np.matmul(weights.reshape(groups, filters // groups, -1).swapaxes(1, 2), rows)  # [G, Cg * k, N * out]
    taps = taps.reshape(groups, per_group, *window.kernel, batch, *out)
    taps = taps.transpose(2 + rank, 0, 1, *range(3 + rank, 3 + 2 * rank), *range(2, 2 + rank))
    spatial = x.shape[2:]
    return [window.unview(taps.reshape(batch, groups * per_group, *out, *window.kernel), spatial)], grads


def onnx_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    (x,) = inputs
    pre = out if _linear(node) else f"{node.name}/n"
    w = g.const(node.params["weights"], f"{node.name}.weights")
    b = [g.const(node.params["bias"], f"{node.name}.bias")] if "bias" in node.params else []
    a = node.attrs
    g.op(
        "Conv",
        [x, w, *b],
        pre,
        kernel_shape=a["kernel_shape"],
        strides=a["strides"],
        pads=a["pads"],
        dilations=a["dilations"],
        group=a["group"],
    )
    if _linear(node):
        return out
    assert node.activation is not None
    return node.activation.lower(g, pre, out)


def error_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Each output a sum of in_channels / groups x prod(kernel) products (+ the bias): Higham's gamma_k bound
    through `sum_of_products`, the input's error carried through |W|; then the activation's."""
    x, e = unfold(inputs[0], node.input_shapes[0])
    window, groups = Window.from_attrs(node.attrs), node.attrs["group"]
    weights = node.params["weights"]
    magnitudes = np.abs(weights)
    bias = node.params["bias"].reshape(_bias_shape(node)) if "bias" in node.params else None

    # The bound convolves three float64 arrays, each through its own im2col copy: a few samples at a time,
    # so that the copy stays within BOUND_WORKSPACE whatever the batch (same numbers, a bounded peak).
    per_sample = max(1, node.scratch + math.prod(node.input_shapes[0])) * 8
    chunk = max(1, BOUND_WORKSPACE // per_sample)

    def apply(a: np.ndarray, absolute: bool) -> np.ndarray:
        w = magnitudes if absolute else weights
        if a.shape[0] <= chunk:
            return convolve(a, w, window, groups)
        return np.concatenate([convolve(a[i : i + chunk], w, window, groups) for i in range(0, a.shape[0], chunk)])

    k = weights[0].size + (bias is not None)
    value, error, terms = sum_of_products(x, e, apply, k, bias, precision)
    form = elementwise(value, error, terms)
    if _linear(node):
        return form
    assert node.activation is not None
    return activate(form, node.activation, precision)


def multiply_adds(node: Node) -> int:
    """One per weight use: every output value (filter x position) reads (channels / groups) x kernel taps."""
    return math.prod(node.shape) * math.prod(node.params["weights"].shape[1:])


def formula(node: Node) -> str:
    """`relu(W ⊛ x + b)`."""
    affine = f"W ⊛ {node.inputs[0]}" + (" + b" if "bias" in node.params else "")
    if _linear(node):
        return affine
    assert node.activation is not None
    return f"{node.activation.label}({affine})"


EXAMPLES_1D = (
    {
        "format": "nnspec/1",
        "name": "conv1d_example",
        "description": "Two channels of 16 samples: a dilated 'same' convolution in two groups, then a strided one.",
        "inputs": [{"name": "signal", "shape": [2, 16]}],
        "layers": [
            {
                "type": "conv1d",
                "name": "c1",
                "filters": 4,
                "kernel_size": 3,
                "dilation": 2,
                "padding": "same",
                "groups": 2,
                "activation": "tanh",
                "weights": {"init": "glorot_uniform", "seed": 1},
                "bias": {"init": "normal", "seed": 2},
            },
            {
                "type": "conv1d",
                "name": "c2",
                "filters": 3,
                "kernel_size": [4],
                "strides": 3,
                "padding": [1, 2],
                "weights": {"init": "he_normal", "seed": 3},
            },
        ],
    },
)

EXAMPLES_2D = (
    {
        "format": "nnspec/1",
        "name": "conv2d_example",
        "description": "A 3-channel 7x7 image: a 3x3 'same' convolution with relu, then a depthwise strided 2x2.",
        "inputs": [{"name": "image", "shape": [3, 7, 7]}],
        "layers": [
            {
                "type": "conv2d",
                "name": "c1",
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "activation": "relu",
                "weights": {"init": "he_normal", "seed": 1},
                "bias": {"init": "uniform", "seed": 2, "low": -0.1, "high": 0.1},
            },
            {
                "type": "conv2d",
                "name": "depthwise",
                "filters": 4,
                "kernel_size": [2, 3],
                "strides": [2, 1],
                "padding": [0, 1, 1, 0],
                "groups": 4,
                "weights": {"init": "glorot_uniform", "seed": 3},
                "bias": [0.1, -0.2, 0.3, 0.0],
            },
        ],
    },
    {
        "format": "nnspec/1",
        "name": "conv2d_dilated",
        "inputs": [{"name": "image", "shape": [2, 9, 8]}],
        "layers": [
            {
                "type": "conv2d",
                "name": "wide",
                "filters": 3,
                "kernel_size": [3, 2],
                "dilation": [2, 3],
                "strides": 2,
                "padding": 1,
                "activation": "sigmoid",
                "weights": {"init": "glorot_uniform", "seed": 4},
            }
        ],
    },
)


def lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Conv by constant weights of rank 3 (conv1d) or 4 (conv2d), with an optional constant bias."""
    if node.op != "Conv":
        return None
    x, w, *rest = node.inputs
    weights = view.const(w)
    if weights is None or not computed(view, [x]):
        return None
    rank = weights.ndim - 2
    if rank not in (1, 2):
        raise Unliftable(f"a {rank}-D convolution (the format has conv1d and conv2d)")
    kernel = int_list(node.attrs.get("kernel_shape") or weights.shape[2:])
    if kernel != list(weights.shape[2:]):
        raise Unliftable(f"kernel_shape {kernel} differs from its weights' {list(weights.shape[2:])}")
    fields: dict[str, object] = {"filters": int(weights.shape[0]), "kernel_size": compact(kernel)}
    fields |= lift_window(node, rank)
    dilation = int_list(node.attrs.get("dilations") or [1] * rank)
    if any(d != 1 for d in dilation):
        fields["dilation"] = compact(dilation)
    if int(node.attrs.get("group", 1)) != 1:
        fields["groups"] = int(node.attrs["group"])
    params = {"weights": weights}
    if rest and rest[0]:
        bias = view.const(rest[0])
        if bias is None:
            raise Unliftable("its bias is computed, not a constant")
        params["bias"] = bias
    return Lifted(f"conv{rank}d", fields, params, (x,), (node,), node.outputs[0])


for _name, _spec, _examples in (("conv1d", Conv1D, EXAMPLES_1D), ("conv2d", Conv2D, EXAMPLES_2D)):
    register(
        LayerType(
            _name,
            _spec,
            onnx_lowering,
            error_bound,
            formula,
            doc=__doc__ or "",
            examples=_examples,
            lift=lift,
            vjp=vjp,
            multiply_adds=multiply_adds,
            kernel=conv,
            prepare=prepare,
        )
    )
