"""The derived error bound, pinned to known values: on small layers, the bound nnspec derives equals the
Higham bound written out here by hand, and a fault calibrated against that bound is caught just above the
tolerance and let through just below it.

Each expected value is the documented model (nnspec.affine), evaluated here in float64 in a different order
of summation. The two agree to a few float64 ulps (about 1e-16 relative); RTOL = 1e-12 leaves room for that
and nothing else: a factor in gamma, k off by one, or the (1 - k u) denominator in float32 (k u ~ 2e-7)
each move the bound by far more.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import nnspec
from nnspec.activations import Precision
from nnspec.bounds import propagate
from nnspec.harness import compare

RTOL = 1e-12

# The unit roundoff and the smallest subnormal of each dtype.
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
SMALLEST_SUBNORMAL = {"float32": 2.0**-149, "float64": 2.0**-1074}

# Three units over three inputs: the third has no bias, so where its input is 0 nothing is rounded at all.
W = [[0.5, -1.25, 2.0], [3.0, 0.0, -0.75], [1.0, 0.0, 0.0]]
B = [0.25, -3.5, 0.0]


def dense(dtype: str, activation: str = "linear") -> nnspec.Spec:
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "one_dense",
            "dtype": dtype,
            "inputs": [{"name": "x", "shape": [3]}],
            "layers": [{"type": "dense", "name": "y", "units": 3, "activation": activation, "weights": W, "bias": B}],
        }
    )


def rows(dtype: str) -> np.ndarray:
    """An ordinary row, a zero row (only the bias), and a row of subnormals, where the underflow term dominates."""
    small = 64 * SMALLEST_SUBNORMAL[dtype]
    return np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [small, 0.0, 0.0]])


def gamma(k: int, u: float) -> float:
    return k * u / (1 - k * u)


def higham(weights: Any, bias: Any, x: np.ndarray, dtype: str) -> np.ndarray:
    """|W p + b - fl(W p + b)| <= gamma_k (|W| |p| + |b|) for a sum of k terms, plus the smallest subnormal per
    term for underflow wherever something is summed (Higham, Accuracy and Stability, 3.1); one row per row of x."""
    u, tiny = UNIT_ROUNDOFF[dtype], SMALLEST_SUBNORMAL[dtype]
    k = len(weights[0]) + (bias is not None)
    out = np.zeros((len(x), len(weights)))
    for r, p in enumerate(x.tolist()):
        for i, w in enumerate(weights):
            magnitude = math.fsum(abs(w_j * p_j) for w_j, p_j in zip(w, p, strict=True)) + abs(bias[i] if bias else 0)
            out[r, i] = gamma(k, u) * magnitude + (k * tiny if magnitude > 0 else 0.0)
    return out


def derived(spec: nnspec.Spec, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 value and the derived bound of the last layer, for inputs `x`."""
    graph = nnspec.graph(spec)
    trace = propagate(graph, {"x": x}, Precision.of(graph.dtype))
    last = graph.nodes[-1].name
    return trace.values[last], trace.errors[last]


