"""The activation registry: one entry per function, holding its names, NumPy formula and ONNX lowering."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from .lowering import OpBuilder

Formula = Callable[..., np.ndarray]
Lowering = Callable[..., str]


@dataclass(frozen=True)
class Choice:
    """A string parameter with a closed set of values; the first is the default."""

    values: tuple[str, ...]

    @property
    def default(self) -> str:
        return self.values[0]


@dataclass(frozen=True)
class Precision:
    """The arithmetic a bound is for: unit roundoff u and the smallest subnormal."""

    u: float
    tiny: float
    dtype: np.dtype

    @classmethod
    def of(cls, dtype: np.dtype | str) -> Precision:
        info = np.finfo(np.dtype(dtype))
        return cls(float(info.eps) / 2, float(info.smallest_subnormal), np.dtype(dtype))

    @property
    def max(self) -> float:
        """The largest finite number; a sum whose terms may reach it can overflow to inf, or to NaN (inf - inf)."""
        return float(np.finfo(self.dtype).max)


# Ulps a correct library may spend on one exp/log/tanh-based function (NumPy's SIMD float32 kernels
# and onnxruntime's MLAS approximations are documented to a few ulps; 8 leaves a factor of two).
TRANSCENDENTAL_ULPS = 8.0

ParamFn = Callable[..., float]


def _const(value: float) -> ParamFn:
    return lambda **params: value


@dataclass(frozen=True)
class ErrorModel:
    """What the derived error bound needs to know about an activation (see nnspec.affine).

    kind: "elementwise" (f' below), "softmax" or "log_softmax" (row Jacobians), "step" (f' = 0,
    ambiguous within the input's bound of 0, where the output jumps by `jump`).
    derivative: f'(n) at the float64 oracle's n. kinks: where f' jumps, and by how much; an input
    within its error bound of a kink adds jump * bound. curvature: a bound on |f''| elsewhere (the
    second-order remainder, negligible for rounding-sized errors but kept for rigour).
    Its own evaluation error is ulps * u * (|a| + floor + per_n * |n|): relative, widened where
    an implementation's error is absolute (a clamp, or cancellation in 1 + erf(n) for n << 0).
    """

    kind: str = "elementwise"
    derivative: Callable[..., np.ndarray] | None = None
    kinks: Callable[..., list[tuple[float, float]]] = lambda **params: []
    curvature: ParamFn = _const(2.0)
    ulps: float = TRANSCENDENTAL_ULPS
    floor: ParamFn = _const(0.0)
    per_n: float = 0.0
    jump: float = 0.0


def _piecewise_linear(
    derivative: Callable[..., np.ndarray], kinks: Callable[..., list[tuple[float, float]]], ulps: float = 0.0
) -> ErrorModel:
    return ErrorModel(derivative=derivative, kinks=kinks, curvature=_const(0.0), ulps=ulps)


@dataclass(frozen=True)
class ActivationType:
    """One activation function. `params` maps each parameter to its default (a float or a Choice)."""

    name: str
    numpy: Formula
    onnx: Lowering
    aliases: tuple[str, ...] = ()
    params: Mapping[str, float | Choice] = field(default_factory=dict)
    doc: str = ""
    error: ErrorModel = field(default_factory=ErrorModel)

    def defaults(self) -> dict[str, Any]:
        return {k: (v.default if isinstance(v, Choice) else v) for k, v in self.params.items()}


@dataclass(frozen=True)
class Activation:
    """An activation with its parameters bound: what a layer applies."""

    type: ActivationType
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.type.name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.type.numpy(x, **self.params)

    @property
    def function(self) -> Callable[[np.ndarray], np.ndarray]:
        """The formula with its parameters bound, x -> a: the function itself when it has none (no wrapper to
        call through, and what a generated module names), else a `functools.partial` of it."""
        return partial(self.type.numpy, **self.params) if self.params else self.type.numpy

    def lower(self, g: OpBuilder, x: str, out: str | None = None) -> str:
        return self.type.onnx(g, x, out, **self.params)

    @property
    def gradient_refused(self) -> str | None:
        """Why no gradient passes through this activation (None when one does), for the trainer's message."""
        if self.type.error.kind == "step":
            return "its slope is 0 wherever it has one (it jumps at 0), so no gradient reaches the weights before it"
        if self.type.error.kind == "elementwise" and self.type.error.derivative is None:
            return "it has no derivative registered"
        return None

    def vjp(self, n: np.ndarray, a: np.ndarray, upstream: np.ndarray) -> np.ndarray:
        """dL/dn from dL/da = `upstream`, where a = f(n) (float64, [..., d]): f'(n) * upstream with the very
        f' the error bound uses (ErrorModel.derivative), or the row Jacobian's transpose times upstream for
        softmax and log_softmax. A step function has no such rule: see `gradient_refused`."""
        model = self.type.error
        if model.kind == "softmax":
            return softmax_vjp(a, upstream)
        if model.kind == "log_softmax":
            return log_softmax_vjp(a, upstream)
        if self.gradient_refused is not None:
            raise ValueError(f"{self.name}: {self.gradient_refused}")
        assert model.derivative is not None
        return upstream * model.derivative(n, **self.params)

    @property
    def label(self) -> str:
        """`tanh`, or `leaky_relu[alpha=0.2]` with the parameters that differ from their defaults."""
        changed = {k: v for k, v in self.params.items() if v != self.type.defaults().get(k)}
        return self.name + (
            f"[{', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in changed.items())}]"
            if changed
            else ""
        )

    def to_json(self) -> str | dict[str, Any]:
        """The canonical spec form: a bare name when every parameter is at its default."""
        if dict(self.params) == self.type.defaults():
            return self.name
        return {"name": self.name, **self.params}


REGISTRY: dict[str, ActivationType] = {}
ALIASES: dict[str, str] = {}


def register(entry: ActivationType) -> ActivationType:
    """Add an activation; refuses a name or alias that is already taken."""
    for key in (entry.name, *entry.aliases):
        if key in ALIASES:
            raise ValueError(f"activation name {key!r} is already registered for {ALIASES[key]!r}")
        ALIASES[key] = entry.name
    REGISTRY[entry.name] = entry
    return entry


def lookup(name: str) -> ActivationType | None:
    """The entry for a canonical name or an alias, or None."""
    canonical = ALIASES.get(name)
    return REGISTRY[canonical] if canonical else None


# --- formulas --------------------------------------------------------------------------------------
# Module-level functions, not lambdas: `nnspec compile --emit numpy` copies their source into the generated
# module (nnspec.emit), so that it runs the very code the evaluator runs.


def linear(x: np.ndarray) -> np.ndarray:
    return x


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|), so that nothing overflows. exp(min(x, 0))
    # is exactly 1 for x >= 0 and exactly e below: one division computes both branches, bit for bit, without
    # a select (np.where costs more than a second exp).
    return np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def leaky_relu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x >= 0, x, alpha * x)


def elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def softsign(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.abs(x))


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(alpha * x + beta, 0, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    """math.erf per element (an object array)."""
    return np.frompyfunc(math.erf, 1, 1)(x)


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + np.tanh(inner))
    # NOTE: NumPy has no erf; math.erf per element is exact to double precision, and the result is
    # rounded once to the network's dtype.
    erf = _erf(x.astype(np.float64) / math.sqrt(2)).astype(np.float64).astype(x.dtype)
    return 0.5 * x * (1 + erf)


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus(x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _step(x: np.ndarray, low: float) -> np.ndarray:
    return np.where(x >= 0, 1, low).astype(x.dtype)


def hardlim(x: np.ndarray) -> np.ndarray:
    return _step(x, 0.0)


def hardlims(x: np.ndarray) -> np.ndarray:
    return _step(x, -1.0)


def satlin(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 1)


def satlins(x: np.ndarray) -> np.ndarray:
    return np.clip(x, -1, 1)


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def hard_swish(x: np.ndarray) -> np.ndarray:
    return x * (np.clip(x + 3, 0, 6) / 6)  # the clip divided first: x * 6 would overflow near the largest float


# --- derivatives, for the error bound and for training ----------------------------------------------


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    sig = sigmoid(x)
    return sig * (1 - sig)


def _dgelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        c = math.sqrt(2 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2)
    cdf = 0.5 * (1 + _erf(x / math.sqrt(2)).astype(np.float64))
    return cdf + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)


def _dmish(x: np.ndarray) -> np.ndarray:
    t = np.tanh(softplus(x))
    return t + x * (1 - t**2) * sigmoid(x)


