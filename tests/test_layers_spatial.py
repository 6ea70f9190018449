"""conv1d, conv2d and the pools: shapes and values against onnxruntime, the ONNX reference evaluator and an
explicit loop written here; every shape error with its spec path; the derived bound worked out by hand on tiny
cases; and faults that the check must catch (a flipped kernel, SAME_LOWER for "same", count_include_pad)."""

from __future__ import annotations

import copy
import json
import math
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
from nnspec.bounds import propagate
from nnspec.layers import LAYERS

SPECS = Path(__file__).resolve().parent.parent / "specs"
EPS32 = float(np.finfo(np.float32).eps)
F32 = Precision.of(np.float32)
U, TINY = F32.u, F32.tiny


def gamma(k: int) -> float:
    return k * U / (1 - k * U)


def _spec(layer: dict[str, Any], shape: list[int], *more: dict[str, Any], dtype: str = "float32") -> dict[str, Any]:
    first = {"name": "y", **layer}
    inputs = [{"name": "x", "shape": list(shape)}]
    return {"format": "nnspec/1", "name": "t", "dtype": dtype, "inputs": inputs, "layers": [first, *more]}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run_onnx(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(onnxruntime's output, the ONNX reference evaluator's) for a one-input model."""
    return _session(model).run(None, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0]


# --- an explicit loop, written from the definitions (PyTorch's and onnxruntime's) -----------------------


def _length(size: int, k: int, s: int, d: int, b: int, e: int, ceil: bool) -> int:
    span = size + b + e - d * (k - 1) - 1
    n = (math.ceil(span / s) if ceil else span // s) + 1
    return n - 1 if ceil and (n - 1) * s >= size + b else n  # a last window starting in the end padding is dropped


def _per_axis(value: int | list[int], rank: int) -> list[int]:
    return [value] * rank if isinstance(value, int) else value


def _pads(padding: Any, spatial: list[int], kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """Explicit begins then ends; "same" as TensorFlow and ONNX SAME_UPPER define it."""
    rank = len(spatial)
    if padding == "valid":
        return [0] * 2 * rank
    if padding == "same":
        totals = [
            max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            for n, k, s, d in zip(spatial, kernel, strides, dilations, strict=True)
        ]
        return [t // 2 for t in totals] + [t - t // 2 for t in totals]
    padding = _per_axis(padding, rank)
    return padding * 2 if len(padding) == rank else padding


def loop_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides, dilations, pads, groups) -> np.ndarray:
    n, c, *spatial = x.shape
    f, per_group, *kernel = w.shape
    rank = len(spatial)
    xp = np.pad(x, [(0, 0), (0, 0), *zip(pads[:rank], pads[rank:], strict=True)])
    out = [_length(*a, False) for a in zip(spatial, kernel, strides, dilations, pads[:rank], pads[rank:], strict=True)]
    y = np.zeros((n, f, *out))
    for o in np.ndindex(*out):
        for tap in np.ndindex(*kernel):
            at = tuple(i * s + t * d for i, t, s, d in zip(o, tap, strides, dilations, strict=True))
            for j in range(f):
                g = j // (f // groups)
                y[(slice(None), j, *o)] += (
                    xp[(slice(None), slice(g * per_group, (g + 1) * per_group), *at)] @ w[(j, slice(None), *tap)]
                )
    return y if b is None else y + b.reshape(-1, *[1] * rank)


def loop_pool(x: np.ndarray, reduce: str, kernel, strides, pads, ceil: bool, include_pad: bool) -> np.ndarray:
    n, c, *spatial = x.shape
    rank = len(spatial)
    begins, ends = pads[:rank], pads[rank:]
    out = [_length(*a, 1, b, e, ceil) for *a, b, e in zip(spatial, kernel, strides, begins, ends, strict=True)]
    y = np.zeros((n, c, *out))
    for o in np.ndindex(*out):
        starts = [i * s - b for i, s, b in zip(o, strides, begins, strict=True)]
        block = x[
            (..., *(slice(max(a, 0), min(a + k, size)) for a, k, size in zip(starts, kernel, spatial, strict=True)))
        ]
        axes = tuple(range(2, 2 + rank))
        if reduce == "max":
            y[(..., *o)] = block.max(axis=axes)
        else:
            real = math.prod(block.shape[2:])
            padded = math.prod(
                min(a + k, size + e) - a for a, k, size, e in zip(starts, kernel, spatial, ends, strict=True)
            )
            y[(..., *o)] = block.sum(axis=axes) / (padded if include_pad else real)
    return y


# --- values and shapes: the NumPy kernel, onnxruntime, the ONNX reference evaluator, the loop -------------

CONV_CASES = [
    ([2, 10], {"filters": 3, "kernel_size": 3}),
    ([2, 10], {"filters": 2, "kernel_size": 3, "strides": 2, "dilation": 2, "padding": "same"}),
    ([4, 9], {"filters": 4, "kernel_size": 2, "strides": 3, "padding": [1, 2], "groups": 2}),
    ([3, 7], {"filters": 6, "kernel_size": [4], "padding": "same", "groups": 3}),  # depthwise, multiplier 2
    ([2, 5], {"filters": 2, "kernel_size": 5, "padding": 2}),
    ([2, 4], {"filters": 2, "kernel_size": 3, "padding": [4, 3]}),  # windows of nothing but padding: the bias
    ([3, 6, 6], {"filters": 4, "kernel_size": 3, "padding": "same"}),
    ([2, 7, 5], {"filters": 3, "kernel_size": [3, 2], "strides": [2, 1], "padding": [1, 0, 2, 1], "dilation": [1, 2]}),
    ([4, 8, 8], {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "dilation": 2, "groups": 4}),
    ([4, 5, 6], {"filters": 6, "kernel_size": [1, 3], "groups": 2}),
    ([1, 4, 4], {"filters": 2, "kernel_size": 4}),  # the kernel is the whole input
    ([2, 6, 6], {"filters": 2, "kernel_size": 2, "strides": 3, "padding": "same"}),  # stride > kernel
    ([2, 5, 7], {"filters": 2, "kernel_size": [2, 4], "strides": [2, 3], "padding": "same", "dilation": [3, 1]}),
]


def _conv_id(case: tuple[list[int], dict[str, Any]]) -> str:
    shape, fields = case
    return "x".join(map(str, shape)) + "-" + "-".join(f"{k}={v}" for k, v in fields.items() if k != "filters")


@pytest.mark.parametrize(("shape", "fields"), CONV_CASES, ids=[_conv_id(c) for c in CONV_CASES])
def test_conv_equals_onnxruntime_the_reference_evaluator_and_a_loop(shape, fields):
    rank = len(shape) - 1
    layer = {
        "type": f"conv{rank}d",
        "weights": {"init": "he_normal", "seed": 1},
        "bias": {"init": "normal", "seed": 2, "std": 0.5},
        **fields,
    }
    spec = nnspec.from_dict(_spec(layer, shape))
    node = nnspec.graph(spec).nodes[0]
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    ours = LAYERS[node.op].numpy(node)(x)
    runtime, reference = _run_onnx(nnspec.to_onnx(spec), x)

    w, b = node.params["weights"].astype(np.float64), node.params["bias"].astype(np.float64)
    kernel = _per_axis(fields["kernel_size"], rank)
    strides, dilations = _per_axis(fields.get("strides", 1), rank), _per_axis(fields.get("dilation", 1), rank)
    pads = _pads(fields.get("padding", "valid"), shape[1:], kernel, strides, dilations)
    groups = fields.get("groups", 1)
    loop = loop_conv(x.astype(np.float64), w, b, strides, dilations, pads, groups)
    magnitude = loop_conv(np.abs(x).astype(np.float64), np.abs(w), np.abs(b), strides, dilations, pads, groups)

    assert ours.shape == runtime.shape == reference.shape == loop.shape == (2, *node.shape)
    few_ulps = 4 * EPS32 * magnitude  # a few ulps of the terms' magnitude: summation orders differ
    assert np.all(np.abs(ours - runtime) <= few_ulps)
    assert np.all(np.abs(ours - reference) <= few_ulps)
    assert np.all(np.abs(ours - loop) <= few_ulps)
    wide = nnspec.graph(nnspec.from_dict(_spec(layer, shape, dtype="float64"))).nodes[0]  # weights unrounded
    exact = loop_conv(
        x.astype(np.float64), wide.params["weights"], wide.params["bias"], strides, dilations, pads, groups
    )
    assert np.all(np.abs(LAYERS[node.op].numpy(wide)(x.astype(np.float64)) - exact) <= 1e-14 * magnitude)


POOL_CASES = [
    ("max_pool1d", [2, 11], {"pool_size": 3, "strides": 2, "padding": [1, 1], "ceil_mode": True}),
    ("max_pool1d", [2, 10], {"pool_size": 2}),
    ("max_pool1d", [1, 8], {"pool_size": 3, "strides": 2, "padding": [0, 2]}),
    ("avg_pool1d", [2, 12], {"pool_size": 3, "strides": 1, "padding": "same"}),
    (
        "avg_pool1d",
        [2, 10],
        {"pool_size": 3, "strides": 2, "padding": [1], "ceil_mode": True, "count_include_pad": True},
    ),
    ("avg_pool1d", [2, 8], {"pool_size": 3, "strides": 2, "padding": [1, 2], "ceil_mode": True}),
    (
        "avg_pool1d",
        [2, 8],
        {"pool_size": 3, "strides": 2, "padding": [1, 2], "ceil_mode": True, "count_include_pad": True},
    ),
    ("avg_pool1d", [1, 10], {"pool_size": 4, "strides": 3, "ceil_mode": True, "count_include_pad": True}),
    ("max_pool2d", [3, 7, 7], {"pool_size": 3, "strides": 2, "padding": "same"}),
    ("max_pool2d", [2, 6, 5], {"pool_size": [2, 3], "strides": [1, 2], "padding": [1, 0, 0, 2], "ceil_mode": True}),
    ("avg_pool2d", [2, 7, 8], {"pool_size": [3, 2], "strides": [2, 1], "padding": [1, 0, 1, 1], "ceil_mode": True}),
    ("avg_pool2d", [1, 8, 8], {"pool_size": 3, "strides": 2, "padding": 1, "ceil_mode": True}),
    (
        "avg_pool2d",
        [2, 6, 7],
        {"pool_size": [2, 3], "padding": [1, 0, 0, 1], "ceil_mode": True, "count_include_pad": True},
    ),
    ("avg_pool2d", [2, 5, 5], {"pool_size": 2, "padding": "same", "count_include_pad": True}),
]


@pytest.mark.parametrize(("op", "shape", "fields"), POOL_CASES, ids=[f"{c[0]}-{_conv_id(c[1:])}" for c in POOL_CASES])
def test_pool_equals_onnxruntime_the_reference_evaluator_and_a_loop(op, shape, fields):
    rank = len(shape) - 1
    spec = nnspec.from_dict(_spec({"type": op, **fields}, shape))
    node = nnspec.graph(spec).nodes[0]
    x = (np.random.default_rng(1).standard_normal((3, *shape)) * 10).astype(np.float32)
    ours = LAYERS[op].numpy(node)(x)
    runtime, reference = _run_onnx(nnspec.to_onnx(spec), x)
    kernel = _per_axis(fields["pool_size"], rank)
    strides = _per_axis(fields.get("strides", kernel), rank)
    pads = _pads(fields.get("padding", "valid"), shape[1:], kernel, strides, [1] * rank)
    args = (kernel, strides, pads, fields.get("ceil_mode", False), fields.get("count_include_pad", False))
    loop = loop_pool(x.astype(np.float64), op[:3], *args)

    assert ours.shape == runtime.shape == reference.shape == loop.shape == (3, *node.shape)
    if op.startswith("max"):  # exact: the largest of the same numbers
        assert np.array_equal(ours, runtime) and np.array_equal(ours, reference) and np.array_equal(ours, loop)
    else:
        few_ulps = 4 * EPS32 * loop_pool(np.abs(x).astype(np.float64), "avg", *args)
        for other in (runtime, reference, loop):
            assert np.all(np.abs(ours - other) <= few_ulps)


@pytest.mark.parametrize("shape", [[3, 5], [2, 4, 6], [2, 3, 2, 4]])
@pytest.mark.parametrize("op", ["global_avg_pool", "global_max_pool"])
def test_global_pools_equal_onnxruntime_and_numpy_reductions(op, shape):
    spec = nnspec.from_dict(_spec({"type": op}, shape))
    node = nnspec.graph(spec).nodes[0]
    assert node.shape == (shape[0],)
    x = (np.random.default_rng(2).standard_normal((4, *shape)) * 10).astype(np.float32)
    ours = LAYERS[op].numpy(node)(x)
    # not the ONNX reference evaluator: its GlobalMaxPool reduces the wrong axes unless there are two (onnx 1.23)
    runtime = _session(nnspec.to_onnx(spec)).run(None, {"x": x})[0]
    flat = x.astype(np.float64).reshape(4, shape[0], -1)
    assert ours.shape == runtime.shape == (4, shape[0])
    if op == "global_max_pool":
        assert np.array_equal(ours, runtime) and np.array_equal(ours, flat.max(axis=-1))
    else:
        few_ulps = 4 * EPS32 * np.abs(flat).mean(axis=-1)
        assert np.all(np.abs(ours - runtime) <= few_ulps) and np.all(np.abs(ours - flat.mean(axis=-1)) <= few_ulps)


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "dilations"),
    [([9], [2], [1], [1]), ([10], [3], [3], [2]), ([7, 6], [2, 3], [2, 1], [1, 2]), ([5, 8], [4, 4], [3, 2], [1, 1])],
)
def test_same_padding_is_onnx_same_upper(shape, kernel, strides, dilations):
    """The explicit pads of "same" compute what auto_pad=SAME_UPPER computes: onnxruntime's, or with a dilation,
    which onnxruntime refuses with SAME_UPPER (one more reason for explicit pads), the ONNX reference evaluator's."""
    layer = {"type": f"conv{len(shape)}d", "filters": 2, "kernel_size": kernel, "strides": strides}
    layer |= {"dilation": dilations, "padding": "same", "weights": {"init": "glorot_uniform", "seed": 3}}
    spec = nnspec.from_dict(_spec(layer, [2, *shape]))
    model = nnspec.to_onnx(spec)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert {a.name for a in conv.attribute} >= {"pads", "kernel_shape", "strides", "dilations", "group"}
    assert "auto_pad" not in {a.name for a in conv.attribute}
    same_upper = copy.deepcopy(model)
    node = next(n for n in same_upper.graph.node if n.op_type == "Conv")
    kept = [a for a in node.attribute if a.name != "pads"]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute("auto_pad", "SAME_UPPER")])
    x = np.random.default_rng(3).standard_normal((2, 2, *shape)).astype(np.float32)
    ours = _session(model).run(None, {"x": x})[0]
    if any(d > 1 for d in dilations):
        np.testing.assert_allclose(ours, ReferenceEvaluator(same_upper).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    else:
        assert np.array_equal(ours, _session(same_upper).run(None, {"x": x})[0])


def test_depthwise_conv_and_its_parts_in_the_exported_model():
    layer = {"type": "conv2d", "filters": 6, "kernel_size": 3, "groups": 3, "padding": 1}
    layer |= {"weights": {"init": "he_normal", "seed": 1}, "bias": {"init": "zeros"}, "activation": "relu"}
    spec = nnspec.from_dict(_spec(layer, [3, 5, 5]))
    model = nnspec.to_onnx(spec)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    assert attrs == {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 3}
    assert list(conv.input[1:]) == ["y.weights", "y.bias"]
    assert numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "y.weights")).shape == (
        6,
        1,
        3,
        3,
    )
    assert LAYERS["conv2d"].formula(nnspec.graph(spec).nodes[0]) == "relu(W ⊛ x + b)"


