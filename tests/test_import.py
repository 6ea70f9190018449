"""`nnspec import`: ONNX models lifted into specs, checked against the very files they came from.

Round trips go spec -> compile -> import for every layer type's examples and every activation, at the
opsets nnspec writes; models other tools write are in tests/test_import_exporters.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import nnspec
from nnspec.activations import REGISTRY, Choice
from nnspec.layers import LAYERS
from nnspec.onnxio.export import MIN_OPSET, max_opset, to_bytes, to_onnx
from nnspec.onnxio.importer import Staged, UnliftableModel, lift_model
from nnspec.runners import onnxruntime_max_opset

OPSETS = sorted({MIN_OPSET, 17, min(max_opset(), onnxruntime_max_opset())})
EXAMPLES = [
    pytest.param(name, example, id=f"{name}-{example['name']}")
    for name, entry in sorted(LAYERS.items())
    for example in entry.examples
]


def _compiled(tmp_path: Path, document: dict[str, Any], opset: int = 17) -> tuple[nnspec.Spec, Path]:
    spec = nnspec.from_dict(copy.deepcopy(document), base_dir=tmp_path)
    model = tmp_path / "model.onnx"
    model.write_bytes(to_bytes(to_onnx(nnspec.graph(spec), opset)))
    return spec, model


def _imported(tmp_path: Path, model: Path, **kwargs: Any) -> nnspec.Spec:
    staged = Staged(lift_model(model, weights_file="imported.npz", **kwargs), tmp_path / "imported.json")
    staged.commit()
    return nnspec.load(tmp_path / "imported.json")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_can_be_imported(name):
    assert callable(LAYERS[name].lift), f"layer type {name!r} has no lift: `nnspec import` cannot produce it"


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_compiled_examples_import_and_check_against_their_file(tmp_path, name, example, dtype, opset):
    spec, model = _compiled(tmp_path, {**example, "dtype": dtype}, opset)
    imported = _imported(tmp_path, model)
    original, lifted = nnspec.graph(spec), nnspec.graph(imported)
    assert [o.name for o in lifted.outputs] == [o.name for o in original.outputs]
    assert any(n.op == name for n in lifted.nodes) or name in ("dropout", "activation"), "the type was lifted as such"
    # every array the import holds is one the model stores, bit for bit (up to the layout)
    stored = {a.tobytes() for n in original.nodes for a in (*n.params.values(), *(p.T for p in n.params.values()))}
    for node in lifted.nodes:
        for key, array in node.params.items():
            assert np.ascontiguousarray(array).tobytes() in stored or np.all(array == 1) or not np.any(array), (
                node.name,
                key,
            )
    report = nnspec.check(imported, onnx_model=model)
    assert report.passed, str(report)


def _activation_settings() -> list[Any]:
    settings = []
    for name, entry in sorted(REGISTRY.items()):
        if name == "linear":
            continue
        params: dict[str, Any] = {}
        for key, default in entry.params.items():
            params[key] = default.values[-1] if isinstance(default, Choice) else round(float(default) * 0.75 + 0.05, 3)
        settings.append(pytest.param(name, {}, id=name))
        if params:
            settings.append(pytest.param(name, params, id=f"{name}-{'-'.join(map(str, params.values()))}"))
    return settings


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("activation", "params"), _activation_settings())
def test_every_activation_is_recognised_with_its_parameters(tmp_path, activation, params, dtype, opset):
    act: Any = {"name": activation, **params} if params else activation
    document = {
        "format": "nnspec/1",
        "name": "act",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [3]}],
        "layers": [
            {"type": "dense", "name": "h", "units": 4, "activation": act, "weights": {"init": "normal", "seed": 1}}
        ],
    }
    _, model = _compiled(tmp_path, document, opset)
    imported = _imported(tmp_path, model)
    (node,) = nnspec.graph(imported).nodes
    assert node.activation is not None
    assert node.activation.name == activation
    expected = {**REGISTRY[activation].defaults(), **params}
    assert dict(node.activation.params) == pytest.approx(expected)


def test_import_writes_spec_and_weights_and_checks(tmp_path, cli):
    _, model = _compiled(tmp_path, LAYERS["conv2d"].examples[0])
    result = cli("import", model, "-o", tmp_path / "net.json")
    assert result.exit_code == 0, result.output
    assert "checked against model.onnx: PASS" in result.stdout
    written = json.loads((tmp_path / "net.json").read_text())
    assert written["format"] == "nnspec/1"
    with np.load(tmp_path / "net.npz", allow_pickle=False) as arrays:
        keys = set(arrays.files)
    refs = {
        layer[k]["key"]
        for layer in written["layers"]
        for k in layer
        if isinstance(layer[k], dict) and "key" in layer[k]
    }
    assert refs == keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "net.json", "net.npz"]
    assert cli("check", tmp_path / "net.json", "--onnx", model).exit_code == 0


def _model(nodes: list[onnx.NodeProto], inits: list[np.ndarray], names: list[str], opset: int = 17) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph(
        nodes, "g", [x], [y], initializer=[numpy_helper.from_array(a, n) for a, n in zip(inits, names, strict=True)]
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    return model.SerializeToString()


def test_every_node_without_a_layer_is_listed_and_nothing_is_written(tmp_path, cli):
    w = np.ones((4, 4), np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
        helper.make_node("CumSum", ["h", "axis"], ["c"], name="running_total"),
        helper.make_node("TopK", ["c", "k"], ["y", "idx"], name="pick_best"),
    ]
    data = _model(nodes, [w, np.array(1, np.int64), np.array([2], np.int64)], ["w", "axis", "k"])
    (tmp_path / "m.onnx").write_bytes(data)
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "s.json")
    assert result.exit_code == 2
    assert "CumSum 'running_total'" in result.stderr and "TopK 'pick_best'" in result.stderr
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize(
    "content",
    [b"", b"not an onnx model at all", b"\x08\x07\x12\x00\xff\xff\xff", b"{}"],
    ids=["empty", "text", "junk", "json"],
)
def test_a_damaged_or_foreign_file_is_a_clean_error(tmp_path, cli, content):
    (tmp_path / "m.onnx").write_bytes(content)
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "s.json")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "s.json").exists()


def test_a_truncated_model_is_a_clean_error(tmp_path, cli):
    _, model = _compiled(tmp_path, LAYERS["dense"].examples[0])
    data = model.read_bytes()
    for cut in (len(data) // 3, len(data) - 7):
        model.write_bytes(data[:cut])
        result = cli("import", model, "-o", tmp_path / "s.json")
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


def test_external_data_is_read_only_inside_the_models_folder(tmp_path, cli):
    from onnx.external_data_helper import convert_model_to_external_data

    _, model = _compiled(tmp_path, LAYERS["dense"].examples[0])
    proto = onnx.load(model)
    convert_model_to_external_data(proto, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    onnx.save(proto, tmp_path / "ext.onnx")
    result = cli("import", tmp_path / "ext.onnx", "-o", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    outside = tmp_path / "inner"
    outside.mkdir()
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    onnx.save(proto, outside / "escape.onnx", save_as_external_data=False)
    result = cli("import", outside / "escape.onnx", "-o", outside / "s.json")
    assert result.exit_code == 2
    assert "inside the model's folder" in result.stderr


def test_outputs_cut_the_graph_to_what_they_need(tmp_path, cli):
    w = np.arange(16, dtype=np.float32).reshape(4, 4) / 10
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="fc", transB=1),
        helper.make_node("Softmax", ["h"], ["probabilities"], name="sm", axis=1),
        helper.make_node("ArgMax", ["h"], ["y"], name="pick", axis=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    outs = [
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4]),
        helper.make_tensor_value_info("y", TensorProto.INT64, ["N", 1]),
    ]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=[numpy_helper.from_array(w, "w")])
    opsets = [helper.make_opsetid("", 17)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    onnx.save(model, tmp_path / "m.onnx")
    refused = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "s.json")
    assert refused.exit_code == 2 and "ArgMax 'pick'" in refused.stderr
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "s.json", "--outputs", "probabilities")
    assert result.exit_code == 0, result.output
    spec = nnspec.load(tmp_path / "s.json")
    assert [o.name for o in nnspec.graph(spec).outputs] == ["probabilities"]
    unknown = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "t.json", "--outputs", "label")
    assert unknown.exit_code == 2 and "probabilities" in unknown.stderr


def test_an_old_opset_is_upgraded_and_said_so(tmp_path):
    w = (np.arange(12, dtype=np.float32).reshape(3, 4) - 6) / 7
    b = np.array([0.1, -0.2, 0.3], np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["y"], name="sm", axis=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(
        nodes, "old", [x], [y], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)
    onnx.save(model, tmp_path / "old.onnx")
    imported = lift_model(tmp_path / "old.onnx")
    description = imported.document["description"]
    assert "opset 9" in description and "upgraded from opset 9 to 13" in description.lower()
    layers = imported.document["layers"]
    assert [layer["type"] for layer in layers] == ["dense", "activation"]
    assert layers[0]["activation"] == "relu" and layers[1]["activation"] == "softmax"
    assert np.array_equal(imported.arrays[layers[0]["weights"]["key"]], w)


def test_an_unliftable_attribute_is_named(tmp_path):
    w = np.ones((4, 4), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], name="odd", transA=1)]
    (tmp_path / "m.onnx").write_bytes(_model(nodes, [w], ["w"]))
    with pytest.raises(UnliftableModel, match=r"Gemm 'odd': transA=1"):
        lift_model(tmp_path / "m.onnx")


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_compile_then_import_gives_the_same_network(tmp_path, name, example, dtype, opset):
    spec = nnspec.from_dict(copy.deepcopy({**example, "dtype": dtype}), base_dir=tmp_path)
    model = tmp_path / "model.onnx"
    model.write_bytes(to_bytes(nnspec.to_onnx(spec, opset)))  # carries the spec without its numbers
    imported = _imported(tmp_path, model)
    assert nnspec.graph(imported).fingerprint == nnspec.graph(spec).fingerprint


SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.json"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_example_spec_round_trips_with_its_hash(tmp_path, path, cli):
    assert cli("compile", path, "-o", tmp_path / "m.onnx", "--no-check").exit_code == 0
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "back.json")
    assert result.exit_code == 0, result.output
    back = nnspec.load(tmp_path / "back.json")
    assert nnspec.graph(back).fingerprint == nnspec.graph(nnspec.load(path)).fingerprint
    recorded = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert recorded["nnspec.spec_sha256"] == nnspec.graph(back).fingerprint


def test_an_edited_model_is_imported_as_it_now_is(tmp_path):
    spec, _ = _compiled(tmp_path, LAYERS["dense"].examples[0])
    model = nnspec.to_onnx(spec)
    target = next(t for t in model.graph.initializer if t.name == "hidden.weights")
    changed = numpy_helper.to_array(target) * np.float32(1.5)
    target.CopyFrom(numpy_helper.from_array(changed, "hidden.weights"))
    onnx.save(model, tmp_path / "edited.onnx")
    imported = _imported(tmp_path, tmp_path / "edited.onnx")
    assert np.array_equal(nnspec.graph(imported).node("hidden").params["weights"], changed)
    # a layer the recorded spec names but the graph no longer computes: lifted from the graph alone
    for node in model.graph.node:
        node.input[:] = ["renamed" if i == "hidden" else i for i in node.input]
        node.output[:] = ["renamed" if o == "hidden" else o for o in node.output]
    onnx.save(model, tmp_path / "rewired.onnx")
    lifted = lift_model(tmp_path / "rewired.onnx")
    assert "does not match its graph" in lifted.document["description"]


@pytest.mark.parametrize("keepdims", [0, 1])
def test_a_mean_over_every_spatial_axis_is_a_global_pool(tmp_path, keepdims):
    """PyTorch's dynamo exporter writes adaptive_avg_pool2d(1) as ReduceMean (then a Reshape to [N, C])."""
    w = (np.arange(6, dtype=np.float32).reshape(2, 3) - 2) / 3
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], name="mean", keepdims=keepdims)]
    pooled = "m"
    if keepdims:
        nodes.append(helper.make_node("Reshape", ["m", "shape"], ["flat"], name="view", allowzero=1))
        pooled = "flat"
    nodes.append(helper.make_node("Gemm", [pooled, "w"], ["y"], name="fc", transB=1))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    inits = [axes, numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 3], np.int64), "shape")]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    opsets = [helper.make_opsetid("", 18)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")
    spec = _imported(tmp_path, tmp_path / "m.onnx")
    assert [n.op for n in nnspec.graph(spec).nodes] == ["global_avg_pool", "dense"]
    assert nnspec.check(spec, onnx_model=tmp_path / "m.onnx").passed


def test_a_constant_that_would_fill_memory_is_not_folded(tmp_path):
    """ConstantOfShape asking for 2**40 numbers: declared sizes are read first; the node is left unfolded."""
    shape = numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64), "shape")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["huge"], name="bomb"),
        helper.make_node("Add", ["x", "huge"], ["y"], name="add"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph(nodes, "g", [x], [y], [shape])
    opsets = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")
    with pytest.raises(UnliftableModel, match="ConstantOfShape 'bomb'"):
        lift_model(tmp_path / "m.onnx")


def test_a_model_file_beyond_the_budgets_is_refused_unread(tmp_path, cli, monkeypatch):
    _, model = _compiled(tmp_path, LAYERS["dense"].examples[0])
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", "64")
    monkeypatch.setenv("NNSPEC_MAX_SPEC_BYTES", "64")
    result = cli("import", model, "-o", tmp_path / "s.json")
    assert result.exit_code == 2 and "refused unread" in result.stderr


def _save(path: Path, nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], x: list[Any], y: list[Any]) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        [numpy_helper.from_array(a, k) for k, a in inits.items()],
    )
    opsets = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), path)
    return path


