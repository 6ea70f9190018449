"""`batch_norm` (inference form, over the channel axis 1) and `layer_norm` (over the last axis).

Both take `epsilon` as ONNX does, a float32 attribute: onnxruntime adds float32(epsilon) even in a
float64 network, so the derived bounds allow |epsilon - float32(epsilon)| on top of the rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ..activations import Precision
from ..affine import Affine, Source
from ..errors import SpecError
from ..fields import Init, Inline, WeightField, spec_error
from ..ir import LayerPlan, Node, ParamPlan
from ..ir import Source as Input
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed, last_axis, tidy_float
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, register

FLOAT32_MAX = float(np.finfo(np.float32).max)


class Normalization(LayerSpec):
    """What both normalizations share: epsilon, a number >= 0 that float32 holds (ONNX stores it as float32)."""

    epsilon: float = Field(
        1e-5,
        ge=0,
        allow_inf_nan=False,
        description="added to the variance before the square root; stored as float32, as ONNX stores it",
    )

    @field_validator("epsilon")
    @classmethod
    def _fits_float32(cls, value: float) -> float:
        if value > FLOAT32_MAX:
            raise spec_error(
                f"expected epsilon <= {FLOAT32_MAX:.7g} (the largest float32: ONNX stores epsilon as one), found {value:g}"
            )
        return value


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): k roundings in a product of (1 + delta) factors."""
    return k * u / (1 - k * u) if k * u < 1 else math.inf


def stored_epsilon_error(epsilon: float) -> float:
    """|epsilon - float32(epsilon)|: how far the epsilon a runtime adds may be from the spec's number."""
    return abs(epsilon - float(np.float32(epsilon)))


# --- batch_norm --------------------------------------------------------------------------------------


class BatchNorm(Normalization):
    """Inference batch normalization over channel axis 1: y = scale (x - mean) / sqrt(variance + epsilon) + offset."""

    type: Literal["batch_norm"]
    mean: WeightField = Field(description="the running mean, shape [C] (C: the input's axis 1)")
    variance: WeightField = Field(description="the running variance, shape [C], every value >= 0")
    scale: WeightField | None = Field(default=None, description="gamma, shape [C]; default ones")
    offset: WeightField | None = Field(default=None, description="beta, shape [C]; default zeros")

    def plan(self, sources: Sequence[Input]) -> LayerPlan:
        (src,) = sources
        channels = src.shape[0]
        why = f"one per channel: {src.describe()} has {channels} channels (axis 1 of {['N', *src.shape]})"
        _check_variance_source(self.variance, self.epsilon)
        fields = {"mean": self.mean, "variance": self.variance, "scale": self.scale, "offset": self.offset}
        params = {key: ParamPlan((channels,), value, why) for key, value in fields.items() if value is not None}
        return LayerPlan(shape=src.shape, params=params, attrs={"epsilon": self.epsilon})


def _check_variance_source(source: object, epsilon: float) -> None:
    """Refuse, before anything is loaded, variances that the spec itself says are negative (or zero with epsilon 0)."""
    if isinstance(source, Inline):
        _check_variance_values(np.asarray(source.array, dtype=np.float64).reshape(-1), epsilon, ("variance",))
    elif isinstance(source, Init):
        p = source.params
        signed = {"glorot_uniform", "he_normal"}
        if (
            source.init in signed
            or (source.init == "uniform" and p["low"] < 0)
            or (source.init == "normal" and (p["std"] > 0 or p["mean"] < 0))
            or (source.init == "constant" and p["value"] < 0)
        ):
            raise SpecError(
                f"expected variances >= 0, found a {source.init} initializer, which draws negative numbers "
                '(use "ones", "constant", "uniform" with low >= 0, inline numbers or a file)',
                ("variance",),
            )
        if epsilon == 0 and (source.init == "zeros" or (source.init == "constant" and p["value"] == 0)):
            raise SpecError(
                "expected variance + epsilon > 0 in every channel, found variance 0 with epsilon 0 (a division by zero)",
                ("variance",),
            )


