"""`nnspec check SPEC --onnx FILE` on models from elsewhere: other names (`onnx_names`), a fixed batch
dimension, and files onnxruntime cannot open (checked with onnx's reference evaluator instead)."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnspec

W1 = [[0.5, -1.0, 0.25, 2.0], [1.5, 0.5, -0.75, 0.0], [-0.5, 1.0, 1.0, -1.25]]
B1 = [0.1, -0.2, 0.3]
W2 = [[1.0, -2.0, 0.5], [0.25, 0.75, -1.5]]
B2 = [0.05, -0.05]

# A 4-3-2 MLP, weights inline: what `nnspec import` makes of a PyTorch export of Linear-ReLU-Linear.
MLP: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "mlp",
    "inputs": [{"name": "x", "shape": [4]}],
    "layers": [
        {"type": "dense", "name": "hidden", "units": 3, "activation": "relu", "weights": W1, "bias": B1},
        {"type": "dense", "name": "probs", "units": 2, "weights": W2, "bias": B2},
    ],
}
RENAMED = {"x": "onnx::Gemm_0", "probs": "output:0"}


def mlp_model(
    *,
    inputs: str = "onnx::Gemm_0",
    output: str = "output:0",
    batch: int | str = "N",
    opset: int = 17,
    w2: list[list[float]] = W2,
) -> bytes:
    """The MLP as an exporter writes it: Gemm (transB=1) + Relu + Gemm, its own tensor names."""
    inits = [
        numpy_helper.from_array(np.array(a, np.float32), name)
        for a, name in ((W1, "fc1.weight"), (B1, "fc1.bias"), (w2, "fc2.weight"), (B2, "fc2.bias"))
    ]
    # Gemm-6 broadcasts its bias only when asked to; later versions always do.
    gemm = {"transB": 1, **({"broadcast": 1} if opset < 7 else {})}
    nodes = [
        helper.make_node("Gemm", [inputs, "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"], **gemm),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"]),
        helper.make_node("Gemm", ["/relu/Relu_output_0", "fc2.weight", "fc2.bias"], [output], **gemm),
    ]
    graph_inputs = [helper.make_tensor_value_info(inputs, TensorProto.FLOAT, [batch, 4])]
    # IR version 3 (opset 6's era) requires every initializer to be a graph input as well.
    ir = 3 if opset < 7 else 8
    if ir < 4:
        graph_inputs += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    graph = helper.make_graph(
        nodes, "main_graph", graph_inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, [batch, 2])], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def spec_with(**top: Any) -> dict[str, Any]:
    return {**copy.deepcopy(MLP), **top}


def wrong_w2() -> list[list[float]]:
    changed = copy.deepcopy(W2)
    changed[1][2] = -1.4  # one weight of the output layer, as a damaged or stale file would hold
    return changed


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, for substring checks."""
    return " ".join(text.split())


# --- onnx_names --------------------------------------------------------------------------------


def test_renamed_model_passes_with_onnx_names():
    spec = nnspec.from_dict(spec_with(onnx_names=RENAMED))
    report = nnspec.check(spec, onnx_model=mlp_model())
    assert report.passed, str(report)
    assert [o.name for o in report.outputs] == ["probs"]  # reports speak of the spec's names


def test_renamed_model_without_onnx_names_is_an_interface_problem():
    report = nnspec.check(nnspec.from_dict(spec_with()), onnx_model=mlp_model())
    assert not report.passed
    assert any("no input 'x'" in p and "onnx::Gemm_0" in p and "onnx_names" in p for p in report.problems)
    assert any("no output 'probs'" in p and "output:0" in p for p in report.problems)