def softmax_vjp(a: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """J^T g for a = softmax(n) along the last axis: J = diag(a) - a a^T (the Jacobian the error bound carries,
    nnspec.affine.activate), which is symmetric, so J^T g = a * (g - a.g), without forming J."""
    return a * (upstream - (upstream * a).sum(axis=-1, keepdims=True))


def log_softmax_vjp(a: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """J^T g for a = log_softmax(n) along the last axis: J = I - 1 s^T with s = softmax(n) = exp(a) (as in
    nnspec.affine.activate), so J^T g = g - s * sum(g)."""
    return upstream - np.exp(a) * upstream.sum(axis=-1, keepdims=True)


def _clip_model(low: float, high: float) -> ErrorModel:
    return _piecewise_linear(lambda n: ((n > low) & (n < high)).astype(np.float64), lambda: [(low, 1.0), (high, 1.0)])


_LINEAR = _piecewise_linear(lambda n: np.ones_like(n), lambda: [])
_RELU = _piecewise_linear(lambda n: (n > 0).astype(np.float64), lambda: [(0.0, 1.0)])


# --- shared lowerings --------------------------------------------------------------------------

# NOTE: in float64 networks the parametrized and log/exp-based activations are composed from
# primitives with float64 constants: ONNX stores float attributes as float32 (alpha=0.2 would become
# 0.2000000030), and onnxruntime's CPU provider has no float64 kernels for LeakyRelu, Elu, Selu,
# Softplus, Softsign, HardSigmoid, Mish or Erf.


def _wide(g: OpBuilder) -> bool:
    return g.dtype == np.float64


def _clip(g: OpBuilder, x: str, low: float, high: float, out: str | None = None) -> str:
    # NOTE: float64 clips are Max then Min: onnxruntime's Relu+Clip fusion fails to load a model
    # where a float64 Relu feeds a Clip ("Unexpected data type for Clip 'min' input of 11").
    if _wide(g):
        return g.op("Min", [g.op("Max", [x, g.const(low)]), g.const(high)], out)
    return g.op("Clip", [x, g.const(low), g.const(high)], out)


def _unary(op_type: str, **fixed: Any) -> Lowering:
    def lower(g: OpBuilder, x: str, out: str | None, **params: Any) -> str:
        return g.op(op_type, [x], out, **fixed, **params)

    return lower


def _native_or(op_type: str, composed: Lowering) -> Lowering:
    """The ONNX operator in float32 networks, the composition (exact constants) in float64 ones."""
    native = _unary(op_type)

    def lower(g: OpBuilder, x: str, out: str | None, **params: Any) -> str:
        return (composed if _wide(g) else native)(g, x, out, **params)

    return lower


# erf in float64, from primitives that onnxruntime's CPU provider runs in float64:
#   |x| < 1:  erf(x) = x + x * P_small(x^2)
#   |x| >= 1: erf(x) = sign(x) * (1 - exp(-z^2) * P_large(1 / (2 + z))),  z = min(|x|, 6)
# (erfc(6) = 2e-17 is below half an ulp of 1, so clamping at 6 changes nothing and keeps exp and the
# polynomial finite for any x.) Coefficients, lowest degree first, are from `fit_erf_coefficients()`
# below. Run in onnxruntime (its Exp is within 2 ulps) over 1.8 million points of [-7, 7] and tiny
# magnitudes, checked against mpmath: at most 1 ulp from the correctly rounded erf, 1.24 ulps from the
# exact value.
_ERF_SMALL = (
    0.12837916709551256,
    -0.3761263890318352,
    0.112837916709451,
    -0.026866170643295214,
    0.005223977607593506,
    -0.0008548325992439943,
    0.00012055295190596103,
    -1.4924738182126343e-05,
    1.6447394557278533e-06,
    -1.6207959642200486e-07,
    1.3716775893806688e-08,
    -7.788268018088953e-10,
)
_ERF_LARGE = (
    -3.3636766612738407e-06,
    0.5643863220252008,
    1.1231143734270628,
    2.0599683345255184,
    1.8884864813906428,
    9.921530861981834,
    -41.17894099922344,
    161.15604581254868,
    -510.0657286779493,
    992.5899712394794,
    -1149.5748712329305,
    745.0423451158426,
    -211.02759962880458,
)
_ERF_SMALL_BELOW = 1.0
_ERF_CLAMP = 6.0


def _polynomial(g: OpBuilder, u: str, coefficients: Sequence[float]) -> str:
    """sum(c_k u^k) by Horner's rule."""
    acc = g.const(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        acc = g.op("Add", [g.op("Mul", [acc, u]), g.const(c)])
    return acc


def erf_from_primitives(g: OpBuilder, x: str, out: str | None = None) -> str:
    """erf(x) from Max, Min, Abs, Mul, Add, Sub, Div, Neg, Exp, Sign, Less and Where (float64 kernels all)."""
    near = _clip(g, x, -_ERF_SMALL_BELOW, _ERF_SMALL_BELOW)
    small = g.op("Add", [near, g.op("Mul", [near, _polynomial(g, g.op("Mul", [near, near]), _ERF_SMALL)])])
    magnitude = g.op("Abs", [x])
    z = g.op("Min", [magnitude, g.const(_ERF_CLAMP)])
    u = g.op("Div", [g.const(1.0), g.op("Add", [z, g.const(2.0)])])
    erfc = g.op("Mul", [g.op("Exp", [g.op("Neg", [g.op("Mul", [z, z])])]), _polynomial(g, u, _ERF_LARGE)])
    large = g.op("Mul", [g.op("Sign", [x]), g.op("Sub", [g.const(1.0), erfc])])
    return g.op("Where", [g.op("Less", [magnitude, g.const(_ERF_SMALL_BELOW)]), small, large], out)


def _leaky_relu_onnx(g: OpBuilder, x: str, out: str | None, alpha: float) -> str:
    at_or_above = g.op("GreaterOrEqual", [x, g.const(0.0)])
    return g.op("Where", [at_or_above, x, g.op("Mul", [x, g.const(alpha)])], out)


# expm1 and log1p by Kahan's tricks: with u = exp(m) (or 1 + y) rounded, (u - 1) / log(u) is
# evaluated at that same rounded u, which cancels its rounding error. A plain Exp - 1 (Log of 1 + y)
# returns 0 for |m| below an ulp of 1, where the result is m (y), and so loses its sign.


def _expm1_nonpositive(g: OpBuilder, m: str) -> str:
    """exp(m) - 1 for m <= 0, within a few ulps."""
    m = g.op("Max", [m, g.const(-40.0)])  # expm1(-40) rounds to -1 already; keeps log(u) finite
    u = g.op("Exp", [m])
    kahan = g.op("Mul", [g.op("Sub", [u, g.const(1.0)]), g.op("Div", [m, g.op("Log", [u])])])
    return g.op("Where", [g.op("Equal", [u, g.const(1.0)]), m, kahan])


def _log1p_nonnegative(g: OpBuilder, y: str) -> str:
    """log(1 + y) for y >= 0, within a few ulps."""
    u = g.op("Add", [y, g.const(1.0)])
    kahan = g.op("Mul", [g.op("Log", [u]), g.op("Div", [y, g.op("Sub", [u, g.const(1.0)])])])
    return g.op("Where", [g.op("Equal", [u, g.const(1.0)]), y, kahan])


def _elu_onnx(g: OpBuilder, x: str, out: str | None, alpha: float, gamma: float | None = None) -> str:
    negative_part = _expm1_nonpositive(g, g.op("Min", [x, g.const(0.0)]))
    above = g.op("Greater", [x, g.const(0.0)])
    if gamma is None:
        return g.op("Where", [above, x, g.op("Mul", [negative_part, g.const(alpha)])], out)
    elu = g.op("Where", [above, x, g.op("Mul", [negative_part, g.const(alpha)])])
    return g.op("Mul", [elu, g.const(gamma)], out)


def _selu_onnx(g: OpBuilder, x: str, out: str | None, alpha: float, gamma: float) -> str:
    return _elu_onnx(g, x, out, alpha, gamma)


def _softplus_composed(g: OpBuilder, x: str, out: str | None = None) -> str:
    # max(x, 0) + log1p(exp(-|x|)), as the NumPy formula: never overflows, keeps tiny results.
    tail = _log1p_nonnegative(g, g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])]))
    return g.op("Add", [g.op("Relu", [x]), tail], out)


