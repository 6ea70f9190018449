"""batch_norm and layer_norm: shape rules, errors, the kernels against independent computations, the derived
bounds (pinned values, never below what float32 arithmetic does, onnxruntime's Conv+BatchNormalization fusion),
and faults that must be caught."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nnspec
from nnspec.activations import Precision
from nnspec.affine import Affine, exact, linear
from nnspec.bounds import propagate
from nnspec.errors import SpecError
from nnspec.inputs import random_cases
from nnspec.layers import LAYERS
from nnspec.layers.norm import _layer_norm_error, _mean_last_axis, batch_norm_bound, gamma
from nnspec.onnxio.export import Builder, to_bytes

F32, F64 = Precision.of(np.float32), Precision.of(np.float64)


def spec(layers: list[dict[str, Any]], shape: list[int], dtype: str = "float32") -> nnspec.Spec:
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "norm",
            "dtype": dtype,
            "inputs": [{"name": "x", "shape": shape}],
            "layers": layers,
        }
    )


def bn(**fields: Any) -> dict[str, Any]:
    return {"type": "batch_norm", "name": "bn", "mean": [0.5, -1.0, 2.0], "variance": [1.0, 0.25, 4.0], **fields}


def error_of(layers: list[dict[str, Any]], shape: list[int]) -> str:
    with pytest.raises(SpecError) as info:
        nnspec.graph(spec(layers, shape))
    return str(info.value)


# --- shapes and errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [[3], [3, 5], [3, 2, 4]])
def test_batch_norm_keeps_the_shape_and_takes_one_parameter_per_channel_of_axis_1(shape):
    graph = nnspec.graph(spec([bn(scale=[1.0, 2.0, 3.0], offset={"init": "zeros"})], shape))
    (node,) = graph.nodes
    assert node.shape == tuple(shape)
    assert {k: v.shape for k, v in node.params.items()} == dict.fromkeys(["mean", "variance", "scale", "offset"], (3,))
    assert node.attrs == {"epsilon": 1e-5}
    assert LAYERS["batch_norm"].formula(node) == "batchnorm(x)"


def test_layer_norm_keeps_the_shape_and_takes_one_parameter_per_feature_of_the_last_axis():
    graph = nnspec.graph(spec([{"type": "layer_norm", "name": "ln", "scale": {"init": "ones"}}], [2, 7]))
    (node,) = graph.nodes
    assert node.shape == (2, 7) and node.params["scale"].shape == (7,) and "offset" not in node.params
    assert LAYERS["layer_norm"].formula(node) == "layernorm(x)"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variance": [1.0, -0.5, 2.0]}, "layers[0].variance: expected variances >= 0, found -0.5 at index [1]"),
        (
            {"variance": [1.0, 0.0, 2.0], "epsilon": 0},
            "layers[0].variance: expected variance + epsilon > 0 in every channel, found variance 0.0 at index [1] "
            "with epsilon 0.0 (a division by zero)",
        ),
        (
            {"variance": {"init": "normal", "seed": 1}},
            "layers[0].variance: expected variances >= 0, found a normal initializer, which draws negative numbers",
        ),
        ({"variance": {"init": "uniform", "seed": 1, "low": -1, "high": 1}}, "a uniform initializer"),
        ({"variance": {"init": "zeros"}, "epsilon": 0}, "variance 0 with epsilon 0"),
        ({"epsilon": -1e-5}, "layers[0].epsilon: expected a number >= 0.0, found -1e-05"),
        (
            {"epsilon": 1e39},
            "layers[0].epsilon: expected epsilon <= 3.402823e+38 (the largest float32: ONNX stores epsilon as one), found 1e+39",
        ),
        ({"mean": [0.0, 1.0]}, "layers[0].mean: expected shape [3] (one per channel: input 'x' has 3 channels"),
    ],
)
def test_batch_norm_errors_name_the_field(fields, message):
    assert message in error_of([bn(**fields)], [3, 4])


def test_variances_from_a_file_are_checked_once_loaded(tmp_path: Path):
    np.save(tmp_path / "var.npy", np.array([1.0, 2.0, -3.0]))
    (tmp_path / "m.json").write_text(
        '{"format": "nnspec/1", "name": "m", "inputs": [{"name": "x", "shape": [3]}], "layers": [{"type": '
        '"batch_norm", "name": "bn", "mean": [0, 0, 0], "variance": {"file": "var.npy"}}]}'
    )
    with pytest.raises(SpecError, match=r"layers\[0\]\.variance: expected variances >= 0, found -3.0 at index \[2\]"):
        nnspec.check(tmp_path / "m.json")


def test_layer_norm_errors_name_the_field():
    wrong = {"type": "layer_norm", "scale": [1.0, 2.0]}
    assert "layers[0].scale: expected shape [5] (one per feature of the last axis: input 'x' has 5 there)" in error_of(
        [wrong], [3, 5]
    )
    assert "layers[0].epsilon: expected a number >= 0" in error_of([{"type": "layer_norm", "epsilon": -1}], [5])


# --- the kernels against independent computations ------------------------------------------------------


def test_batch_norm_kernel_against_a_loop_over_channels():
    params = {"scale": [1.5, -2.0, 0.5], "offset": [0.1, 0.0, -3.0], "epsilon": 0.01}
    model = nnspec.to_numpy(spec([bn(**params)], [3, 4], "float64"))
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    expected = np.empty_like(x)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                inv = params["scale"][c] / np.sqrt([1.0, 0.25, 4.0][c] + 0.01)
                expected[n, c, i] = (x[n, c, i] - [0.5, -1.0, 2.0][c]) * inv + params["offset"][c]
    np.testing.assert_allclose(model(x), expected, rtol=1e-13, atol=1e-15)  # a handful of float64 roundings


def test_layer_norm_kernel_against_a_loop_over_rows():
    scale, offset = [1.0, 2.0, -1.0, 0.5], [0.0, 1.0, 2.0, 3.0]
    model = nnspec.to_numpy(spec([{"type": "layer_norm", "scale": scale, "offset": offset}], [2, 4], "float64"))
    x = np.random.default_rng(1).normal(size=(3, 2, 4))
    expected = np.empty_like(x)
    for n in range(3):
        for r in range(2):
            row = x[n, r]
            mean = sum(row) / 4
            var = sum((v - mean) ** 2 for v in row) / 4
            expected[n, r] = [(row[h] - mean) / np.sqrt(var + 1e-5) * scale[h] + offset[h] for h in range(4)]
    np.testing.assert_allclose(model(x), expected, rtol=1e-12, atol=1e-14)


def _one_node(op: str, inputs: dict[str, np.ndarray], shape: list[int], **attrs: Any) -> ReferenceEvaluator:
    """A single-node float32 model of `op` over x and the given initializers, for onnx's reference evaluator."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", *shape])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", *shape])
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inputs.items()]
    node = helper.make_node(op, ["x", *inputs], ["y"], **attrs)
    graph = helper.make_graph([node], "one", [x], [y], initializer=inits)
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_kernels_against_onnx_reference_single_node_models():
    """Both float32, so they may differ by rounding: within the sum of both sides' derived bounds."""
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(5, 3, 4)) * 10).astype(np.float32)
    s = spec([bn(scale=[1.0, -0.5, 2.0], offset=[0.0, 1.0, -1.0], epsilon=1e-3)], [3, 4])
    ref = _one_node(
        "BatchNormalization",
        {
            "s": np.array([1.0, -0.5, 2.0]),
            "b": np.array([0.0, 1.0, -1.0]),
            "m": np.array([0.5, -1.0, 2.0]),
            "v": np.array([1.0, 0.25, 4.0]),
        },
        [3, 4],
        epsilon=1e-3,
    ).run(None, {"x": x})[0]
    bound = propagate(nnspec.graph(s), {"x": x}, F32).errors["bn"]
    assert np.all(np.abs(nnspec.to_numpy(s)(x) - ref) <= 2 * bound)

    ln = spec([{"type": "layer_norm", "scale": [1.0, 2.0, 3.0, 4.0], "offset": [0.5, 0.5, 0.5, 0.5]}], [3, 4])
    ref = _one_node(
        "LayerNormalization", {"s": np.arange(1.0, 5.0), "b": np.full(4, 0.5)}, [3, 4], axis=-1, epsilon=1e-5
    ).run(None, {"x": x})[0]
    bound = propagate(nnspec.graph(ln), {"x": x}, F32).errors["layer_norm_0"]
    assert np.all(np.abs(nnspec.to_numpy(ln)(x) - ref) <= 2 * bound)