def test_conv_initializers_follow_the_receptive_field():
    """glorot_uniform for [F, C, kh, kw] draws within sqrt(6 / ((C + F) kh kw)) (Keras, PyTorch)."""
    layer = {"type": "conv2d", "filters": 8, "kernel_size": [3, 5], "weights": {"init": "glorot_uniform", "seed": 4}}
    weights = nnspec.graph(nnspec.from_dict(_spec(layer, [4, 8, 8]))).nodes[0].params["weights"]
    limit = math.sqrt(6 / ((4 + 8) * 15))
    assert np.abs(weights).max() <= limit and np.abs(weights).max() > 0.9 * limit


# --- shape rules: each refusal names its place in the spec ---------------------------------------------

W = {"init": "he_normal", "seed": 1}
ERRORS = [
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "dilation": 2, "weights": W},
        [1, 4, 8],
        "layers[0].kernel_size",
        "expected the dilated kernel_size (2 x (3 - 1) + 1 = 5) <= the padded input (4 + 0 + 0 = 4) along axis 2 (H)",
    ),
    (
        {"type": "conv1d", "filters": 2, "kernel_size": 7, "padding": [1, 0], "weights": W},
        [1, 5],
        "layers[0].kernel_size",
        "expected kernel_size <= the padded input (5 + 1 + 0 = 6) along axis 2 (L), found 7",
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "groups": 2, "weights": W},
        [3, 8, 8],
        "layers[0].groups",
        "expected the input's channels divisible by groups (2), found 3 channels",
    ),
    (
        {"type": "conv2d", "filters": 3, "kernel_size": 3, "groups": 2, "weights": W},
        [4, 8, 8],
        "layers[0].filters",
        "expected filters divisible by groups (2), found 3 filters",
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": [3, 3, 3], "weights": W},
        [1, 8, 8],
        "layers[0].kernel_size",
        "expected 2 entries (one per spatial axis: H, W) for conv2d, found 3",
    ),
    (
        {"type": "conv1d", "filters": 2, "kernel_size": 3, "strides": [1, 1], "weights": W},
        [1, 8],
        "layers[0].strides",
        "expected 1 entry for conv1d, found 2",
    ),
    (
        {"type": "avg_pool2d", "pool_size": 2, "padding": [1, 1, 1]},
        [1, 8, 8],
        "layers[0].padding",
        "expected 2 entries (one per spatial axis: H, W), or 4 (the begins, then the ends, as ONNX pads)",
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "weights": W},
        [8, 8],
        "layers[0]",
        "expected a per-sample [C, H, W] input for conv2d (channels first, 3 axes), found input 'x' of shape [8, 8]",
    ),
    (
        {"type": "max_pool1d", "pool_size": 2, "inputs": ["x"]},
        [2, 4, 4],
        "layers[0].inputs[0]",
        "expected a per-sample [C, L] input for max_pool1d",
    ),
    (
        {"type": "global_avg_pool"},
        [5],
        "layers[0]",
        "expected a per-sample [C, *spatial] input for global_avg_pool",
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": [1, -1], "weights": W},
        [1, 8, 8],
        "layers[0].padding[1]",
        "expected an integer >= 0, found -1",
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "full", "weights": W},
        [1, 8, 8],
        "layers[0].padding",
        'expected "valid", "same" or numbers',
    ),
    (
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": [1, 0], "weights": W},
        [1, 8, 8],
        "layers[0].strides[1]",
        "expected an integer >= 1, found 0",
    ),
    (
        {"type": "conv1d", "filters": 2, "kernel_size": 3, "dilation": 0, "weights": W},
        [1, 8],
        "layers[0].dilation",
        "expected an integer >= 1, found 0",
    ),
    (
        {"type": "max_pool2d", "pool_size": [2, 0]},
        [1, 8, 8],
        "layers[0].pool_size[1]",
        "expected an integer >= 1, found 0",
    ),
    (
        {"type": "conv1d", "filters": 2, "kernel_size": "3", "weights": W},
        [1, 8],
        "layers[0].kernel_size",
        "expected an integer or a list of integers, one per spatial axis, found '3'",
    ),
    (
        {"type": "max_pool1d", "pool_size": 2, "padding": [2, 0]},
        [1, 5],
        "layers[0].padding",
        "expected padding < pool_size (2) on each side along axis 2 (L), found 2 at the start",
    ),
    (
        {"type": "max_pool1d", "pool_size": 2, "padding": [1, 1], "ceil_mode": True},
        [1, 5],
        "layers[0].ceil_mode",
        "found ceil_mode's last window along axis 2 (L) starting at position 5, in the end padding",
    ),
    (
        {"type": "conv1d", "filters": 2, "kernel_size": 3, "weights": [[[1, 2, 3]]]},
        [1, 8],
        "layers[0].weights",
        "expected shape [2, 1, 3] (2 filters x 1 input channels x kernel 3",
    ),
]