def _softsign_onnx(g: OpBuilder, x: str, out: str | None) -> str:
    return g.op("Div", [x, g.op("Add", [g.op("Abs", [x]), g.const(1.0)])], out)


def _hard_sigmoid_onnx(g: OpBuilder, x: str, out: str | None, alpha: float, beta: float) -> str:
    line = g.op("Add", [g.op("Mul", [x, g.const(alpha)]), g.const(beta)])
    return _clip(g, line, 0.0, 1.0, out)


def _gelu_onnx(g: OpBuilder, x: str, out: str | None, approximate: str) -> str:
    if g.opset >= 20 and not _wide(g):
        return g.op("Gelu", [x], out, approximate=approximate)
    if approximate == "tanh":
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715)])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2 / math.pi))])])
    elif _wide(g):
        t = erf_from_primitives(g, g.op("Div", [x, g.const(math.sqrt(2))]))  # as the NumPy formula divides
    else:
        t = g.op("Erf", [g.op("Mul", [x, g.const(1 / math.sqrt(2))])])
    half_x = g.op("Mul", [x, g.const(0.5)])
    return g.op("Mul", [half_x, g.op("Add", [t, g.const(1.0)])], out)


def _silu_onnx(g: OpBuilder, x: str, out: str | None) -> str:
    # NOTE: not ONNX's Swish (opset 24): onnxruntime (1.32 included) has no kernel for it.
    return g.op("Mul", [x, g.op("Sigmoid", [x])], out)