# --- ONNX forms ----------------------------------------------------------------------------------------


def test_layer_norm_is_one_operator_from_opset_17_and_composed_below():
    s = spec([{"type": "layer_norm", "name": "ln", "offset": [1.0, 2.0, 3.0]}], [3])
    assert [n.op_type for n in nnspec.to_onnx(s, 17).graph.node] == ["LayerNormalization"]
    composed = [n.op_type for n in nnspec.to_onnx(s, 13).graph.node]
    assert "LayerNormalization" not in composed and composed.count("ReduceMean") == 2 and "Sqrt" in composed
    assert nnspec.check(s, opset=13).passed


def test_reduce_mean_takes_its_axes_as_an_input_from_opset_18():
    g = Builder(18, np.dtype(np.float32))
    g.scope = "t"
    _mean_last_axis(g, "x")
    assert [n.op_type for n in g.nodes] == ["Constant", "ReduceMean"] and len(g.nodes[1].input) == 2
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info(g.nodes[1].output[0], onnx.TensorProto.FLOAT, [2, 1])
    model = helper.make_model(helper.make_graph(g.nodes, "m", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ReferenceEvaluator(model).run(None, {"x": data})[0], [[1.0], [4.0]])


# --- derived bounds -----------------------------------------------------------------------------------


def test_batch_norm_bound_pinned_on_a_tiny_case():
    """variance 4, epsilon 0: inv = 0.5 exactly and no epsilon slack; x = 3, mean 1: gamma_7 (0.5 (3 + 1))."""
    s = spec([{"type": "batch_norm", "mean": [1.0], "variance": [4.0], "epsilon": 0}], [1], "float64")
    node = nnspec.graph(s).nodes[0]
    for p in (F32, F64):
        form = batch_norm_bound(node, [exact(np.array([[3.0]]))], p)
        assert form.value[0, 0] == 1.0
        assert form.bound()[0, 0] == pytest.approx(gamma(7, p.u) * 2 + 8 * p.tiny, rel=1e-15)


def test_layer_norm_bound_pinned_on_a_tiny_case():
    """x = [1, -1], no error, epsilon 0: to first order, the mean is off by 4u (gamma_{d+2}), x - mean by 5u,
    the variance by 15u (two-pass: 2 x 5u + gamma_5), variance + epsilon by 16u, the normalizer by 8u + gamma_4,
    and the result by 5u + 12u + u (the offset's addition) = 18u."""
    x = np.array([[1.0, -1.0]])
    error = _layer_norm_error(x, np.zeros_like(x), np.ones(2), np.zeros(2), 0.0, F64)
    np.testing.assert_allclose(error / F64.u, [[18.0, 18.0]], rtol=1e-9)


def _textbook(x: np.ndarray, epsilon: float) -> np.ndarray:
    """onnxruntime's older CPU LayerNormalization in float32: sums in order, variance = E[x^2] - mean^2."""
    f = np.float32
    total = np.zeros(x.shape[0], f)
    squares = np.zeros(x.shape[0], f)
    for h in range(x.shape[1]):
        total = (total + x[:, h]).astype(f)
        squares = (squares + (x[:, h] * x[:, h]).astype(f)).astype(f)
    d = f(x.shape[1])
    mean = (total / d).astype(f)
    var = ((squares / d).astype(f) - (mean * mean).astype(f)).astype(f)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((x - mean[:, None]) / np.sqrt((var + f(epsilon)).astype(f))[:, None]).astype(f)


@pytest.mark.parametrize(("mean", "spread"), [(0.0, 1.0), (0.0, 1e-3), (1000.0, 0.01), (-3e4, 1.0), (5.0, 1e-4)])
def test_layer_norm_bound_holds_for_float32_two_pass_and_textbook_forms(mean, spread):
    """Large means with small spreads are where E[x^2] - mean^2 cancels: there the bound may be inf, never low."""
    rng = np.random.default_rng(3)
    for d, epsilon in ((2, 1e-5), (8, 1e-3), (33, 0.0)):
        x = (mean + spread * rng.normal(size=(64, d))).astype(np.float32)
        wide = x.astype(np.float64)
        centred = wide - wide.mean(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            exact_y = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + epsilon)
        bound = _layer_norm_error(wide, np.zeros_like(wide), np.ones(d), np.zeros(d), epsilon, F32)
        s = spec([{"type": "layer_norm", "epsilon": epsilon}], [d])
        for got in (nnspec.to_numpy(s)(x), _textbook(x, epsilon)):
            err = np.abs(got.astype(np.float64) - exact_y)
            finite = np.isfinite(bound)
            assert np.all(err[finite] <= bound[finite]), (d, epsilon)
        if mean == 0.0:
            assert np.isfinite(bound).all()


def test_large_mean_small_variance_passes_the_check_in_both_dtypes():
    x = 1000 + 0.01 * np.random.default_rng(4).normal(size=(32, 8))
    for dtype in ("float32", "float64"):
        s = spec([{"type": "layer_norm", "name": "ln", "scale": {"init": "normal", "seed": 1}}], [8], dtype)
        for opset in (13, 17):
            report = nnspec.check(s, inputs={"x": x.astype(dtype)}, opset=opset)
            assert report.passed, str(report)
        if dtype == "float64":  # E[x^2] - mean^2 is within 2e-10 of 1e-4 there: a finite, meaningful bound
            bound = propagate(nnspec.graph(s), {"x": x}, F64).errors["ln"]
            assert np.isfinite(bound).all() and bound.max() < 1e-4


def test_batch_norm_bound_folded_into_a_dense_layer():
    """Simulates the fusion in float32: W' = fl(W fl(s / fl(sqrt(fl(v + eps))))), b' = fl(fl((b - m) inv) + o),
    then the fused sum, on inputs where the normalized output cancels (x W^T + b close to the mean)."""
    rng = np.random.default_rng(5)
    f = np.float32
    w, b = rng.normal(size=(4, 64)).astype(f), rng.normal(size=4).astype(f)
    x = rng.normal(size=(256, 64)).astype(f)
    mean = (x[:4].astype(np.float64) @ w.T.astype(np.float64) + b)[0].astype(f)  # outputs of sample 0 cancel
    var, scale, offset = np.array([1e-4, 1.0, 1e-2, 9.0], f), rng.normal(size=4).astype(f), rng.normal(size=4).astype(f)
    inv = (scale / np.sqrt((var + f(1e-5)).astype(f))).astype(f)
    fused = (x @ (w * inv[:, None]).astype(f).T).astype(f) + (((b - mean).astype(f) * inv).astype(f) + offset).astype(f)
    s = spec(
        [
            {"type": "dense", "name": "d", "units": 4, "weights": w.tolist(), "bias": b.tolist()},
            {
                "type": "batch_norm",
                "name": "bn",
                "mean": mean.tolist(),
                "variance": var.tolist(),
                "scale": scale.tolist(),
                "offset": offset.tolist(),
            },
        ],
        [64],
    )
    trace = propagate(nnspec.graph(s), {"x": x}, F32)
    err = np.abs(fused.astype(np.float64) - trace.values["bn"])
    assert np.all(err <= trace.errors["bn"])
    # the fold term matters: the same bound without it (the input's form stripped of its terms) is smaller
    d = nnspec.graph(s).widened().nodes
    form = linear(exact(x.astype(np.float64)), d[0].params["weights"], d[0].params["bias"], F32)
    plain = batch_norm_bound(d[1], [Affine(form.value, form.sources)], F32).bound()
    folded = batch_norm_bound(d[1], [form], F32).bound()
    assert np.all(folded >= plain) and np.any(folded > plain)


@pytest.mark.skipif("conv2d" not in LAYERS, reason="needs the conv2d layer (nnspec/layers/conv.py)")
def test_batch_norm_after_conv_is_fused_by_onnxruntime_and_stays_within_the_bound(tmp_path: Path):
    s = spec(
        [
            {
                "type": "conv2d",
                "name": "c",
                "filters": 3,
                "kernel_size": 3,
                "weights": {"init": "normal", "seed": 1, "std": 1.0},
                "bias": [5.0, -3.0, 100.0],
            },
            {
                "type": "batch_norm",
                "name": "bn",
                "mean": [5.0, -3.0, 100.0],
                "variance": [1e-3, 1e-6, 0.3],
                "scale": [3.0, -2.0, 0.7],
                "offset": [0.1, 0.2, -0.3],
            },
            {"type": "activation", "name": "out", "activation": "relu"},
        ],
        [8, 6, 6],
    )
    graph = nnspec.graph(s)
    data = to_bytes(nnspec.to_onnx(s))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    fused = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}
    plain_options = ort.SessionOptions()
    plain_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(data, plain_options, providers=["CPUExecutionProvider"])
    moved = False
    for case in random_cases(graph):
        trace = propagate(graph, case.feeds, F32)
        got = fused.run(None, case.feeds)[0]
        moved |= not np.array_equal(got, plain.run(None, case.feeds)[0])
        assert np.all(np.abs(got - trace.values["out"]) <= trace.errors["out"])
    assert moved, "the fusion changed no number: this test would not see a bound that misses it"
    assert nnspec.check(s).passed