def _check_variance_values(variance: np.ndarray, epsilon: float, loc: tuple[str | int, ...]) -> None:
    """Every variance >= 0, and variance + epsilon > 0 (also with epsilon as float32): else name the channel."""
    negative = np.flatnonzero(variance < 0)
    if negative.size:
        i = int(negative[0])
        raise SpecError(f"expected variances >= 0, found {variance[i]} at index [{i}]", loc)
    stored = float(np.float32(epsilon))
    zero = np.flatnonzero((variance + epsilon <= 0) | (variance + stored <= 0))
    if zero.size:
        i = int(zero[0])
        raise SpecError(
            f"expected variance + epsilon > 0 in every channel, found variance {variance[i]} at index [{i}] with "
            f"epsilon {epsilon} (a division by zero)",
            loc,
        )


def _checked(node: Node) -> Node:
    """The node, once its loaded variances are known to be valid (a file's numbers are seen only now)."""
    _check_variance_values(
        node.params["variance"].astype(np.float64), node.attrs["epsilon"], ("layers", node.index, "variance")
    )
    return node


def _per_channel(node: Node, values: np.ndarray) -> np.ndarray:
    """A [C] array shaped to broadcast over a [N, C, ...] batch."""
    return values.reshape((-1,) + (1,) * (len(node.shape) - 1))