def _mish_onnx(g: OpBuilder, x: str, out: str | None) -> str:
    if g.opset >= 18 and not _wide(g):
        return g.op("Mish", [x], out)
    smooth = _softplus_composed(g, x) if _wide(g) else g.op("Softplus", [x])
    return g.op("Mul", [x, g.op("Tanh", [smooth])], out)


def _hard_swish_onnx(g: OpBuilder, x: str, out: str | None) -> str:
    # NOTE: HardSwish is opset 14, and onnxruntime runs it through HardSigmoid, which has no float64 kernel.
    if g.opset >= 14 and not _wide(g):
        return g.op("HardSwish", [x], out)
    relu6 = _clip(g, g.op("Add", [x, g.const(3.0)]), 0.0, 6.0)
    return g.op("Mul", [x, g.op("Div", [relu6, g.const(6.0)])], out)


def _step_onnx(low: float) -> Lowering:
    def lower(g: OpBuilder, x: str, out: str | None) -> str:
        at_or_above = g.op("GreaterOrEqual", [x, g.const(0.0)])
        return g.op("Where", [at_or_above, g.const(1.0), g.const(low)], out)

    return lower


def _clip_onnx(low: float, high: float) -> Lowering:
    def lower(g: OpBuilder, x: str, out: str | None) -> str:
        return _clip(g, x, low, high, out)

    return lower


# --- the registry ------------------------------------------------------------------------------