# --- faults that must be caught -------------------------------------------------------------------------


def _with_attribute(model: onnx.ModelProto, op: str, name: str, value: float) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    node = next(n for n in model.graph.node if n.op_type == op)
    next(a for a in node.attribute if a.name == name).f = value
    return model


def test_a_changed_epsilon_is_caught():
    x = {"x": 0.01 * np.random.default_rng(6).normal(size=(8, 3, 4)).astype(np.float32)}
    s = spec([bn(variance=[1e-4, 1e-3, 1e-2])], [3, 4])
    assert nnspec.check(s, inputs=x).passed
    assert not nnspec.check(
        s, onnx_model=_with_attribute(nnspec.to_onnx(s), "BatchNormalization", "epsilon", 2e-5), inputs=x
    ).passed
    ln = spec([{"type": "layer_norm", "epsilon": 1e-4}], [4])
    feeds = {"x": 0.01 * np.random.default_rng(7).normal(size=(8, 4)).astype(np.float32)}
    assert nnspec.check(ln, inputs=feeds).passed
    changed = _with_attribute(nnspec.to_onnx(ln), "LayerNormalization", "epsilon", 1.02e-4)
    assert not nnspec.check(ln, onnx_model=changed, inputs=feeds).passed


def test_a_layer_norm_over_the_wrong_axis_is_caught():
    s = spec([{"type": "layer_norm", "name": "ln"}], [3, 4])
    model = nnspec.to_onnx(s)
    next(a for a in model.graph.node[0].attribute if a.name == "axis").i = 1  # over [3, 4], not the last axis
    assert not nnspec.check(s, onnx_model=model).passed