def batch_norm(x: np.ndarray, mean: np.ndarray, factor: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """y = (x - mean) * factor + offset, per channel, with factor = scale / sqrt(variance + epsilon)."""
    y = (x - mean) * factor
    if offset is not None:
        y += offset
    return y


def batch_norm_prepare(node: Node) -> Arguments:
    """The per-channel arrays shaped [C, 1, ...] to broadcast over a batch; scale / sqrt(variance + epsilon) once."""
    _checked(node)
    dtype = node.params["mean"].dtype
    epsilon = dtype.type(node.attrs["epsilon"])
    scale = node.params.get("scale")
    with np.errstate(over="ignore"):  # a factor beyond the dtype's range is inf, as in any runtime
        factor = 1 / np.sqrt(node.params["variance"] + epsilon)
        factor = _per_channel(node, factor if scale is None else scale * factor)
    return {
        "mean": _per_channel(node, node.params["mean"]),
        "factor": factor,
        "offset": _per_channel(node, node.params["offset"]) if "offset" in node.params else None,
    }


def batch_norm_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """y = scale x̂ + offset with x̂ = (x - mean) / sqrt(variance + epsilon), an affine map per channel:
    dL/dx = dL/dy scale / sqrt(variance + epsilon), dL/dscale = sum dL/dy x̂, dL/doffset = sum dL/dy. The running
    mean and variance are statistics of the training data, not weights: training leaves them (`frozen`)."""
    (x,) = inputs
    root = _per_channel(node, np.sqrt(node.params["variance"] + node.attrs["epsilon"]))
    scale = _per_channel(node, node.params["scale"]) if "scale" in node.params else 1.0
    axes = (0, *range(2, x.ndim))
    grads = {}
    if "scale" in node.params:
        grads["scale"] = (upstream * (x - _per_channel(node, node.params["mean"])) / root).sum(axis=axes)
    if "offset" in node.params:
        grads["offset"] = upstream.sum(axis=axes)
    return [upstream * scale / root], grads


def batch_norm_onnx(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    _checked(node)
    channels = node.shape[0]
    defaults = {"scale": 1.0, "offset": 0.0}  # BatchNormalization takes all four: the defaults become constants
    named = {
        key: g.const(node.params[key] if key in node.params else np.full(channels, defaults[key]), f"{node.name}.{key}")
        for key in ("scale", "offset", "mean", "variance")
    }
    order = [inputs[0], named["scale"], named["offset"], named["mean"], named["variance"]]
    return g.op("BatchNormalization", order, out, epsilon=float(node.attrs["epsilon"]))


def _relative_inverse_error(denominator: np.ndarray, epsilon: float) -> np.ndarray:
    """max |1/sqrt(v + e') / (1/sqrt(v + e)) - 1| over the epsilons e' a runtime may add (float32(e) or e)."""
    moved = stored_epsilon_error(epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denominator > moved, denominator / np.maximum(denominator - moved, 1e-300), np.inf)
    return np.sqrt(ratio) - 1


def batch_norm_bound(node: Node, inputs: Sequence[Affine], p: Precision) -> Affine:
    """Carry the input's error through the per-channel factor, and add the rounding of either evaluation order.

    inv = scale / sqrt(variance + epsilon). Unfused, whatever the order (x - mean first, or x inv + (offset -
    mean inv) as onnxruntime's CPU kernel does, the factor by division or by reciprocal and product), each of
    the three terms x inv, mean inv and offset carries at most 7 roundings: gamma_7 (|x inv| + |mean inv| +
    |offset|). Fused into the sum of products before it (onnxruntime's Conv+BatchNormalization fusion), the
    folded weights W inv and bias (b - mean) inv + offset are off by alpha = gamma_5 relative each, and the
    fused sum of k + 1 terms rounds by gamma_{k+1} relative to its terms; the input's bound over its terms
    (>= gamma_k) gives k. The larger of the two is added.
    """
    (x,) = inputs
    _checked(node)
    u, tiny = p.u, p.tiny
    channels = node.shape[0]
    ones, zeros = np.ones(channels), np.zeros(channels)
    denominator = node.params["variance"] + node.attrs["epsilon"]
    inv_c = node.params.get("scale", ones) / np.sqrt(denominator)
    slack_c = _relative_inverse_error(denominator, node.attrs["epsilon"])

    batch = x.value.size // math.prod(node.shape)

    def spread(per_channel: np.ndarray) -> np.ndarray:
        full = np.broadcast_to(_per_channel(node, per_channel), (batch, *node.shape))
        return np.ascontiguousarray(full).reshape(x.value.shape)

    inv, slack = spread(inv_c), spread(slack_c)
    mean, offset = spread(node.params["mean"]), spread(node.params.get("offset", zeros))
    value = (x.value - mean) * inv + offset
    error = x.bound()
    magnitude = np.abs(inv) * (np.abs(x.value) + error + np.abs(mean)) * (1 + slack) + np.abs(offset)
    own = gamma(7, u) * magnitude + np.abs(inv) * slack * (np.abs(x.value - mean) + error) + 8 * tiny
    # Where the factor or a term may leave the dtype's range, a correct implementation may return inf or NaN.
    leaves = (np.abs(inv) * (1 + slack) >= p.max) | (magnitude * (1 + gamma(7, u)) >= p.max)
    own = np.where(leaves, np.inf, own)
    terms = None
    if x.terms is not None:
        fold, terms = _folded_rounding(x.terms, error, inv, mean, offset, slack, p)
        own = np.maximum(own, fold)
    carried = [s.scale_rows(inv) for s in x.sources]
    return Affine(value, [*carried, Source(own)], terms=terms).condensed()


def _folded_rounding(
    terms: np.ndarray,
    error: np.ndarray,
    inv: np.ndarray,
    mean: np.ndarray,
    offset: np.ndarray,
    slack: np.ndarray,
    p: Precision,
) -> tuple[np.ndarray, np.ndarray]:
    """The error of the fused sum of products beyond the carried one, and the fused sum's terms' magnitude.

    The input's own rounding is at least gamma_k times its terms, so error / terms >= gamma_k bounds k u
    by g / (1 + g), and gamma_{k+1} by (g / (1 + g) + u) / (1 - g / (1 + g) - u).
    """
    u, tiny = p.u, p.tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(terms > 0, error / np.where(terms > 0, terms, 1.0), 0.0)
        ku = g / (1 + g)
        fused_gamma = np.where(ku + u < 1, (ku + u) / (1 - ku - u), np.inf)
    alpha = (1 + slack) * (1 + gamma(5, u)) - 1
    fused_terms = np.abs(inv) * (terms + np.abs(mean)) + np.abs(offset)
    fold = alpha * fused_terms + fused_gamma * (1 + alpha) * fused_terms + (ku / u + 4) * tiny
    return fold, (1 + alpha) * fused_terms


def batch_norm_multiply_adds(node: Node) -> int:
    """One per element: at inference a batch norm is x * (scale / sqrt(variance + epsilon)) + shift per channel."""
    return math.prod(node.shape)


def batch_norm_formula(node: Node) -> str:
    return f"batchnorm({node.inputs[0]})"


# --- layer_norm --------------------------------------------------------------------------------------


class LayerNorm(Normalization):
    """Layer normalization over the last axis: y = (x - mean) / sqrt(var + epsilon) * scale + offset."""

    type: Literal["layer_norm"]
    scale: WeightField | None = Field(default=None, description="gamma, shape [D] (D: the last axis); default ones")
    offset: WeightField | None = Field(default=None, description="beta, shape [D]; default zeros")

    def plan(self, sources: Sequence[Input]) -> LayerPlan:
        (src,) = sources
        width = src.shape[-1]
        why = f"one per feature of the last axis: {src.describe()} has {width} there"
        fields = {"scale": self.scale, "offset": self.offset}
        params = {key: ParamPlan((width,), value, why) for key, value in fields.items() if value is not None}
        return LayerPlan(shape=src.shape, params=params, attrs={"epsilon": self.epsilon})


def layer_norm(x: np.ndarray, epsilon: float, scale: np.ndarray | None, offset: np.ndarray | None) -> np.ndarray:
    """(x - mean) / sqrt(variance + epsilon) * scale + offset over the last axis."""
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    y = centred / np.sqrt(variance + x.dtype.type(epsilon))
    if scale is not None:
        y *= scale
    if offset is not None:
        y += offset
    return y


def layer_norm_prepare(node: Node) -> Arguments:
    return {"epsilon": node.attrs["epsilon"], "scale": node.params.get("scale"), "offset": node.params.get("offset")}


def layer_norm_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """With x̂ = (x - mean) / s over the last axis (s = sqrt(var + epsilon)) and h = dL/dy scale:
    dL/dx = (h - mean(h) - x̂ mean(h x̂)) / s; dL/dscale = sum dL/dy x̂, dL/doffset = sum dL/dy over the other axes."""
    (x,) = inputs
    centred = x - x.mean(axis=-1, keepdims=True)
    root = np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + node.attrs["epsilon"])
    normed = centred / root
    h = upstream * node.params["scale"] if "scale" in node.params else upstream
    dx = (h - h.mean(axis=-1, keepdims=True) - normed * (h * normed).mean(axis=-1, keepdims=True)) / root
    axes = tuple(range(x.ndim - 1))
    grads = {}
    if "scale" in node.params:
        grads["scale"] = (upstream * normed).sum(axis=axes)
    if "offset" in node.params:
        grads["offset"] = upstream.sum(axis=axes)
    return [dx], grads


def layer_norm_onnx(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    (x,) = inputs
    epsilon = float(node.attrs["epsilon"])
    scale = g.const(node.params["scale"], f"{node.name}.scale") if "scale" in node.params else None
    offset = g.const(node.params["offset"], f"{node.name}.offset") if "offset" in node.params else None
    if g.opset >= 17:
        scale = scale or g.const(np.ones(node.shape[-1]), f"{node.name}.scale")
        return g.op("LayerNormalization", [x, scale] + ([offset] if offset else []), out, axis=-1, epsilon=epsilon)
    # LayerNormalization is new in opset 17: below it, the same from primitives.
    centred = g.op("Sub", [x, _mean_last_axis(g, x)])
    variance = _mean_last_axis(g, g.op("Mul", [centred, centred]))
    std = g.op("Sqrt", [g.op("Add", [variance, g.const(epsilon)])])
    steps = [("Div", std), ("Mul", scale), ("Add", offset)]
    steps = [(op, operand) for op, operand in steps if operand is not None]
    y = centred
    for k, (op, operand) in enumerate(steps):
        y = g.op(op, [y, operand], out if k == len(steps) - 1 else None)
    return out


def _mean_last_axis(g: OpBuilder, x: str) -> str:
    """ReduceMean over the last axis, keeping it: `axes` is an attribute before opset 18, an input from 18."""
    if g.opset >= 18:
        return g.op("ReduceMean", [x, g.op("Constant", [], value_ints=[-1])], keepdims=1)
    return g.op("ReduceMean", [x], axes=[-1], keepdims=1)


def layer_norm_bound(node: Node, inputs: Sequence[Affine], p: Precision) -> Affine:
    """A rigorous (not linearized) bound per element, folding the input's error in; see `_layer_norm_error`."""
    (x,) = inputs
    width = node.shape[-1]
    scale = node.params.get("scale", np.ones(width))
    offset = node.params.get("offset", np.zeros(width))
    epsilon = node.attrs["epsilon"]
    mean = x.value.mean(axis=-1, keepdims=True)
    centred = x.value - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    value = centred / np.sqrt(variance + epsilon) * scale + offset
    error = _layer_norm_error(x.value, x.bound(), scale, offset, epsilon, p)
    return Affine(value, [Source(error)])


def _layer_norm_error(
    x: np.ndarray, e: np.ndarray, scale: np.ndarray, offset: np.ndarray, epsilon: float, p: Precision
) -> np.ndarray:
    """|computed - exact| for inputs within e of x, for the orders a runtime may use.

    mean: any order of summation, then a division by d or a product with fl(1/d): gamma_{d+2} relative
    to mean |x|. The variance either two-pass, mean((x - mean)^2) (nnspec's NumPy kernel, the composed
    ONNX form), or textbook, mean(x^2) - mean^2 (onnxruntime's LayerNormalization kernel), whose error is
    relative to mean(x^2), not to the variance: with a large mean and a small spread it can exceed the
    variance + epsilon itself, and then the result is unbounded (inf), as a runtime's may be NaN there.
    The normalizer: sqrt, then a division, or a reciprocal and products, with the scale (gamma_4), and the
    final addition of the offset. Input errors enter every step as perturbations, so the bound is not a
    linearization: it holds however large they are.
    """
    u, tiny = p.u, p.tiny
    d = x.shape[-1]

    def avg(a: np.ndarray) -> np.ndarray:
        return a.mean(axis=-1, keepdims=True)

    mu = avg(x)
    r = x - mu
    variance = avg(r * r)
    w = variance + epsilon
    ax = np.abs(x) + e
    d_mu = avg(e) + gamma(d + 2, u) * avg(ax) + d * tiny
    d_r = e + d_mu + u * (np.abs(r) + e + d_mu)
    big_r = np.abs(r) + d_r
    two_pass = avg(d_r * (2 * np.abs(r) + d_r)) + gamma(d + 3, u) * avg(big_r * big_r) + d * tiny
    abs_mu = np.abs(mu) + d_mu
    squares = (
        gamma(d + 2, u) * avg(ax * ax)
        + avg(e * (2 * np.abs(x) + e))
        + d_mu * (2 * np.abs(mu) + d_mu)
        + u * abs_mu * abs_mu
        + (d + 1) * tiny
    )
    textbook = squares + u * (variance + squares)
    d_var = np.maximum(two_pass, textbook)
    moved = stored_epsilon_error(epsilon)
    d_w = d_var + moved + u * (w + d_var + moved)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(w > 0, d_w / np.where(w > 0, w, 1.0), np.inf)
        sigma = np.where(rho < 1, (1 + gamma(4, u)) / np.sqrt(np.maximum(1 - rho, 0.0)) - 1, np.inf)
        s = np.sqrt(w)
        g = np.abs(scale)
        error = g / s * (d_r + big_r * sigma) + u * (g * big_r * (1 + sigma) / s + np.abs(offset)) + 4 * tiny
    # Squares and sums of squares that may leave the dtype's range overflow (inf, or NaN) in any correct
    # implementation: nothing is bounded there.
    overflow = avg(big_r * big_r) * d * (1 + gamma(d + 3, u)) >= p.max
    overflow |= avg(ax * ax) * d * (1 + gamma(d + 2, u)) >= p.max
    return np.where(np.isnan(error) | overflow, np.inf, error)


def layer_norm_multiply_adds(node: Node) -> int:
    """Three per element: the mean's sum, the variance's sum of squares, and the scale and shift."""
    return 3 * math.prod(node.shape)


def layer_norm_formula(node: Node) -> str:
    return f"layernorm({node.inputs[0]})"


# --- examples and registration -------------------------------------------------------------------------

BATCH_NORM_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "batch_norm_after_dense",
        "inputs": [{"name": "p", "shape": [4]}],
        "layers": [
            {
                "type": "dense",
                "name": "hidden",
                "units": 3,
                "weights": {"init": "glorot_uniform", "seed": 1},
                "bias": {"init": "normal", "seed": 2},
            },
            {
                "type": "batch_norm",
                "name": "bn",
                "mean": [0.1, -0.2, 0.3],
                "variance": [0.5, 1.5, 0.04],
                "scale": [1.2, 0.8, -0.5],
                "offset": [0.0, 0.1, -0.1],
            },
            {"type": "activation", "name": "act", "activation": "tanh"},
        ],
    },
    {
        "format": "nnspec/1",
        "name": "batch_norm_channels",
        "inputs": [{"name": "x", "shape": [3, 5]}],
        "layers": [
            {
                "type": "batch_norm",
                "name": "bn",
                "mean": {"init": "normal", "seed": 3, "std": 1.0},
                "variance": {"init": "uniform", "seed": 4, "low": 0.5, "high": 2.0},
                "epsilon": 0.001,
            }
        ],
    },
    {
        "format": "nnspec/1",
        "name": "batch_norm_float64",
        "dtype": "float64",
        "inputs": [{"name": "x", "shape": [2, 2, 3]}],
        "layers": [
            {
                "type": "batch_norm",
                "name": "bn",
                "mean": [1000.0, -3.0],
                "variance": [0.01, 4.0],
                "offset": {"init": "normal", "seed": 5},
            },
            {"type": "dense", "name": "mix", "units": 2, "weights": {"init": "glorot_uniform", "seed": 6}},
        ],
    },
)