def test_onnx_names_do_not_hide_a_wrong_weight(cli, write_spec, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(mlp_model(w2=wrong_w2()))
    result = cli("check", write_spec(spec_with(onnx_names=RENAMED)), "--onnx", path)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout and "probs" in result.stdout


def test_no_reproduction_is_cut_from_a_renamed_model(tmp_path):
    spec = nnspec.from_dict(spec_with(onnx_names=RENAMED))
    report = nnspec.check(spec, onnx_model=mlp_model(w2=wrong_w2()), repro=tmp_path / "repro")
    assert not report.passed and not (tmp_path / "repro").exists()
    assert any(n.startswith("no reproduction written: the model names its values otherwise") for n in report.notes)


def test_a_problem_names_the_model_name_in_parentheses():
    model = onnx.load_from_string(mlp_model())
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5  # declares 5 features, the spec 4
    report = nnspec.check(nnspec.from_dict(spec_with(onnx_names=RENAMED)), onnx_model=model)
    assert report.problems == ["input 'x' ('onnx::Gemm_0' in the model) has dims ['N', 5], expected ['N', 4]"]


@pytest.mark.parametrize(
    ("names", "path", "words"),
    [
        ({"y": "onnx::Gemm_0"}, "onnx_names.y", "found unknown 'y'"),
        ({"hidden": "/fc1/Gemm_output_0"}, "onnx_names.hidden", "a layer that is not an output"),
        ({"x": ""}, "onnx_names.x", "1 to 1024 characters"),
        ({"x": "a" * 1025}, "onnx_names.x", "1 to 1024 characters, found 1,025"),
        ({"x": 3}, "onnx_names.x", "found a number"),
    ],
    ids=["unknown", "hidden-layer", "empty", "too-long", "not-a-string"],
)
def test_bad_onnx_names_are_exit_2_with_the_path(cli, write_spec, tmp_path, names, path, words):
    model = tmp_path / "model.onnx"
    model.write_bytes(mlp_model())
    result = cli("check", write_spec(spec_with(onnx_names=names)), "--onnx", model)
    assert result.exit_code == 2, result.output
    assert f"{path}: expected" in result.stderr and words in flat(result.stderr)
    assert "Traceback" not in result.output


def test_two_inputs_may_not_share_a_model_name():
    two = spec_with(
        inputs=[{"name": "a", "shape": [2]}, {"name": "b", "shape": [2]}],
        layers=[{"type": "concat", "name": "both", "inputs": ["a", "b"]}],
        onnx_names={"a": "b"},
    )
    with pytest.raises(nnspec.SpecError, match=r"onnx_names\.a: expected each input to have its own name"):
        nnspec.from_dict(two)


def test_onnx_names_are_kept_by_the_canonical_dump_and_left_out_of_the_fingerprint():
    plain, renamed = nnspec.from_dict(spec_with()), nnspec.from_dict(spec_with(onnx_names=RENAMED))
    assert json.loads(renamed.to_json())["onnx_names"] == RENAMED
    assert "onnx_names" not in json.loads(plain.to_json())
    assert nnspec.graph(renamed).fingerprint == nnspec.graph(plain).fingerprint
    assert nnspec.graph(renamed).onnx_names == RENAMED


def test_a_fresh_export_ignores_onnx_names():
    spec = nnspec.from_dict(spec_with(onnx_names=RENAMED))
    model = nnspec.to_onnx(spec)
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["probs"]
    assert nnspec.check(spec).passed


def test_schema_describes_onnx_names(cli):
    result = cli("schema")
    assert result.exit_code == 0
    field = json.loads(result.stdout)["properties"]["onnx_names"]
    assert "ONNX model" in field["description"]


def test_compiled_then_renamed_model_is_still_checked_layer_by_layer():
    """An nnspec model whose input and output were renamed afterwards: same hash, every layer stepped."""
    spec = nnspec.from_dict(spec_with(onnx_names={"x": "input.1", "probs": "dense_2/BiasAdd:0"}))
    model = nnspec.to_onnx(nnspec.from_dict(spec_with()))
    renames = {"x": "input.1", "probs": "dense_2/BiasAdd:0"}
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed, str(report)
    assert [s.name for s in report.steps] == ["hidden", "probs"]  # 'probs' is the model's renamed output
    assert not any("hash" in n for n in report.notes)


# --- a fixed batch dimension -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2])
def test_fixed_batch_model_passes_through_the_cli(cli, write_spec, tmp_path, batch):
    path = tmp_path / "model.onnx"
    path.write_bytes(mlp_model(batch=batch))
    result = cli("check", write_spec(spec_with(onnx_names=RENAMED)), "--onnx", path)
    assert result.exit_code == 0, result.output
    note = f"the model accepts batches of {batch} only (its inputs' first dim is fixed): run in chunks of {batch}"
    assert note in flat(result.stdout)


def test_fixed_batch_with_an_odd_row_count_of_given_inputs(cli, write_spec, tmp_path):
    path, x = tmp_path / "model.onnx", tmp_path / "x.npy"
    path.write_bytes(mlp_model(batch=2))
    np.save(x, np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
    result = cli("check", write_spec(spec_with(onnx_names=RENAMED)), "--onnx", path, "--inputs", x)
    assert result.exit_code == 0, result.output
    assert "given" in result.stdout and "run in chunks of 2" in flat(result.stdout)


def test_fixed_batch_does_not_hide_a_wrong_weight(cli, write_spec, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(mlp_model(batch=2, w2=wrong_w2()))
    result = cli("check", write_spec(spec_with(onnx_names=RENAMED)), "--onnx", path)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout


def test_chunked_rows_come_back_in_order():
    """The padded rows' outputs are dropped, and row i of the result is row i of the input."""
    x = np.random.default_rng(1).normal(size=(7, 4)).astype(np.float32)
    spec = nnspec.from_dict(spec_with(onnx_names=RENAMED))
    report = nnspec.check(spec, onnx_model=mlp_model(batch=2), inputs=x, rtol=0, atol=0)
    assert report.passed, str(report)
    assert report.outputs[0].elements == 7 * 2


def test_different_fixed_first_dims_are_a_problem():
    model = onnx.load_from_string(mlp_model(batch=2))
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 3
    report = nnspec.check(nnspec.from_dict(spec_with(onnx_names=RENAMED)), onnx_model=model)
    assert not report.passed
    assert report.problems == [
        "expected one fixed batch size >= 1 for every input and output whose first dim is fixed, found "
        "input 'x' ('onnx::Gemm_0' in the model) 2, output 'probs' ('output:0' in the model) 3"
    ]


def test_fixed_batch_of_an_nnspec_model_holds_layer_by_layer_too():
    """The traced runner (every layer's output exposed) is run in chunks as well."""
    spec = nnspec.from_dict(spec_with())
    model = nnspec.to_onnx(spec)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed, str(report)
    assert [s.name for s in report.steps] == ["hidden", "probs"] and all(s.elements for s in report.steps)
    assert any("run in chunks of 1" in n for n in report.notes)


# --- a model onnxruntime cannot open ------------------------------------------------------------


def _onnxruntime_refuses(data: bytes) -> bool:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    try:
        onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception:
        return True
    return False


def test_opset_6_model_is_checked_by_the_reference_evaluator(cli, write_spec, tmp_path):
    data = mlp_model(opset=6)
    if not _onnxruntime_refuses(data):
        pytest.xfail(f"onnxruntime {onnxruntime.__version__} runs Gemm-6: no fallback to exercise")
    path = tmp_path / "old.onnx"
    path.write_bytes(data)
    result = cli("check", write_spec(spec_with(onnx_names=RENAMED)), "--onnx", path)
    assert result.exit_code == 0, result.output
    assert f"onnxruntime {onnxruntime.__version__} cannot run this model (" in flat(result.stdout)
    assert "Gemm-6" in flat(result.stdout)
    assert "checked with onnx's reference evaluator instead" in flat(result.stdout)
    assert "onnx-reference vs numpy" in flat(result.stdout)


def test_opset_6_model_with_a_wrong_weight_still_fails():
    data = mlp_model(opset=6, w2=wrong_w2())
    if not _onnxruntime_refuses(data):
        pytest.xfail(f"onnxruntime {onnxruntime.__version__} runs Gemm-6: no fallback to exercise")
    report = nnspec.check(nnspec.from_dict(spec_with(onnx_names=RENAMED)), onnx_model=data)
    assert not report.passed and report.candidate == "onnx-reference"


def test_a_model_neither_runtime_can_run_is_exit_2_naming_both(cli, write_spec, tmp_path):
    node = helper.make_node("Mystery", ["x"], ["probs"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    result = cli("check", write_spec(spec_with()), "--onnx", path)
    assert result.exit_code == 2, result.output
    message = flat(result.stderr)
    assert "no runner can run this model" in message and "Mystery" in message
    assert f"onnxruntime {onnxruntime.__version__} cannot" in message and "reference evaluator" in message
    assert "Traceback" not in result.output


POOL64: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "pool64",
    "dtype": "float64",
    "inputs": [{"name": "x", "shape": [1, 6]}],
    "layers": [{"type": "avg_pool1d", "name": "y", "pool_size": 2}],
}


def test_a_given_float64_model_without_onnxruntime_kernels_falls_back_but_a_fresh_export_does_not():
    """onnxruntime's CPU provider has no float64 AveragePool: a given file is checked by the reference
    evaluator (with the note); nnspec's own export keeps the error that names --runner onnx-reference."""
    spec = nnspec.from_dict(POOL64)
    with pytest.raises(nnspec.NNSpecError, match="--runner onnx-reference"):
        nnspec.check(spec)
    report = nnspec.check(spec, onnx_model=nnspec.to_onnx(spec))
    assert report.passed and report.candidate == "onnx-reference", str(report)
    assert any("no AveragePool-" in n and "reference evaluator instead" in n for n in report.notes)


@pytest.mark.parametrize("ir", [3, 8], ids=["initializers-as-inputs", "initializers"])
def test_a_traced_model_is_the_model_with_its_values_as_outputs_typed_as_inference_types_them(ir):
    """with_outputs appends the outputs to the model's own bytes and infers their types without the large
    weights: the result must parse as the model plus one output per value, each typed as shape inference on
    the whole model types it (a Reshape reads its small shape initializer), and onnxruntime must return them."""
    from nnspec.onnxio.model import with_outputs

    rng = np.random.default_rng(5)
    weights = rng.standard_normal((300, 4)).astype(np.float32)  # more numbers than inference is given
    inits = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-1, 2, 2], np.int64), "shape")]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Reshape", ["h", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["a"]),
        helper.make_node("ReduceSum", ["a"], ["y"], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 300])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits] if ir < 4 else []
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    assert list(inferred["r"].type.tensor_type.shape.dim)[1].dim_value == 2  # the shape's values were read

    traced = with_outputs(model.SerializeToString(), ["h", "r", "a", "x", "y", "r"])
    expected = copy.deepcopy(model)
    expected.graph.output.extend(inferred[name] for name in ("h", "r", "a"))  # not the input, nor y again
    assert onnx.load_from_string(traced) == expected
    x = rng.standard_normal((3, 300)).astype(np.float32)
    session = onnxruntime.InferenceSession(traced, providers=["CPUExecutionProvider"])
    y, h, r, a = session.run(["y", "h", "r", "a"], {"x": x})
    np.testing.assert_allclose(h, x @ weights, rtol=1e-5, atol=1e-4)
    assert r.shape == (3, 2, 2) and np.array_equal(a, np.maximum(r, 0)) and np.isclose(y, a.sum(), rtol=1e-5)


def test_a_traced_model_with_external_weights_keeps_its_arrays():
    from nnspec.onnxio.export import export
    from nnspec.onnxio.model import ModelData, with_outputs

    rng = np.random.default_rng(6)
    wide = copy.deepcopy(MLP)  # a hidden layer of 64: its weights go to external data
    wide["layers"][0] |= {"units": 64, "weights": rng.standard_normal((64, 4)).tolist(), "bias": [0.0] * 64}
    wide["layers"][1]["weights"] = rng.standard_normal((2, 64)).tolist()
    data = export(nnspec.graph(nnspec.from_dict(wide))).data()
    assert data.weights, "expected weights stored as external data"
    traced = with_outputs(data, ["hidden", "probs"])
    assert isinstance(traced, ModelData) and traced.weights is data.weights
    inferred = {
        v.name: v for v in onnx.shape_inference.infer_shapes(onnx.load_from_string(data.proto)).graph.value_info
    }
    assert list(onnx.load_from_string(traced.proto).graph.output) == [
        *onnx.load_from_string(data.proto).graph.output,
        inferred["hidden"],
    ]