@pytest.mark.parametrize(("layer", "shape", "path", "message"), ERRORS, ids=[e[2] + "-" + e[3][:30] for e in ERRORS])
def test_a_shape_rule_refusal_names_its_place_and_cause(layer, shape, path, message):
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.from_dict(_spec(layer, shape))
    assert f"{path}: " in str(info.value) and message in str(info.value), str(info.value)


def test_a_ceil_mode_window_in_the_end_padding_is_refused_because_onnx_opsets_disagree():
    """The refusal's reason, measured: onnxruntime drops the window, ONNX's shape rule keeps it before opset 22."""
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], strides=[2], pads=[1, 1], ceil_mode=1)
    lengths = {}
    for opset in (17, 22):
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 5])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        inferred = onnx.shape_inference.infer_shapes(model).graph.output[0].type.tensor_type.shape.dim[2].dim_value
        ran = _session(model).run(None, {"x": np.zeros((1, 1, 5), np.float32)})[0].shape[2]
        lengths[opset] = (inferred, ran)
    assert lengths == {17: (4, 3), 22: (3, 3)}
    with pytest.raises(nnspec.SpecError, match="ONNX before opset 22 keeps it"):
        nnspec.from_dict(_spec({"type": "max_pool1d", "pool_size": 2, "padding": [1, 1], "ceil_mode": True}, [1, 5]))