LAYER_NORM_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "layer_norm_after_dense",
        "inputs": [{"name": "p", "shape": [6]}],
        "layers": [
            {
                "type": "dense",
                "name": "hidden",
                "units": 8,
                "activation": "relu",
                "weights": {"init": "he_normal", "seed": 1},
                "bias": {"init": "normal", "seed": 2},
            },
            {
                "type": "layer_norm",
                "name": "ln",
                "scale": {"init": "normal", "seed": 3, "mean": 1.0, "std": 0.1},
                "offset": {"init": "normal", "seed": 4},
            },
            {"type": "dense", "name": "out", "units": 2, "weights": {"init": "glorot_uniform", "seed": 5}},
        ],
    },
    {
        "format": "nnspec/1",
        "name": "layer_norm_rows",
        "inputs": [{"name": "x", "shape": [4, 5]}],
        "layers": [{"type": "layer_norm", "name": "ln", "offset": [0.5, 0.0, -0.5, 1.0, 2.0], "epsilon": 0.001}],
    },
)


def _defaults(params: dict[str, np.ndarray]) -> frozenset[str]:
    """A scale of exact ones and an offset of exact (positive) zeros: the format's defaults, the same numbers."""
    found = set()
    if "scale" in params and np.all(params["scale"] == 1):
        found.add("scale")
    if "offset" in params and not np.any(params["offset"]) and not np.signbit(params["offset"]).any():
        found.add("offset")
    return frozenset(found)