def _random(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


IDIOMS = {
    "gemm_transB0_alpha_beta": (
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", alpha=0.5, beta=2.0)],
        {"w": _random(4, 3), "c": _random(1, 3, seed=1)},
        ["N", 4],
        ["N", 3],
        ["dense"],
    ),
    "transpose_then_matmul_then_add": (
        [
            helper.make_node("Transpose", ["w"], ["wt"], name="t", perm=[1, 0]),
            helper.make_node("MatMul", ["x", "wt"], ["h"], name="mm"),
            helper.make_node("Add", ["b", "h"], ["y"], name="bias"),
        ],
        {"w": _random(3, 4), "b": _random(3, seed=1)},
        ["N", 4],
        ["N", 3],
        ["dense"],
    ),
    "sum_of_three_and_dropout": (
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Tanh", ["x"], ["t"], name="tanh"),
            helper.make_node("Sum", ["x", "r", "t"], ["s"], name="sum"),
            helper.make_node("Dropout", ["s", "ratio"], ["y"], name="drop"),
        ],
        {"ratio": np.array(0.25, np.float32)},
        ["N", 4],
        ["N", 4],
        ["activation", "activation", "add", "dropout"],
    ),
    "pool1d_as_unsqueeze_pool2d_squeeze": (
        [
            helper.make_node("Unsqueeze", ["x", "axis"], ["u"], name="u"),
            helper.make_node("MaxPool", ["u"], ["p"], name="pool", kernel_shape=[1, 3], strides=[1, 2]),
            helper.make_node("Squeeze", ["p", "axis"], ["y"], name="s"),
        ],
        {"axis": np.array([2], np.int64)},
        ["N", 2, 9],
        ["N", 2, 4],
        ["max_pool1d"],
    ),
    "conv_same_upper_and_uneven_pads": (
        [
            helper.make_node("Conv", ["x", "w1"], ["c"], name="c1", auto_pad="SAME_UPPER", strides=[2, 2]),
            helper.make_node("Conv", ["c", "w2", "b2"], ["y"], name="c2", pads=[0, 1, 1, 2], group=2),
        ],
        {"w1": _random(4, 2, 3, 3), "w2": _random(4, 2, 2, 2, seed=1), "b2": _random(4, seed=2)},
        ["N", 2, 7, 7],
        ["N", 4, 4, 6],
        ["conv2d", "conv2d"],
    ),
}