# --- the derived bound, by hand ----------------------------------------------------------------------


def _trace(spec: dict[str, Any], x: np.ndarray):
    return propagate(nnspec.graph(nnspec.from_dict(spec)), {"x": x}, F32)


def test_conv_bound_is_gamma_k_of_the_terms_and_carries_the_input_error_through_abs_w():
    """y = [1, -2] ⊛ x + 0.5: k = 2 products + the bias = 3 terms; z = -3 y: 1 term, y's error times 3."""
    first = {"type": "conv1d", "filters": 1, "kernel_size": 2, "weights": [[[1.0, -2.0]]], "bias": [0.5]}
    second = {"type": "conv1d", "name": "z", "filters": 1, "kernel_size": 1, "weights": [[[-3.0]]]}
    trace = _trace(_spec(first, [1, 3], second), np.array([[[1.0, 2.0, 3.0]]]))
    np.testing.assert_array_equal(trace.values["y"], [[[-2.5, -3.5]]])
    e_y = gamma(3) * np.array([1 + 4 + 0.5, 2 + 6 + 0.5]) + 3 * TINY
    np.testing.assert_allclose(trace.errors["y"], [[e_y]], rtol=1e-15)
    e_z = 3 * e_y + gamma(1) * 3 * (np.array([2.5, 3.5]) + e_y) + TINY
    np.testing.assert_allclose(trace.errors["z"], [[e_z]], rtol=1e-15)