def batch_norm_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """BatchNormalization at inference, every statistic a constant."""
    if node.op != "BatchNormalization" or not computed(view, node.inputs[:1]):
        return None
    if node.attrs.get("training_mode", 0) or len([o for o in node.outputs if o]) > 1:
        raise Unliftable("training mode (running statistics updated); the format holds inference only")
    arrays = [view.const(i) for i in node.inputs[1:5]]
    if any(a is None for a in arrays):
        raise Unliftable("a statistic or scale that is computed, not a constant")
    scale, offset, mean, variance = (a.reshape(-1) for a in arrays)  # type: ignore[union-attr]
    params = {"mean": mean, "variance": variance, "scale": scale, "offset": offset}
    fields = {"epsilon": tidy_float(node.attrs.get("epsilon", 1e-5))}
    return Lifted("batch_norm", fields, params, node.inputs[:1], (node,), node.outputs[0], defaults=_defaults(params))


def layer_norm_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """LayerNormalization over the last axis (opset 17), or the same from primitives as nnspec and PyTorch
    write it below opset 17: ReduceMean, Sub, Mul (or Pow 2), ReduceMean, Add epsilon, Sqrt, Div, then an
    optional Mul by the scale and Add of the offset."""
    if node.op == "LayerNormalization":
        x = node.inputs[0]
        if not computed(view, [x]):
            return None
        if not last_axis(view, x, int(node.attrs.get("axis", -1))):
            raise Unliftable(f"axis={node.attrs.get('axis')} (the format normalizes the last axis)")
        params = {}
        for key, value in zip(("scale", "offset"), node.inputs[1:3], strict=False):
            if value:
                array = view.const(value)
                if array is None:
                    raise Unliftable(f"its {key} is computed, not a constant")
                params[key] = array.reshape(-1)
        fields = {"epsilon": tidy_float(node.attrs.get("epsilon", 1e-5))}
        return Lifted("layer_norm", fields, params, (x,), (node,), node.outputs[0], defaults=_defaults(params))
    if node.op == "ReduceMean":
        return _composed_layer_norm(node, view)
    return None