def pre_activation(x: np.ndarray) -> np.ndarray:
    """n = W p + b for each row p of x."""
    return x @ np.transpose(W) + np.asarray(B)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_dense_layer_is_bounded_by_the_higham_bound(dtype: str) -> None:
    x = rows(dtype)
    _, bound = derived(dense(dtype), x)
    expected = higham(W, B, x, dtype)
    # unit 2 sums nothing on the zero row (no bound at all) and only subnormals on the last (the underflow term)
    assert expected[1, 2] == 0 and expected[2, 2] == pytest.approx(4 * SMALLEST_SUBNORMAL[dtype], rel=1e-4)
    np.testing.assert_allclose(bound, expected, rtol=RTOL, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relu_passes_the_bound_through_where_positive_and_zeroes_it_where_negative(dtype: str) -> None:
    """relu is exact (no ulps of its own) with slope 1 or 0; these rows keep n further from the kink than its bound."""
    x = rows(dtype)
    n = pre_activation(x)
    e_n = higham(W, B, x, dtype)
    assert ((np.abs(n) > e_n) | ((n == 0) & (e_n == 0))).all() and (n < 0).any()
    _, bound = derived(dense(dtype, "relu"), x)
    np.testing.assert_allclose(bound, np.where(n > 0, e_n, 0.0), rtol=RTOL, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tanh_scales_the_bound_by_its_slope_and_adds_its_own_error(dtype: str) -> None:
    """a = tanh(n): the carried error |tanh'(n)| e_n, tanh's own 8 ulps (relative, with a floor of 1),
    and the second-order remainder |tanh''|/2 e_n^2 with |tanh''| <= 0.8."""
    x = rows(dtype)
    n = pre_activation(x)
    e_n = higham(W, B, x, dtype)
    u, tiny = UNIT_ROUNDOFF[dtype], SMALLEST_SUBNORMAL[dtype]
    a = np.tanh(n)
    expected = (1 - a**2) * e_n + 8 * (u * (np.abs(a) + 1) + tiny) + 0.8 / 2 * e_n**2
    _, bound = derived(dense(dtype, "tanh"), x)
    np.testing.assert_allclose(bound, expected, rtol=RTOL, atol=0)


def test_an_error_that_cancels_in_the_network_cancels_in_the_bound() -> None:
    """y = h0 - h1 with h0 = h1 = a: a's rounding reaches y twice with opposite signs and is not counted.
    (An interval bound, |W| at every layer, would add 2 e_a.)"""
    layer = {"type": "dense", "activation": "linear"}
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "cancel",
            "inputs": [{"name": "x", "shape": [1]}],
            "layers": [
                {**layer, "name": "a", "units": 1, "weights": [[3.0]]},
                {**layer, "name": "h", "units": 2, "weights": [[1.0], [1.0]]},
                {**layer, "name": "y", "units": 1, "weights": [[1.0, -1.0]]},
            ],
        }
    )
    x = np.array([[1.5]])
    a = 3.0 * x
    e_a = higham([[3.0]], None, x, "float32")
    # each layer's own rounding is relative to the magnitudes it sums: its inputs' values plus their bounds
    own_h = higham([[1.0], [1.0]], None, np.abs(a) + e_a, "float32")
    e_h = own_h + e_a
    own_y = higham([[1.0, 1.0]], None, np.abs(a) + e_h, "float32")  # h0 = h1 = a
    value, bound = derived(spec, x)
    assert value.tolist() == [[0.0]]
    np.testing.assert_allclose(bound, own_h.sum(axis=1, keepdims=True) + own_y, rtol=RTOL, atol=0)


# --- a fault calibrated against the bound --------------------------------------------------------------

# One float32 unit whose sum cancels exactly: W x + b = 2 - 3 - 1 + 2 = 0 with |W| |x| + |b| = 8. Every
# partial sum is exact in float32 on both sides, so a model that adds c to the output is off by exactly c.
CANCELLING: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "cancelling",
    "inputs": [{"name": "x", "shape": [3]}],
    "layers": [{"type": "dense", "name": "y", "units": 1, "weights": [[1.0, -2.0, 0.5]], "bias": [2.0]}],
}
X = np.array([[2.0, 1.5, -2.0]], np.float32)