def test_pool_bounds_by_hand():
    x = np.array([[[1.0, -2.0, 3.0, 4.0]]])
    avg = _trace(_spec({"type": "avg_pool1d", "pool_size": 2}, [1, 4]), x)
    np.testing.assert_array_equal(avg.values["y"], [[[-0.5, 3.5]]])  # sum of 2, times 1/2: k = 2 + 1
    np.testing.assert_allclose(avg.errors["y"], [[gamma(3) * np.array([1.5, 3.5]) + 3 * TINY]], rtol=1e-15)
    padded = _spec({"type": "avg_pool1d", "pool_size": 2, "padding": [1, 0], "count_include_pad": True}, [1, 4])
    np.testing.assert_array_equal(_trace(padded, x).values["y"], [[[0.5, 0.5]]])  # (0 + 1) / 2, (-2 + 3) / 2
    glob = _trace(_spec({"type": "global_avg_pool"}, [1, 4]), x)
    np.testing.assert_array_equal(glob.values["y"], [[1.5]])
    np.testing.assert_allclose(glob.errors["y"], [[gamma(5) * 2.5 + 5 * TINY]], rtol=1e-15)
    # max pooling is exact, and the error of a max is the largest error in its window
    conv = {"type": "conv1d", "filters": 1, "kernel_size": 1, "weights": [[[3.0]]]}
    chained = _trace(_spec(conv, [1, 4], {"type": "max_pool1d", "name": "m", "pool_size": 2}), x)
    e = gamma(1) * 3 * np.abs(x) + TINY
    np.testing.assert_allclose(chained.errors["m"], e.reshape(1, 1, 2, 2).max(axis=-1), rtol=1e-15)
    np.testing.assert_array_equal(_trace(_spec({"type": "max_pool1d", "pool_size": 2}, [1, 4]), x).errors["y"], 0)