def _mean_of_last(node: OnnxNode | None, view: ModelView) -> bool:
    if node is None or node.op != "ReduceMean" or not node.attrs.get("keepdims", 1):
        return False
    axes = node.attrs.get("axes") or []
    return len(axes) == 1 and last_axis(view, node.inputs[0], int(axes[0]))


def _composed_layer_norm(mean: OnnxNode, view: ModelView) -> Lifted | None:
    x = mean.inputs[0]
    if not _mean_of_last(mean, view) or not computed(view, [x]):
        return None
    sub = view.sole_consumer(mean.outputs[0])
    if sub is None or sub.op != "Sub" or list(sub.inputs) != [x, mean.outputs[0]]:
        return None
    centred = sub.outputs[0]
    readers = view.consumers(centred)
    square = next((r for r in readers if r.op in ("Mul", "Pow")), None)
    divide = next((r for r in readers if r.op == "Div" and r.inputs[0] == centred), None)
    if len(readers) != 2 or square is None or divide is None:
        return None
    if square.op == "Mul" and list(square.inputs) != [centred, centred]:
        return None
    if square.op == "Pow" and not _equals(view.const(square.inputs[1]), 2.0):
        return None
    variance = view.sole_consumer(square.outputs[0])
    if not _mean_of_last(variance, view):
        return None
    assert variance is not None
    add = view.sole_consumer(variance.outputs[0])
    if add is None or add.op != "Add":
        return None
    epsilon = view.const(next(i for i in add.inputs if i != variance.outputs[0]))
    sqrt = view.sole_consumer(add.outputs[0])
    if epsilon is None or epsilon.size != 1 or sqrt is None or sqrt.op != "Sqrt":
        return None
    if divide.inputs[1] != sqrt.outputs[0]:
        return None
    nodes = [mean, sub, square, variance, add, sqrt, divide]
    out = divide.outputs[0]
    params = {}
    for op, key in (("Mul", "scale"), ("Add", "offset")):
        step = view.sole_consumer(out)
        if step is None or step.op != op:
            continue
        operand = view.const(next((i for i in step.inputs if i != out), ""))
        if operand is None or operand.size != (view.shape(out) or (None,))[-1]:
            continue
        params[key] = operand.reshape(-1)
        nodes.append(step)
        out = step.outputs[0]
    fields = {"epsilon": float(epsilon.reshape(()))}
    return Lifted("layer_norm", fields, params, (x,), tuple(nodes), out)


def _equals(array: np.ndarray | None, value: float) -> bool:
    return array is not None and array.size == 1 and float(array.reshape(())) == value


register(
    LayerType(
        "batch_norm",
        BatchNorm,
        batch_norm_onnx,
        batch_norm_bound,
        batch_norm_formula,
        doc=BatchNorm.__doc__ or "",
        examples=BATCH_NORM_EXAMPLES,
        loaded=_checked,
        lift=batch_norm_lift,
        vjp=batch_norm_vjp,
        multiply_adds=batch_norm_multiply_adds,
        frozen=("mean", "variance"),
        kernel=batch_norm,
        prepare=batch_norm_prepare,
    )
)
register(
    LayerType(
        "layer_norm",
        LayerNorm,
        layer_norm_onnx,
        layer_norm_bound,
        layer_norm_formula,
        doc=LayerNorm.__doc__ or "",
        examples=LAYER_NORM_EXAMPLES,
        lift=layer_norm_lift,
        vjp=layer_norm_vjp,
        multiply_adds=layer_norm_multiply_adds,
        kernel=layer_norm,
        prepare=layer_norm_prepare,
    )
)
