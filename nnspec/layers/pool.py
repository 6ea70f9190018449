"""Pooling over channels-first inputs: `max_pool1d`, `max_pool2d`, `avg_pool1d`, `avg_pool2d` slide a window
(stride = pool_size unless given); `global_avg_pool`, `global_max_pool` take [C, *spatial] to [C]."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..activations import Precision
from ..affine import Affine, elementwise, sum_of_products, unfold
from ..errors import SpecError
from ..ir import LayerPlan, Node, Source
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed, int_list
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, bind, no_arguments, no_multiply_adds, register
from .spatial import PerAxis, Window, WindowSpec, axis_label, compact, lift_window


class Pool(WindowSpec):
    """A window slid over the spatial axes; each output the max or the mean of its window, per channel."""

    kernel_field: ClassVar[str] = "pool_size"
    per_axis_fields: ClassVar[tuple[str, ...]] = ("pool_size", "strides")

    pool_size: PerAxis = Field(description="the window, one size per spatial axis (or one for all)")
    strides: PerAxis | None = Field(default=None, description="the step between windows; default: pool_size")
    ceil_mode: bool = Field(default=False, description="round the output length up: a last, partial window")

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        channels, spatial = self.split_input(src)
        kernel = self.per_axis(self.pool_size)
        strides = kernel if self.strides is None else self.per_axis(self.strides)
        window = self.window(spatial, kernel, strides, (1,) * self.rank, self.ceil_mode)
        for i, (k, b, e) in enumerate(zip(kernel, window.begins, window.ends, strict=True)):
            if max(b, e) >= k:
                raise SpecError(
                    f"expected padding < pool_size ({k}) on each side along {axis_label(i, self.rank)}, found {b} at "
                    f"the start and {e} at the end: a window could hold nothing but padding (onnxruntime refuses it)",
                    ("padding",),
                )
        return LayerPlan(
            shape=(channels, *window.output_shape(spatial)),
            attrs=window.attrs(),
            scratch=window.scratch(channels, spatial),
        )


class AvgPool(Pool):
    """The mean of each window."""

    count_include_pad: bool = Field(
        default=False, description="divide by the whole window, padding included (default: by its input positions)"
    )

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        plan = super().plan(sources)
        return replace(plan, attrs={**plan.attrs, "count_include_pad": int(self.count_include_pad)})


class MaxPool1D(Pool):
    """[C, L] in, [C, L'] out: the largest value of each window."""

    type: Literal["max_pool1d"]
    rank: ClassVar[int] = 1


class MaxPool2D(Pool):
    """[C, H, W] in, [C, H', W'] out: the largest value of each window."""

    type: Literal["max_pool2d"]
    rank: ClassVar[int] = 2


class AvgPool1D(AvgPool):
    """[C, L] in, [C, L'] out: the mean of each window."""

    type: Literal["avg_pool1d"]
    rank: ClassVar[int] = 1


class AvgPool2D(AvgPool):
    """[C, H, W] in, [C, H', W'] out: the mean of each window."""

    type: Literal["avg_pool2d"]
    rank: ClassVar[int] = 2


class GlobalPool(LayerSpec):
    """The max or mean over every spatial position: [C, *spatial] to [C]."""

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        if len(src.shape) < 2:
            raise SpecError(
                f"expected a per-sample [C, *spatial] input for {self.type} (channels first, at least 2 axes), "
                f"found {src.describe()} of shape {list(src.shape)}",
                ("inputs", 0) if self.inputs is not None else (),
            )
        return LayerPlan(shape=(src.shape[0],))


class GlobalAvgPool(GlobalPool):
    """The mean over every spatial position of each channel."""

    type: Literal["global_avg_pool"]


class GlobalMaxPool(GlobalPool):
    """The largest value over every spatial position of each channel."""

    type: Literal["global_max_pool"]


# --- windowed pools ---------------------------------------------------------------------------------


def max_pool(x: np.ndarray, window: Window) -> np.ndarray:
    """The largest value of each window (padding reads as -inf)."""
    return window.taps(x, -np.inf).max(axis=0)


def avg_pool(x: np.ndarray, window: Window, counts: np.ndarray) -> np.ndarray:
    """Each window's sum / its count, the float64 counts [*out] given (onnxruntime's, see Window.counts)."""
    sums = window.taps(x, 0.0).sum(axis=0)
    return np.divide(sums, counts.astype(sums.dtype, copy=False), out=sums)


def max_prepare(node: Node) -> Arguments:
    return {"window": Window.from_attrs(node.attrs)}


def avg_prepare(node: Node) -> Arguments:
    """The window, and how many positions each one divides by, computed once."""
    window = Window.from_attrs(node.attrs)
    return {"window": window, "counts": window.counts(node.input_shapes[0][1:], bool(node.attrs["count_include_pad"]))}


def window_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """A mean sends dL/dy / count to every position of its window; a max sends it to the window's first largest
    value (a tie is a kink, where any share is a subgradient). Windows overlap: Window.unview sums them back."""
    (x,) = inputs
    window = Window.from_attrs(node.attrs)
    spatial = x.shape[2:]
    if node.op.startswith("avg"):
        counts = window.counts(spatial, bool(node.attrs["count_include_pad"]))
        share = upstream / counts
        taps = np.broadcast_to(share.reshape(*share.shape, *(1,) * window.rank), (*share.shape, *window.kernel))
    else:
        values = window.taps(x, -np.inf)  # [k, N, C, *out]
        first = np.argmax(values, axis=0)
        chosen = np.arange(values.shape[0]).reshape(-1, *(1,) * first.ndim) == first
        taps = np.moveaxis(np.where(chosen, upstream, 0.0), 0, -1).reshape(*upstream.shape, *window.kernel)
    return [window.unview(np.ascontiguousarray(taps), spatial)], {}


def window_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    a = node.attrs
    common = {
        "kernel_shape": a["kernel_shape"],
        "strides": a["strides"],
        "pads": a["pads"],
        "ceil_mode": a["ceil_mode"],
    }
    if node.op.startswith("avg"):  # AveragePool's dilations exist from opset 19 on: not needed, never written
        return g.op("AveragePool", list(inputs), out, count_include_pad=a["count_include_pad"], **common)
    return g.op("MaxPool", list(inputs), out, **common)


def window_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Max: exact, and |max(a) - max(b)| <= max |a - b|, so the bound is the window's largest input bound.
    Mean: sum_of_products with k = prod(pool_size) + 1 (see `_mean_bound`)."""
    x, e = unfold(inputs[0], node.input_shapes[0])
    window = Window.from_attrs(node.attrs)
    if node.op.startswith("avg"):
        average = bind(avg_pool, avg_prepare(node))
        return _mean_bound(x, e, lambda a, absolute: average(a), math.prod(window.kernel), precision)
    taps = window.taps(x, -np.inf)
    # A window holding NaN has no agreed maximum: NumPy propagates it, onnxruntime's MaxPool skips it, onnx's
    # reference depends on the order. Either is a correct reading of ONNX, so nothing is bounded there.
    error = np.where(np.isnan(taps).any(axis=0), np.inf, window.taps(e, 0.0).max(axis=0))
    return elementwise(taps.max(axis=0), error)


def _mean_bound(
    x: np.ndarray, e: np.ndarray, mean: Callable[[np.ndarray, bool], np.ndarray], m: int, precision: Precision
) -> Affine:
    """y = (sum of at most m inputs) / count, as y = sum_i x_i (1 / count) (1 + theta_i), |theta_i| <= gamma_{m+1}.

    The sum's m - 1 additions give (1 + theta_{m-1}) per term (Higham 3.1, any order); dividing by the count
    is one more rounding, (1 + delta); multiplying by 1 / count instead (as a runtime may) rounds 1 / count
    too, (1 + delta_1)(1 + delta_2). Either way each term carries at most m + 1 factors (1 + delta), which is
    within gamma_{m+1} (Higham lemma 3.1): `sum_of_products` with k = m + 1 and the mean's weights 1 / count,
    which are positive, so the map and its absolute value are the same. Padding adds exact zeros.
    """
    value, error, magnitude = sum_of_products(x, e, mean, m + 1, None, precision)
    # The sum before the division reaches up to m times the mean's magnitude: where that may overflow, a
    # correct implementation returns inf or NaN (3e38 + 3e38 = inf, though the mean is representable).
    overflow = m * magnitude * (1 + (m + 1) * precision.u) >= precision.max
    return elementwise(value, np.where(overflow, np.inf, error))


def window_formula(node: Node) -> str:
    """`maxpool2x2(c1)`, `avgpool3/2(c1)` (a 3-wide window, stride 2)."""
    a = node.attrs
    size = "x".join(map(str, a["kernel_shape"]))
    stride = "" if a["strides"] == a["kernel_shape"] else "/" + "x".join(map(str, a["strides"]))
    return f"{node.op.split('_')[0]}pool{size}{stride}({node.inputs[0]})"


# --- global pools -----------------------------------------------------------------------------------


def _spatial_axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=_spatial_axes(x))


def global_max_pool(x: np.ndarray) -> np.ndarray:
    return x.max(axis=_spatial_axes(x))


def global_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """The windowed pools' rule, the window being every spatial position."""
    (x,) = inputs
    flat = x.reshape(*x.shape[:2], -1)
    if node.op == "global_avg_pool":
        share = np.broadcast_to(upstream[..., None] / flat.shape[-1], flat.shape)
    else:
        first = np.argmax(flat, axis=-1)
        share = np.where(np.arange(flat.shape[-1]) == first[..., None], upstream[..., None], 0.0)
    return [np.ascontiguousarray(share).reshape(x.shape)], {}


def global_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    pooled = g.op("GlobalAveragePool" if node.op == "global_avg_pool" else "GlobalMaxPool", list(inputs))
    return g.op("Flatten", [pooled], out, axis=1)  # [N, C, 1, ...] -> [N, C]


def global_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """As the windowed pools, the window being every spatial position: m = prod(spatial) terms."""
    x, e = unfold(inputs[0], node.input_shapes[0])
    axes = _spatial_axes(x)
    if node.op == "global_avg_pool":
        m = math.prod(node.input_shapes[0][1:])
        return _mean_bound(x, e, lambda a, absolute: a.mean(axis=axes), m, precision)
    return elementwise(x.max(axis=axes), e.max(axis=axes))


def global_formula(node: Node) -> str:
    """`globalavg(c2)`."""
    return f"global{node.op.split('_')[1]}({node.inputs[0]})"


# --- examples and registration -----------------------------------------------------------------------


def _example(name: str, shape: list[int], conv: str, layers: list[dict]) -> dict:
    """A whole spec: a small seeded convolution, so that the pools see mixed signs, then `layers`."""
    first = {
        "type": conv,
        "name": "c1",
        "filters": 3,
        "kernel_size": 3,
        "padding": "same",
        "weights": {"init": "glorot_uniform", "seed": 1},
        "bias": {"init": "normal", "seed": 2},
    }
    return {"format": "nnspec/1", "name": name, "inputs": [{"name": "x", "shape": shape}], "layers": [first, *layers]}


EXAMPLES: dict[str, tuple[dict, ...]] = {
    "max_pool1d": (
        _example(
            "max_pool1d_example",
            [2, 11],
            "conv1d",
            [{"type": "max_pool1d", "name": "p1", "pool_size": 3, "strides": 2, "padding": [1, 1], "ceil_mode": True}],
        ),
    ),
    "max_pool2d": (
        _example("max_pool2d_example", [1, 6, 6], "conv2d", [{"type": "max_pool2d", "name": "p1", "pool_size": 2}]),
        _example(
            "max_pool2d_same",
            [2, 7, 5],
            "conv2d",
            [{"type": "max_pool2d", "name": "p1", "pool_size": [3, 2], "strides": [2, 1], "padding": "same"}],
        ),
    ),
    "avg_pool1d": (
        _example(
            "avg_pool1d_example",
            [2, 12],
            "conv1d",
            [
                {"type": "avg_pool1d", "name": "p1", "pool_size": 3, "padding": "same"},
                {"type": "avg_pool1d", "name": "p2", "pool_size": 2, "padding": [1], "count_include_pad": True},
            ],
        ),
    ),
    "avg_pool2d": (
        _example(
            "avg_pool2d_example",
            [1, 8, 8],
            "conv2d",
            [{"type": "avg_pool2d", "name": "p1", "pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True}],
        ),
        _example(
            "avg_pool2d_include_pad",
            [2, 6, 7],
            "conv2d",
            [
                {
                    "type": "avg_pool2d",
                    "name": "p1",
                    "pool_size": [2, 3],
                    "padding": [1, 0, 0, 1],
                    "count_include_pad": True,
                    "ceil_mode": True,
                }
            ],
        ),
    ),
    "global_avg_pool": (
        _example(
            "global_avg_pool_example",
            [1, 8, 8],
            "conv2d",
            [
                {"type": "global_avg_pool", "name": "g"},
                {"type": "dense", "name": "out", "units": 2, "weights": {"init": "glorot_uniform", "seed": 3}},
            ],
        ),
        _example("global_avg_pool_1d", [2, 9], "conv1d", [{"type": "global_avg_pool", "name": "g"}]),
    ),
    "global_max_pool": (
        _example(
            "global_max_pool_example",
            [2, 5, 6],
            "conv2d",
            [
                {"type": "global_max_pool", "name": "g"},
                {"type": "activation", "name": "probs", "activation": "softmax"},
            ],
        ),
    ),
}

_POOLS = {"MaxPool": "max_pool", "AveragePool": "avg_pool"}
_GLOBALS = {"GlobalAveragePool": "global_avg_pool", "GlobalMaxPool": "global_max_pool"}
_REDUCTIONS = {"ReduceMean": "global_avg_pool", "ReduceMax": "global_max_pool"}


def _pool_fields(node: OnnxNode, rank: int) -> dict[str, object]:
    if len([o for o in node.outputs if o]) > 1:
        raise Unliftable("its indices output (the format's pools output values only)")
    if any(d != 1 for d in int_list(node.attrs.get("dilations") or [])):
        raise Unliftable(f"dilations {node.attrs['dilations']} (the format's pools have none)")
    kernel = int_list(node.attrs["kernel_shape"])
    fields: dict[str, object] = {"pool_size": compact(kernel), **lift_window(node, rank)}
    if fields["strides"] == fields["pool_size"] or int_list(node.attrs.get("strides") or [1] * rank) == kernel:
        del fields["strides"]  # the format's default stride is the pool size
    if node.attrs.get("ceil_mode", 0):
        fields["ceil_mode"] = True
    if node.op == "AveragePool" and node.attrs.get("count_include_pad", 0):
        fields["count_include_pad"] = True
    return fields


def window_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """MaxPool or AveragePool over 1 or 2 spatial axes, and the 1-D pool some exporters write as
    Unsqueeze, a 2-D pool with a window of 1 along the new axis, then Squeeze."""
    if node.op == "Unsqueeze":
        return _lift_unsqueezed(node, view)
    if node.op not in _POOLS or not computed(view, node.inputs[:1]):
        return None
    rank = len(node.attrs["kernel_shape"])
    if rank not in (1, 2):
        raise Unliftable(f"a {rank}-D pool (the format has 1-D and 2-D pools)")
    fields = _pool_fields(node, rank)
    return Lifted(f"{_POOLS[node.op]}{rank}d", fields, {}, node.inputs[:1], (node,), node.outputs[0])


def _lift_unsqueezed(node: OnnxNode, view: ModelView) -> Lifted | None:
    axes = int_list(node.attrs.get("axes") or [])
    shape = view.shape(node.inputs[0])
    pool = view.sole_consumer(node.outputs[0])
    if len(axes) != 1 or shape is None or len(shape) != 3 or pool is None or pool.op not in _POOLS:
        return None
    squeeze = view.sole_consumer(pool.outputs[0])
    axis = axes[0] % 4
    if (
        squeeze is None
        or squeeze.op != "Squeeze"
        or [a % 4 for a in int_list(squeeze.attrs.get("axes") or [])] != [axis]
    ):
        return None
    if axis not in (2, 3):
        return None
    other = 3 - axis  # the original length axis, in the 2-D pool's spatial axes (2 or 3) -> index 0 or 1
    a = pool.attrs
    kernel, strides = int_list(a["kernel_shape"]), int_list(a.get("strides") or [1, 1])
    pads = int_list(a.get("pads") or [0, 0, 0, 0])
    i, j = axis - 2, other - 2
    if kernel[i] != 1 or strides[i] != 1 or pads[i] or pads[i + 2] or a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return None
    flat = OnnxNode(
        pool.op,
        pool.name,
        pool.inputs,
        pool.outputs,
        {**a, "kernel_shape": [kernel[j]], "strides": [strides[j]], "pads": [pads[j], pads[j + 2]], "dilations": [1]},
    )
    fields = _pool_fields(flat, 1)
    return Lifted(f"{_POOLS[pool.op]}1d", fields, {}, node.inputs[:1], (node, pool, squeeze), squeeze.outputs[0])


def global_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """GlobalAveragePool / GlobalMaxPool (or ReduceMean / ReduceMax over every spatial axis, as PyTorch's
    dynamo exporter writes them), then what drops the 1-sized spatial axes: Flatten(axis=1), a Reshape to
    [N, C], or a Squeeze of the spatial axes."""
    if node.op in _REDUCTIONS and computed(view, node.inputs[:1]):
        shape = view.shape(node.inputs[0])
        axes = node.attrs.get("axes") or []
        if shape is None or len(shape) < 3 or sorted(int(a) % len(shape) for a in axes) != list(range(2, len(shape))):
            return None
        if not node.attrs.get("keepdims", 1):
            return Lifted(_REDUCTIONS[node.op], {}, {}, node.inputs[:1], (node,), node.outputs[0])
        after = view.sole_consumer(node.outputs[0])
        if after is None or not _drops_spatial(after, view.shape(node.outputs[0]), view):
            return None
        return Lifted(_REDUCTIONS[node.op], {}, {}, node.inputs[:1], (node, after), after.outputs[0])
    if node.op not in _GLOBALS or not computed(view, node.inputs[:1]):
        return None
    shape = view.shape(node.outputs[0])
    after = view.sole_consumer(node.outputs[0])
    if after is None or not _drops_spatial(after, shape, view):
        raise Unliftable(
            "its [C, 1, ...] output is read as such (the format's global pools output [C]; a Flatten after it "
            "is what they lift with)"
        )
    return Lifted(_GLOBALS[node.op], {}, {}, node.inputs[:1], (node, after), after.outputs[0])


def _drops_spatial(node: OnnxNode, shape: tuple[int | None, ...] | None, view: ModelView) -> bool:
    if node.op == "Flatten":
        return int(node.attrs.get("axis", 1)) == 1
    rank = len(shape) if shape is not None else None
    if node.op == "Squeeze" and rank is not None:
        return sorted(a % rank for a in int_list(node.attrs.get("axes") or [])) == list(range(2, rank))
    if node.op == "Reshape" and shape is not None:
        target = view.const(node.inputs[1])
        return (
            target is not None
            and target.size == 2
            and int(target[1]) in (-1, shape[1])
            and int(target[0])
            in (
                0,
                -1,
                shape[0],
            )
        )
    return False


for _spec in (MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D):
    _name = _spec.model_fields["type"].annotation.__args__[0]
    register(
        LayerType(
            _name,
            _spec,
            window_lowering,
            window_bound,
            window_formula,
            doc=__doc__ or "",
            examples=EXAMPLES[_name],
            lift=window_lift,
            vjp=window_vjp,
            multiply_adds=no_multiply_adds,
            kernel=avg_pool if _name.startswith("avg") else max_pool,
            prepare=avg_prepare if _name.startswith("avg") else max_prepare,
        )
    )
for _spec in (GlobalAvgPool, GlobalMaxPool):
    _name = _spec.model_fields["type"].annotation.__args__[0]
    register(
        LayerType(
            _name,
            _spec,
            global_lowering,
            global_bound,
            global_formula,
            doc=__doc__ or "",
            examples=EXAMPLES[_name],
            lift=global_lift,
            vjp=global_vjp,
            multiply_adds=no_multiply_adds,
            kernel=global_avg_pool if _name == "global_avg_pool" else global_max_pool,
            prepare=no_arguments,
        )
    )