# --- faults the check must catch ----------------------------------------------------------------------


def _changed(spec: nnspec.Spec, change) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    model = nnspec.to_onnx(spec)
    change(model)
    return model


def _set(node: onnx.NodeProto, name: str, value: Any) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def test_a_flipped_kernel_a_true_convolution_fails_the_check():
    spec = nnspec.from_dict(
        _spec(
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "weights": {"init": "he_normal", "seed": 5}}, [2, 6, 6]
        )
    )

    def flip(model: onnx.ModelProto) -> None:
        init = next(i for i in model.graph.initializer if i.name == "y.weights")
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:, :, ::-1, ::-1].copy(), init.name))

    assert nnspec.check(spec).passed
    assert not nnspec.check(spec, onnx_model=_changed(spec, flip)).passed


def test_same_lower_for_same_fails_the_check():
    """An even kernel pads one more at the end ("same" = SAME_UPPER); padding it at the start shifts every output."""
    layer = {
        "type": "conv1d",
        "filters": 2,
        "kernel_size": 2,
        "padding": "same",
        "weights": {"init": "normal", "seed": 6},
    }
    spec = nnspec.from_dict(_spec(layer, [1, 9]))
    assert nnspec.graph(spec).nodes[0].attrs["pads"] == [0, 1]
    lower = _changed(spec, lambda m: _set(next(n for n in m.graph.node if n.op_type == "Conv"), "pads", [1, 0]))
    assert not nnspec.check(spec, onnx_model=lower).passed