def with_output_shifted(model: onnx.ModelProto, shift: np.float32) -> onnx.ModelProto:
    """The model with `shift` added to its (single) output by one more node."""
    out = model.graph.output[0].name
    last = next(node for node in model.graph.node if out in node.output)
    last.output[list(last.output).index(out)] = f"{out}/unshifted"
    model.graph.initializer.append(numpy_helper.from_array(np.array([shift], np.float32), "shift"))
    model.graph.node.append(helper.make_node("Add", [f"{out}/unshifted", "shift"], [out]))
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(("share", "caught"), [(1.5, True), (0.75, False)])
def test_a_fault_is_caught_just_above_the_tolerance_and_not_below(share: float, caught: bool) -> None:
    """Outputs may differ by both sides' bounds, 2 (gamma_4 8 + 4 tiny): moved by 1.5 times that, the output fails;
    by 0.75 times, it passes. A bound twice too loose would let the first through, half as tight fail the second."""
    spec = nnspec.from_dict(CANCELLING)
    tolerance = 2 * higham([[1.0, -2.0, 0.5]], [2.0], X.astype(np.float64), "float32")[0, 0]
    shift = np.float32(share * tolerance)
    report = nnspec.check(spec, onnx_model=with_output_shifted(nnspec.to_onnx(spec), shift), inputs={"x": X})
    (out,) = report.outputs
    assert report.cases == ["given inputs"] and report.steps == []
    assert out.max_abs_error == float(shift)  # the fault, exactly: nothing else was rounded
    assert out.worst_margin == pytest.approx(share, rel=1e-6)  # shift is share * tolerance rounded to float32
    assert out.passed is not caught
    # The shift is a bias other than the spec's: the parameter test sees it either way, over its own rows.
    (parameters,) = report.weights
    assert parameters.worst is not None and parameters.worst.param == "bias" and not report.passed


# Found by the fuzzer: weights near float32's largest number. The products and partial sums overflow, to inf
# or to NaN (inf - inf), in any correct float32 implementation, while the float64 step holds a finite value.
OVERFLOWING = [
    {
        "type": "dense",
        "name": "d",
        "units": 2,
        "weights": {"init": "constant", "value": 3.4e38},
    },
    {
        "type": "conv1d",
        "name": "d",
        "filters": 1,
        "kernel_size": 3,
        "weights": {"init": "constant", "value": 3.4e38},
    },
]


@pytest.mark.parametrize("layer", OVERFLOWING, ids=lambda layer: layer["type"])
def test_sums_that_overflow_are_unbounded_and_said_not_false_alarms(layer):
    first = (
        {"type": "dense", "name": "a", "units": 3, "weights": {"init": "glorot_uniform", "seed": 1}}
        if layer["type"] == "dense"
        else {"type": "conv1d", "name": "a", "filters": 1, "kernel_size": 1, "weights": [[[1.0]]]}
    )
    spec = {
        "format": "nnspec/1",
        "name": "overflow",
        "inputs": [{"name": "x", "shape": [3] if layer["type"] == "dense" else [1, 3]}],
        "layers": [first, layer],
    }
    report = nnspec.check(nnspec.from_dict(spec))
    assert report.passed, str(report)
    assert report.outputs[0].unbounded > 0
    assert any("no finite bound" in note and "leave the dtype's range" in note for note in report.notes)


def test_an_overflow_to_infinity_of_the_right_sign_matches_a_reference_beyond_the_range():
    big = np.float32(3.0e38)
    ref = np.array([[2 * float(big), -2 * float(big), 2 * float(big)]])  # exact values beyond float32's range
    cand = np.array([[np.inf, -np.inf, -np.inf]], dtype=np.float32)  # the last has the wrong sign
    result = compare("y", [3], [("b", ref, cand, np.full((1, 3), 1e30))], np.dtype(np.float32))
    assert result.mismatches == 1 and result.worst_at == {"case": "b", "index": [0, 2]}


def test_an_infinite_error_through_a_flat_activation_stays_unbounded_not_nan():
    # Found by the fault measurement: a layer norm over one feature has no finite bound; satlins' slope is 0
    # beyond its clip, and 0 x inf was NaN, which passed without being counted as unbounded.
    spec = {
        "format": "nnspec/1",
        "name": "flat",
        "inputs": [{"name": "x", "shape": [3, 1]}],
        "layers": [
            {"type": "layer_norm", "name": "ln", "epsilon": 1e-08, "offset": [5.0]},
            {"type": "activation", "name": "clip", "activation": "satlins"},
        ],
    }
    report = nnspec.check(nnspec.from_dict(spec))
    assert report.passed
    assert report.outputs[0].unbounded > 0 and not math.isnan(report.outputs[0].worst_margin)