@pytest.mark.parametrize("idiom", sorted(IDIOMS))
def test_exporter_idioms_are_lifted_and_check_against_their_file(tmp_path, idiom):
    nodes, inits, x, y, types = IDIOMS[idiom]
    model = _save(tmp_path / "m.onnx", nodes, inits, x, y)
    spec = _imported(tmp_path, model)
    assert [n.op for n in nnspec.graph(spec).nodes] == types
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed, str(report)


def test_an_import_that_does_not_check_writes_nothing(tmp_path, cli):
    """PyTorch's thresholded softplus (n itself above 20) is softplus to float32's precision, not float64's:
    in a float64 model the lifted spec disagrees with the file, and the check says so before anything is
    written."""
    nodes = [
        helper.make_node("Softplus", ["x"], ["sp"], name="sp"),
        helper.make_node("Greater", ["x", "threshold"], ["above"], name="gt"),
        helper.make_node("Where", ["above", "x", "sp"], ["y"], name="where"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 4])],
        [numpy_helper.from_array(np.array(20.0), "threshold")],
    )
    opsets = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / "m.onnx")
    result = cli("import", tmp_path / "m.onnx", "-o", tmp_path / "s.json")
    assert result.exit_code == 1, result.output
    assert "not written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    done = nnspec.import_onnx(tmp_path / "m.onnx", tmp_path / "s.json")
    assert done.spec is None and done.report is not None and not done.report.passed
    assert nnspec.import_onnx(tmp_path / "m.onnx", tmp_path / "s.json", check_model=False).spec is not None


@pytest.mark.parametrize("recorded", [False, True])
def test_a_scale_of_ones_is_the_default_unless_the_recorded_spec_names_it(tmp_path, recorded):
    """A batch norm's scale of exact ones is the format's default: lifted from a graph alone it is left out
    (a shorter spec, the same numbers); where the model's recorded spec names it, it is kept (the same hash)."""
    document = {
        "format": "nnspec/1",
        "name": "bn",
        "inputs": [{"name": "x", "shape": [3, 2]}],
        "layers": [
            {"type": "batch_norm", "name": "bn", "mean": [0.5, 0, -1], "variance": [1, 2, 0.5], "scale": [1, 1, 1]}
        ],
    }
    spec, model = _compiled(tmp_path, document)
    if recorded:
        model.write_bytes(to_bytes(nnspec.to_onnx(spec)))
    (node,) = nnspec.graph(_imported(tmp_path, model)).nodes
    assert ("scale" in node.params) is recorded
    assert "offset" not in node.params  # zeros, the default, in neither