def test_count_include_pad_flipped_fails_the_check():
    spec = nnspec.from_dict(_spec({"type": "avg_pool2d", "pool_size": 3, "padding": "same"}, [2, 5, 5]))
    flipped = _changed(spec, lambda m: _set(m.graph.node[0], "count_include_pad", 1))
    assert nnspec.check(spec).passed and not nnspec.check(spec, onnx_model=flipped).passed


# --- the example specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits_cnn", "signal_conv1d"])
def test_the_example_specs_pass_the_check_layer_by_layer(name):
    report = nnspec.check(nnspec.load(SPECS / f"{name}.json"))
    assert report.passed and report.steps and all(s.passed for s in report.steps), str(report)


def test_a_float64_conv_says_onnxruntime_lacks_the_kernel_and_checks_with_the_reference_runner(cli, tmp_path):
    spec = json.loads((SPECS / "digits_cnn.json").read_text())
    spec["dtype"] = "float64"
    (tmp_path / "c64.json").write_text(json.dumps(spec))
    result = cli("check", tmp_path / "c64.json")
    assert result.exit_code == 2
    assert "cpu provider has no Conv kernel for this model's element type (node 'c1/Conv'" in result.stderr
    assert "--runner onnx-reference" in result.stderr
    assert cli("check", tmp_path / "c64.json", "--runner", "onnx-reference").exit_code == 0