def test_validate_checks_variances_read_from_a_file(cli, tmp_path):
    np.save(tmp_path / "v.npy", np.array([1.0, -0.5], np.float32))
    spec = {
        "format": "nnspec/1",
        "name": "bn",
        "inputs": [{"name": "x", "shape": [2, 3]}],
        "layers": [{"type": "batch_norm", "mean": [0, 0], "variance": {"file": "v.npy"}}],
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    result = cli("validate", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "layers[0].variance: expected variances >= 0, found -0.5 at index [1]" in result.stderr


def test_elements_without_a_finite_bound_are_said_in_the_report():
    # A float32 layer norm of nearly constant values: variance + epsilon may round to anything near 0, so
    # the bound is infinite there; the report must say that nothing could fail, never pass silently.
    spec = {
        "format": "nnspec/1",
        "name": "flat",
        "inputs": [{"name": "x", "shape": [8]}],
        "layers": [
            {
                "type": "dense",
                "name": "d",
                "units": 8,
                "weights": {"init": "glorot_uniform", "seed": 1},
                "bias": {"init": "constant", "value": 1000.0},
            },
            {"type": "layer_norm", "name": "n"},
        ],
    }
    x = np.random.default_rng(0).normal(size=(4, 8)) * 1e-4
    report = nnspec.check(nnspec.from_dict(spec), inputs=x)
    assert report.outputs[0].unbounded == 32
    assert any(n.startswith("output 'n' (onnxruntime): 32 of 32 elements had no finite bound") for n in report.notes)


# Found by the fuzzer: values that leave float32's range inside a norm (a factor scale / sqrt(variance + eps)
# at float32's largest number; squares of 2e19) overflow to inf or NaN in any correct implementation.
@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (
            {"type": "batch_norm", "name": "n", "mean": [0.5], "variance": [0.5], "scale": [3.4028235e38]},
            [[2.0], [0.0], [0.6]],
        ),
        ({"type": "layer_norm", "name": "n"}, [[2e19, -2e19, 0.0, 1.0]]),
    ],
    ids=["batch_norm", "layer_norm"],
)
def test_a_norm_whose_arithmetic_overflows_is_unbounded_there_not_a_false_alarm(layer, x):
    x = np.array(x, dtype=np.float32)
    spec = {"format": "nnspec/1", "name": "big", "inputs": [{"name": "x", "shape": [x.shape[1]]}], "layers": [layer]}
    report = nnspec.check(nnspec.from_dict(spec), inputs=x)
    assert report.passed and all(o.passed for o in report.oracle), str(report)
    assert report.outputs[0].unbounded > 0