# Semantics follow the ONNX operator of the same meaning; aliases are the transfer-function names
# of the classic neural-network notation (purelin, logsig, tansig, poslin, ...).
for _entry in [
    ActivationType("linear", linear, _unary("Identity"), ("identity", "purelin"), doc="a = n", error=_LINEAR),
    ActivationType(
        "sigmoid",
        sigmoid,
        _unary("Sigmoid"),
        ("logsig",),
        doc="a = 1 / (1 + exp(-n))",
        error=ErrorModel(derivative=_dsigmoid, curvature=_const(0.1), floor=_const(1.0)),
    ),
    ActivationType(
        "tanh",
        np.tanh,
        _unary("Tanh"),
        ("tansig",),
        doc="a = tanh(n)",
        error=ErrorModel(derivative=lambda n: 1 - np.tanh(n) ** 2, curvature=_const(0.8), floor=_const(1.0)),
    ),
    ActivationType("relu", relu, _unary("Relu"), ("poslin",), doc="a = max(0, n)", error=_RELU),
    ActivationType(
        "leaky_relu",
        leaky_relu,
        _native_or("LeakyRelu", _leaky_relu_onnx),
        params={"alpha": 0.01},
        doc="a = n if n >= 0 else alpha * n",
        error=_piecewise_linear(
            lambda n, alpha: np.where(n >= 0, 1.0, alpha), lambda alpha: [(0.0, abs(1 - alpha))], ulps=1.0
        ),
    ),
    ActivationType(
        "elu",
        elu,
        _native_or("Elu", _elu_onnx),
        params={"alpha": 1.0},
        doc="a = n if n > 0 else alpha * (exp(n) - 1)",
        error=ErrorModel(
            derivative=lambda n, alpha: np.where(n > 0, 1.0, alpha * np.exp(np.minimum(n, 0))),
            kinks=lambda alpha: [(0.0, abs(1 - alpha))],
            curvature=lambda alpha: max(2.0, abs(alpha)),
            floor=lambda alpha: abs(alpha),
        ),
    ),
    ActivationType(
        "selu",
        selu,
        _native_or("Selu", _selu_onnx),
        # The self-normalizing constants of Klambauer et al. (2017), ONNX's defaults, to float32 precision.
        params={"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
        doc="a = gamma * (n if n > 0 else alpha * (exp(n) - 1))",
        error=ErrorModel(
            derivative=lambda n, alpha, gamma: gamma * np.where(n > 0, 1.0, alpha * np.exp(np.minimum(n, 0))),
            kinks=lambda alpha, gamma: [(0.0, abs(gamma * (1 - alpha)))],
            curvature=lambda alpha, gamma: max(2.0, abs(alpha * gamma)),
            floor=lambda alpha, gamma: abs(alpha * gamma),
            per_n=1.0,
        ),
    ),
    ActivationType(
        "softplus",
        softplus,
        _native_or("Softplus", _softplus_composed),
        doc="a = log(1 + exp(n))",
        error=ErrorModel(derivative=sigmoid, curvature=_const(0.25), floor=_const(1.0)),
    ),
    ActivationType(
        "softsign",
        softsign,
        _native_or("Softsign", _softsign_onnx),
        doc="a = n / (1 + |n|)",
        error=ErrorModel(derivative=lambda n: 1 / (1 + np.abs(n)) ** 2, curvature=_const(2.0), ulps=3.0),
    ),
    ActivationType(
        "hard_sigmoid",
        hard_sigmoid,
        _native_or("HardSigmoid", _hard_sigmoid_onnx),
        params={"alpha": 0.2, "beta": 0.5},
        doc="a = clip(alpha * n + beta, 0, 1)",
        error=ErrorModel(
            derivative=lambda n, alpha, beta: np.where((alpha * n + beta > 0) & (alpha * n + beta < 1), alpha, 0.0),
            kinks=lambda alpha, beta: [(-beta / alpha, abs(alpha)), ((1 - beta) / alpha, abs(alpha))] if alpha else [],
            curvature=_const(0.0),
            ulps=2.0,
            floor=lambda alpha, beta: abs(beta),
            per_n=1.0,
        ),
    ),
    ActivationType(
        "gelu",
        gelu,
        _gelu_onnx,
        params={"approximate": Choice(("none", "tanh"))},
        doc="a = n * Phi(n), Phi the standard normal CDF (or its tanh approximation)",
        # 1 + erf(n) cancels for n << 0, so an implementation's own error there is ~ u |n|
        error=ErrorModel(derivative=_dgelu, curvature=_const(1.0), per_n=1.0),
    ),
    ActivationType(
        "silu",
        silu,
        _silu_onnx,
        ("swish",),
        doc="a = n * sigmoid(n)",
        error=ErrorModel(derivative=lambda n: sigmoid(n) + n * _dsigmoid(n), curvature=_const(1.0), per_n=1.0),
    ),
    ActivationType(
        "mish",
        mish,
        _mish_onnx,
        doc="a = n * tanh(softplus(n))",
        error=ErrorModel(derivative=_dmish, curvature=_const(1.0), per_n=1.0),
    ),
    ActivationType(
        "softmax",
        softmax,
        _unary("Softmax", axis=-1),
        doc="a = exp(n) / sum(exp(n)), last axis",
        # Along a row perturbation v: d^2 a_i = a_i ((v_i - a.v)^2 - Var_a(v)), at most 4 a_i max|v|^2.
        error=ErrorModel(kind="softmax", curvature=_const(4.0)),
    ),
    ActivationType(
        "log_softmax",
        log_softmax,
        _unary("LogSoftmax", axis=-1),
        doc="a = n - log(sum(exp(n))), last axis",
        error=ErrorModel(kind="log_softmax", curvature=_const(2.0)),
    ),
    ActivationType(
        "hardlim",
        hardlim,
        _step_onnx(0.0),
        doc="a = 1 if n >= 0 else 0",
        error=ErrorModel(kind="step", jump=1.0, ulps=0.0),
    ),
    ActivationType(
        "hardlims",
        hardlims,
        _step_onnx(-1.0),
        doc="a = 1 if n >= 0 else -1",
        error=ErrorModel(kind="step", jump=2.0, ulps=0.0),
    ),
    ActivationType("satlin", satlin, _clip_onnx(0.0, 1.0), doc="a = clip(n, 0, 1)", error=_clip_model(0.0, 1.0)),
    ActivationType(
        "satlins",
        satlins,
        _clip_onnx(-1.0, 1.0),
        doc="a = clip(n, -1, 1)",
        error=_clip_model(-1.0, 1.0),
    ),
    ActivationType("relu6", relu6, _clip_onnx(0.0, 6.0), doc="a = clip(n, 0, 6)", error=_clip_model(0.0, 6.0)),
    ActivationType(
        "hard_swish",
        hard_swish,
        _hard_swish_onnx,
        doc="a = n * relu6(n + 3) / 6",
        # Composed (n + 3, clip, / 6, * n): n + 3 is off by u |n + 3| inside the clip, which costs
        # u |n| |n + 3| / 6 = u |a|; with the division and the product, 3 u |a|. ONNX's HardSwish is
        # n * clip(alpha n + 1/2, 0, 1) with alpha = 1/6 in float32: its error within (-3, 3) is
        # u (n^2 / 3 + 2 |a|) <= u (|n| + 2 |a|), which 2 u (|a| + |n|) covers, as it does 3 u |a|.
        error=ErrorModel(
            derivative=lambda n: np.where(n < -3, 0.0, np.where(n > 3, 1.0, (2 * n + 3) / 6)),
            kinks=lambda: [(-3.0, 0.5), (3.0, 0.5)],
            curvature=_const(1 / 3),
            ulps=2.0,
            per_n=1.0,
        ),
    ),
]:
    register(_entry)


# --- how the erf constants were computed ---------------------------------------------------------


def fit_erf_coefficients(points: int = 800) -> tuple[list[float], list[float]]:
    """Refit _ERF_SMALL and _ERF_LARGE (offline; about a second) against math.erf and math.erfc.

    Weighted least squares in a Chebyshev basis (numpy.polynomial.chebyshev) at Chebyshev points of
    [0, 1] and [1, 6], rounded to 24 bits so that their squares are exact. The residual of each round
    is computed exactly (fractions) and fitted again, so the double-precision solve does not limit
    the accuracy; the power-basis coefficients are converted exactly and rounded once.
    """
    from fractions import Fraction

    from numpy.polynomial import chebyshev

    def fit(u: np.ndarray, y: list[float], weight: np.ndarray, degree: int) -> list[float]:
        lo, hi = Fraction(float(u.min())), Fraction(float(u.max()))
        scale, shift = 2 / (hi - lo), -(lo + hi) / (hi - lo)  # the Chebyshev variable s = scale * u + shift
        basis = [[Fraction(1)], [shift, scale]]  # T_k(s) as power series in u, exactly
        while len(basis) <= degree:
            t1, t0 = [*basis[-1], 0], [*basis[-2], 0, 0]
            basis.append([2 * shift * t1[i] + 2 * scale * (t1[i - 1] if i else 0) - t0[i] for i in range(len(t1))])
        coef = [Fraction(0)] * (degree + 1)
        exact_u = [Fraction(v) for v in u.tolist()]
        for _ in range(3):
            residual = [
                float(yj - sum(c * uj**k for k, c in enumerate(coef))) for uj, yj in zip(exact_u, y, strict=True)
            ]
            step = chebyshev.Chebyshev.fit(u, residual, degree, domain=[float(lo), float(hi)], w=weight)
            for t, c in zip(basis, step.coef.tolist(), strict=True):
                for k, v in enumerate(t):
                    coef[k] += Fraction(c) * v
        return [float(c) for c in coef]

    def nodes(lo: float, hi: float) -> np.ndarray:
        k = np.arange(points)
        x = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / points)
        return np.unique(np.round(x * 2.0**24) / 2.0**24)

    x = nodes(0.0, _ERF_SMALL_BELOW)
    x = x[x > 0]
    small = fit(x * x, [math.erf(v) / v - 1 for v in x.tolist()], np.ones_like(x), len(_ERF_SMALL) - 1)
    z = nodes(_ERF_SMALL_BELOW, _ERF_CLAMP)
    # An error in P_large costs exp(-z^2) / erf(z) in erf; the floor keeps the solve well-conditioned
    # where erfc is far below an ulp of erf.
    weight = np.maximum(np.exp(-z * z), 1e-6) / np.array([math.erf(v) for v in z.tolist()])
    erfcx = [math.exp(v * v) * math.erfc(v) for v in z.tolist()]
    large = fit(1 / (2 + z), erfcx, weight, len(_ERF_LARGE) - 1)
    return small, large