# Found by the fuzzer: sizes far beyond the input (strides of 2**61, a dilation of 2**31 with "same" padding).
def test_a_stride_beyond_the_input_takes_one_window(tmp_path):
    spec = {
        "format": "nnspec/1",
        "name": "far",
        "inputs": [{"name": "x", "shape": [1, 4]}],
        "layers": [
            {"type": "conv1d", "name": "c", "filters": 1, "kernel_size": 2, "strides": 2**61, "weights": [[[1.0, 1.0]]]}
        ],
    }
    loaded = nnspec.from_dict(spec)
    assert nnspec.graph(loaded).nodes[0].shape == (1, 1)
    assert nnspec.check(loaded).passed


def test_sizes_onnx_cannot_store_are_refused_with_the_place():
    spec = {
        "format": "nnspec/1",
        "name": "far",
        "inputs": [{"name": "x", "shape": [1, 4]}],
        "layers": [{"type": "max_pool1d", "name": "p", "pool_size": 2, "strides": 2**63}],
    }
    with pytest.raises(nnspec.SpecError, match=r"layers\[0\]\.strides: expected an integer <= 9223372036854775807"):
        nnspec.from_dict(spec)


def test_a_workspace_beyond_the_batch_limit_is_refused_before_anything_is_allocated():
    spec = {
        "format": "nnspec/1",
        "name": "wide",
        "inputs": [{"name": "x", "shape": [1, 3, 3]}],
        "layers": [
            {
                "type": "conv2d",
                "name": "c",
                "filters": 1,
                "kernel_size": 2,
                "dilation": 2**31,
                "padding": "same",
                "weights": [[[[1.0, 1.0], [1.0, 1.0]]]],
            }
        ],
    }
    with pytest.raises(nnspec.LimitError, match=r"layers\[0\]: expected one sample of a layer's workspace"):
        nnspec.from_dict(spec)


def test_a_max_pool_over_nan_is_unbounded_since_runtimes_differ():
    # Found by the fuzzer: NumPy propagates NaN, onnxruntime's MaxPool skips it; both read ONNX correctly.
    spec = {
        "format": "nnspec/1",
        "name": "nan",
        "inputs": [{"name": "x", "shape": [1, 4]}],
        "layers": [{"type": "max_pool1d", "name": "p", "pool_size": 2}],
    }
    report = nnspec.check(nnspec.from_dict(spec), inputs=np.array([[[np.nan, 1, 2, np.nan]]], dtype=np.float32))
    assert report.passed and report.outputs[0].unbounded == 2


@pytest.mark.parametrize(
    "pool", [{"type": "avg_pool1d", "name": "p", "pool_size": 2}, {"type": "global_avg_pool", "name": "p"}]
)
def test_an_average_whose_sum_overflows_is_unbounded_not_a_false_alarm(pool):
    # Found by the fuzzer: 3e38 + 3e38 is inf in float32 before the division, though the mean is representable.
    spec = {
        "format": "nnspec/1",
        "name": "big",
        "inputs": [{"name": "x", "shape": [1, 4]}],
        "layers": [{"type": "conv1d", "name": "c", "filters": 1, "kernel_size": 1, "weights": [[[1.0]]]}, pool],
    }
    x = np.array([[[3e38, 3e38, -3e38, -3e38]]], dtype=np.float32)
    report = nnspec.check(nnspec.from_dict(spec), inputs=x)
    assert report.passed and report.outputs[0].unbounded > 0
