"""Every activation: its NumPy formula against the math module, both backends against each other, the
composed float64 erf against math.erf, and the registry against the JSON schema."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

import nnspec
from nnspec import activations
from nnspec.activations import REGISTRY, Activation
from nnspec.layers import LAYERS
from nnspec.onnxio.export import Builder
from nnspec.runners import onnxruntime_max_opset

OPSETS = sorted({13, 17, 18, 20, onnxruntime_max_opset()})
DTYPES = ["float32", "float64"]

# Negative, zero (both signs: the step point of hardlim/hardlims), positive, tiny and large magnitudes.
POINTS = [
    -1e4, -100.0, -50.0, -20.0, -5.0, -2.5, -1.0, -0.3, -1e-3, -1e-30, -0.0,
    0.0, 1e-30, 1e-3, 0.3, 1.0, 2.5, 5.0, 20.0, 50.0, 100.0, 1e4,
]  # fmt: skip

# Non-default parameters, checked on top of every activation at its defaults.
PARAMETRIZED = [
    {"name": "leaky_relu", "alpha": 0.1},
    {"name": "elu", "alpha": 0.5},
    {"name": "selu", "alpha": 1.5, "gamma": 1.25},
    {"name": "hard_sigmoid", "alpha": 0.3, "beta": 0.4},
    {"name": "gelu", "approximate": "tanh"},
]


def bound(name_or_object: str | dict[str, Any]) -> Activation:
    """An activation with its parameters, built from the registry (not through the spec layer)."""
    given = {"name": name_or_object} if isinstance(name_or_object, str) else dict(name_or_object)
    entry = activations.lookup(given.pop("name"))
    assert entry is not None
    return Activation(entry, {**entry.defaults(), **given})


def label(activation: str | dict[str, Any]) -> str:
    if isinstance(activation, str):
        return activation
    return "-".join(f"{v}" if k == "name" else f"{k}={v}" for k, v in activation.items())


ALL_ACTIVATIONS = [*REGISTRY, *PARAMETRIZED]


# --- reference values, one element at a time with the math module ----------------------------


def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1 / (1 + math.exp(-v))
    e = math.exp(v)
    return e / (1 + e)


def _softplus(v: float) -> float:
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def _gelu(v: float, approximate: str) -> float:
    if approximate == "tanh":
        # 0.5 (1 + tanh(u)) = sigmoid(2u)
        return v * _sigmoid(2 * math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))
    return 0.5 * v * math.erfc(-v / math.sqrt(2))


def _elu(v: float, alpha: float) -> float:
    return v if v > 0 else alpha * math.expm1(v)


ELEMENTWISE: dict[str, Callable[..., float]] = {
    "linear": lambda v: v,
    "sigmoid": _sigmoid,
    "tanh": math.tanh,
    "relu": lambda v: max(v, 0.0),
    "leaky_relu": lambda v, alpha: v if v >= 0 else alpha * v,
    "elu": _elu,
    "selu": lambda v, alpha, gamma: gamma * _elu(v, alpha),
    "softplus": _softplus,
    "softsign": lambda v: v / (1 + abs(v)),
    "hard_sigmoid": lambda v, alpha, beta: min(1.0, max(0.0, alpha * v + beta)),
    "gelu": _gelu,
    "silu": lambda v: v * _sigmoid(v),
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "hardlim": lambda v: 1.0 if v >= 0 else 0.0,
    "hardlims": lambda v: 1.0 if v >= 0 else -1.0,
    "satlin": lambda v: min(max(v, 0.0), 1.0),
    "satlins": lambda v: min(max(v, -1.0), 1.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "hard_swish": lambda v: v * min(max(v + 3, 0.0), 6.0) / 6,
}


def _softmax_row(row: list[float]) -> list[float]:
    top = max(row)
    e = [math.exp(v - top) for v in row]
    total = math.fsum(e)
    return [x / total for x in e]


def _log_softmax_row(row: list[float]) -> list[float]:
    top = max(row)
    log_total = math.log(math.fsum(math.exp(v - top) for v in row))
    return [(v - top) - log_total for v in row]


ROWWISE: dict[str, Callable[[list[float]], list[float]]] = {"softmax": _softmax_row, "log_softmax": _log_softmax_row}


def reference(act: Activation, x: np.ndarray) -> np.ndarray:
    """Reference values in float64 for a 2-D array (rows are the last axis)."""
    rows = x.astype(np.float64).tolist()
    if act.name in ROWWISE:
        return np.array([ROWWISE[act.name](row) for row in rows])
    f = ELEMENTWISE[act.name]
    return np.array([[f(v, **act.params) for v in row] for row in rows])


def error_scale(act: Activation, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """What the formula's rounding error is proportional to.

    Most formulas are accurate relative to their result. Where the definition itself subtracts
    quantities of the input's size, a correct formula is only accurate relative to those: gelu
    (ONNX's 0.5 x (1 + erf(x / sqrt 2)) cancels for x < 0), hard_sigmoid (alpha x + beta cancels near
    its zero), log_softmax (x - max - log sum). softmax rounds x - max before exp, which multiplies that
    rounding by |x - max|.
    """
    x = x.astype(np.float64)
    shifted = np.abs(x - x.max(axis=-1, keepdims=True))
    if act.name == "gelu":
        return np.abs(ref) + np.abs(x)
    if act.name == "hard_sigmoid":
        return np.abs(ref) + np.abs(act.params["alpha"] * x) + abs(act.params["beta"])
    if act.name == "log_softmax":
        return np.abs(ref) + shifted
    if act.name == "softmax":
        return np.abs(ref) * (1 + shifted)
    return np.abs(ref)


# A formula is a handful of roundings (each within 1/2 ulp) around library functions (exp, log1p,
# tanh, expm1: about 1 ulp); measured worst: 1.6 eps (mish, softplus in float32).
FORMULA_ULPS = 4


def points(dtype: str) -> np.ndarray:
    return np.array(POINTS, dtype=dtype).reshape(2, -1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS, ids=label)
def test_formula_matches_math_module(activation: str | dict[str, Any], dtype: str) -> None:
    act = bound(activation)
    x = points(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no inf or NaN on the way to a finite result
        got = act(x)
    assert got.dtype == x.dtype and got.shape == x.shape
    ref = reference(act, x)
    finfo = np.finfo(dtype)
    # Values below the smallest normal number have absolute, not relative, precision, and x * f(x)
    # (silu, mish, gelu) multiplies a subnormal f(x) by |x|.
    subnormal = float(finfo.smallest_subnormal) * np.maximum(1, np.abs(x.astype(np.float64)))
    allowed = FORMULA_ULPS * (float(finfo.eps) * error_scale(act, x, ref) + subnormal)
    error = np.abs(got.astype(np.float64) - ref)
    worst = int(np.argmax(error - allowed))
    assert (error <= allowed).all(), (
        f"{label(activation)}({x.flat[worst]!r}) = {got.flat[worst]!r}, expected {ref.flat[worst]!r}"
    )


@pytest.mark.parametrize("name", ["hardlim", "hardlims"])
def test_step_is_on_at_zero(name: str) -> None:
    x = np.array([[-1e-300, -0.0, 0.0, 1e-300]])
    low = {"hardlim": 0.0, "hardlims": -1.0}[name]
    assert bound(name)(x).tolist() == [[low, 1.0, 1.0, 1.0]]


# The transfer-function names of the classic notation, as the issue lists them.
EXPECTED_ALIASES = {
    "identity": "linear",
    "purelin": "linear",
    "logsig": "sigmoid",
    "tansig": "tanh",
    "poslin": "relu",
    "swish": "silu",
}
REQUIRED = {
    "linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus", "softsign", "hard_sigmoid",
    "gelu", "silu", "mish", "softmax", "log_softmax", "hardlim", "hardlims", "satlin", "satlins",
}  # fmt: skip


def test_registry_has_the_required_activations() -> None:
    assert REQUIRED <= set(REGISTRY), f"missing: {sorted(REQUIRED - set(REGISTRY))}"
    assert set(REGISTRY) <= set(ELEMENTWISE) | set(ROWWISE), "every activation needs a reference formula here"


@pytest.mark.parametrize("alias", sorted(EXPECTED_ALIASES))
def test_alias_resolves_to_its_canonical_entry(alias: str) -> None:
    canonical = EXPECTED_ALIASES[alias]
    assert activations.lookup(alias) is REGISTRY[canonical]
    assert alias in REGISTRY[canonical].aliases
    spec = nnspec.from_dict(_activation_spec(alias, "float64"))
    assert nnspec.graph(spec).nodes[0].activation.type is REGISTRY[canonical]


def test_every_alias_names_an_entry_that_lists_it() -> None:
    for alias, canonical in activations.ALIASES.items():
        entry = REGISTRY[canonical]
        assert alias == entry.name or alias in entry.aliases


def test_registration_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="logsig"):
        activations.register(activations.ActivationType("logsig", np.tanh, lambda g, x, out: x))
    assert activations.lookup("logsig") is REGISTRY["sigmoid"]


# --- both backends ----------------------------------------------------------------------------

WIDTH = 8


def _activation_spec(activation: str | dict[str, Any], dtype: str) -> dict[str, Any]:
    return {
        "format": "nnspec/1",
        "name": "act",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [WIDTH]}],
        "layers": [{"type": "activation", "name": "f", "activation": activation}],
    }


def _extremes(dtype: str) -> np.ndarray:
    """POINTS plus a dense sweep of [-12, 12], in rows of WIDTH (softmax sees mixed magnitudes)."""
    values = np.concatenate([POINTS, np.linspace(-12, 12, 38 * WIDTH - len(POINTS) + 2 * WIDTH)])
    return values.astype(dtype).reshape(-1, WIDTH)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ALL_ACTIVATIONS, ids=label)
def test_backends_agree(activation: str | dict[str, Any], dtype: str, opset: int) -> None:
    spec = nnspec.from_dict(_activation_spec(activation, dtype))
    for report in (nnspec.check(spec, opset=opset), nnspec.check(spec, opset=opset, inputs={"x": _extremes(dtype)})):
        assert report.passed, (report.problems, [(o.name, o.worst_margin, o.worst_at) for o in report.outputs])


# --- the composed float64 erf -------------------------------------------------------------------


def _session(lower: Callable[..., str], opset: int = 17) -> onnxruntime.InferenceSession:
    """y = f(x) in float64, from one lowering alone."""
    g = Builder(opset, np.dtype(np.float64))
    g.reserve("x")
    g.scope = "f"
    g.nodes.append(helper.make_node("Identity", [lower(g, "x")], ["y"]))
    assert {n.op_type for n in g.nodes}.isdisjoint({"Erf", "Gelu", "Elu", "Softplus"})
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        helper.make_graph(g.nodes, "f", [x], [y], initializer=g.initializers),
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    onnx.checker.check_model(model, full_check=True)
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _ulps(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.abs(got - expected) / np.spacing(np.abs(expected))


def _erf_grid() -> Iterator[np.ndarray]:
    yield np.linspace(-7, 7, 140_001)  # both pieces, the switch at |x| = 1 and the clamp at 6
    yield np.linspace(0.99, 1.01, 2001) * np.array([[-1], [1]])
    yield np.geomspace(1e-300, 1, 3001) * np.array([[-1], [1]])
    yield np.array(
        [0.0, 5e-324, 2.2250738585072014e-308, 1e-310, 1e-300, 5.0, 6.0, 30.0, 1e300, 1.7976931348623157e308]
    )


# math.erf (the C library's) is within 1 ulp of erf; the composition, measured offline against mpmath
# on the same grid, within 1.25 ulp. Two ulps apart at most; measured: 1.
ERF_ULPS = 2


@pytest.mark.parametrize("opset", [13, OPSETS[-1]])
def test_composed_erf_is_within_two_ulps_everywhere(opset: int) -> None:
    x = np.concatenate([np.ravel(part) for part in _erf_grid()])
    x = np.concatenate([x, -x])
    got = _session(activations.erf_from_primitives, opset).run(None, {"x": x})[0]
    expected = np.array([math.erf(v) for v in x.tolist()])
    ulps = _ulps(got, expected)
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= ERF_ULPS, f"erf({x[worst]!r}) = {got[worst]!r}, math.erf gives {expected[worst]!r}"


def test_composed_erf_at_special_values() -> None:
    x = np.array([np.inf, -np.inf, np.nan, 6.0, -6.0, 30.0, -30.0, 1e300, -1e300])
    got = _session(activations.erf_from_primitives).run(None, {"x": x})[0]
    assert got[:2].tolist() == [1.0, -1.0]
    assert np.isnan(got[2])
    assert got[3:].tolist() == [1.0, -1.0] * 3


# Kahan's expm1 and log1p are within an ulp or two given exp and log within an ulp or two
# (onnxruntime's float64 Exp: 2 ulps, Log: 1). Measured: expm1 3 ulps, log1p 2.
KAHAN_ULPS = 4


def test_composed_expm1_keeps_small_results_and_their_sign() -> None:
    m = -np.concatenate([np.linspace(0, 50, 50_001), np.geomspace(1e-300, 1, 20_001), [5e-324, 1e-310, 1e300]])
    got = _session(activations._expm1_nonpositive).run(None, {"x": m})[0]
    expected = np.array([math.expm1(v) for v in m.tolist()])
    assert _ulps(got[m != 0], expected[m != 0]).max() <= KAHAN_ULPS
    assert got[m == 0].tolist() == [0.0]
    assert (got[m < 0] < 0).all()


def test_composed_log1p_keeps_small_results() -> None:
    y = np.concatenate([np.linspace(0, 1, 50_001), np.geomspace(1e-300, 1, 20_001), [5e-324, 1e-310]])
    got = _session(activations._log1p_nonnegative).run(None, {"x": y})[0]
    expected = np.array([math.log1p(v) for v in y.tolist()])
    assert _ulps(got[y != 0], expected[y != 0]).max() <= KAHAN_ULPS
    assert (got[y > 0] > 0).all()


def test_erf_coefficients_come_from_the_documented_fit() -> None:
    small, large = activations.fit_erf_coefficients()

    # The fit reruns to the same function: erf from the refit constants is within one ulp of erf from the
    # stored ones everywhere. (Not coefficient by coefficient: the power basis is ill-conditioned, so
    # another NumPy or LAPACK moves the high-order coefficients by up to 5e-4 relative while the function
    # they make moves by less than an ulp.)
    def polynomial(coefficients: object, u: np.ndarray) -> np.ndarray:
        return np.polynomial.polynomial.polyval(u, np.asarray(coefficients))

    x = np.linspace(1e-6, activations._ERF_SMALL_BELOW, 20_001)
    moved = np.abs(x * (polynomial(small, x * x) - polynomial(activations._ERF_SMALL, x * x)))
    assert (moved / np.spacing(np.array([math.erf(v) for v in x.tolist()]))).max() <= 1
    z = np.linspace(activations._ERF_SMALL_BELOW, activations._ERF_CLAMP, 20_001)
    u = 1 / (2 + z)  # erfc(z) = exp(-z^2) P_large(u), as in the composed erf
    moved = np.exp(-z * z) * np.abs(polynomial(large, u) - polynomial(activations._ERF_LARGE, u))
    assert (moved / np.spacing(np.array([math.erf(v) for v in z.tolist()]))).max() <= 1


@pytest.mark.parametrize("opset", OPSETS)
def test_float64_gelu_composes_erf_and_float32_keeps_the_operator(opset: int) -> None:
    def op_types(dtype: str) -> set[str]:
        spec = nnspec.from_dict(_activation_spec("gelu", dtype))
        return {n.op_type for n in nnspec.to_onnx(spec, opset=opset).graph.node}

    assert {"Erf", "Gelu"}.isdisjoint(op_types("float64"))
    assert ("Gelu" if opset >= 20 else "Erf") in op_types("float32")


@pytest.mark.parametrize("opset", OPSETS)
def test_float64_gelu_agrees_over_a_wide_range(opset: int) -> None:
    spec = nnspec.from_dict(_activation_spec("gelu", "float64"))
    x = np.concatenate([np.linspace(-40, 40, 4000), [-1e300, -1e10, 1e10, 1e300, 5e-324, -5e-324]])
    report = nnspec.check(
        spec, opset=opset, inputs={"x": np.resize(x, (len(x) // WIDTH + 1) * WIDTH).reshape(-1, WIDTH)}
    )
    assert report.passed, report.outputs


# --- the registry and the JSON schema ---------------------------------------------------------


def test_schema_and_registries_agree() -> None:
    schema = nnspec.Spec.model_json_schema()
    layer_union = schema["properties"]["layers"]["items"]
    assert set(layer_union["discriminator"]["mapping"]) == set(LAYERS)
    tags = {
        d["properties"]["type"]["const"] for name, d in schema["$defs"].items() if "type" in d.get("properties", {})
    }
    assert tags == set(LAYERS)

    fields = [
        d["properties"]["activation"] for d in schema["$defs"].values() if "activation" in d.get("properties", {})
    ]
    assert fields, "no layer in the schema takes an activation"
    for field in fields:
        by_name, objects = field["anyOf"][0], field["anyOf"][1:]
        assert set(by_name["enum"]) == set(activations.ALIASES)
        seen = {}
        for obj in objects:
            names = obj["properties"]["name"]["enum"]
            entry = REGISTRY[names[0]]
            assert names == [entry.name, *entry.aliases]
            params = {k: v for k, v in obj["properties"].items() if k != "name"}
            assert set(params) == set(entry.params), entry.name
            for key, default in entry.defaults().items():
                assert params[key]["default"] == default, (entry.name, key)
            seen[entry.name] = names
        assert set(seen) == set(REGISTRY)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clipping", ["satlin", "satlins", "hard_sigmoid"])
def test_a_clip_after_relu_loads_in_onnxruntime(clipping: str, dtype: str) -> None:
    # onnxruntime fuses Relu -> Clip and its fusion fails on float64 Clip; float64 clips avoid Clip.
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "relu_then_clip",
            "dtype": dtype,
            "inputs": [{"name": "x", "shape": [3]}],
            "layers": [
                {"type": "dense", "units": 4, "activation": "relu", "weights": {"init": "normal", "seed": 1, "std": 2}},
                {"type": "activation", "activation": clipping},
            ],
        }
    )
    for opset in OPSETS:
        assert nnspec.check(spec, opset=opset).passed


@pytest.mark.parametrize(
    ("activation", "scale", "then"),
    [("elu", 1e-20, 1.0), ("selu", 1e-20, 1.0), ("softplus", 100.0, -1.0), ("mish", 100.0, 1.0)],
)
def test_float64_tiny_results_keep_their_sign_through_a_step(activation: str, scale: float, then: float) -> None:
    # elu(-1e-20) is -1e-20, not 0; softplus(-300) is 5e-131, not 0: a step downstream tells them apart.
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "sign",
            "dtype": "float64",
            "inputs": [{"name": "x", "shape": [1]}],
            "layers": [
                {"type": "dense", "units": 1, "activation": activation, "weights": [[scale]]},
                {"type": "dense", "units": 1, "activation": "hardlim", "weights": [[then]]},
            ],
        }
    )
    x = np.linspace(-3, 3, 61).reshape(-1, 1)
    for opset in OPSETS:
        assert nnspec.check(spec, opset=opset, inputs={"x": x}).passed
