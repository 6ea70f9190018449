"""Integer inputs (token ids) end to end: the spec, the embedding layer, feeds and files, default check inputs,
the ONNX interface, and out-of-range ids refused in `run` and `check` before anything runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import nnspec
from nnspec.activations import Precision
from nnspec.bounds import propagate
from nnspec.errors import InputDataError, SpecError
from nnspec.feeds import check_feeds, id_ranges
from nnspec.files import load_arrays
from nnspec.harness import interface_problems
from nnspec.inputs import edge_case, random_cases
from nnspec.onnxio.export import elem_type_of
from nnspec.onnxio.model import interface

TOKENS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "tokens",
    "inputs": [{"name": "tokens", "shape": [4, 3], "dtype": "int64"}],
    "layers": [
        {
            "type": "embedding",
            "name": "embed",
            "input_dim": 1000,
            "output_dim": 5,
            "weights": {"init": "normal", "seed": 1, "std": 1.0},
        },
        {"type": "dense", "name": "out", "units": 2, "weights": {"init": "glorot_uniform", "seed": 2}},
    ],
}


def tokens(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(TOKENS), **changes}


def graph_of(spec: dict[str, Any]) -> nnspec.Graph:
    return nnspec.graph(nnspec.from_dict(spec))


def spec_error(spec: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        graph_of(spec)
    return str(info.value)


# --- the spec and the layer ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_embedding_maps_ids_to_vectors(dtype):
    g = graph_of(tokens(inputs=[{"name": "tokens", "shape": [4, 3], "dtype": dtype}]))
    assert g.inputs[0].dtype == dtype
    embed = g.nodes[0]
    assert embed.shape == (4, 3, 5) and embed.params["weights"].shape == (1000, 5)
    assert embed.attrs == {"input_dim": 1000}
    assert nnspec.layers.LAYERS["embedding"].formula(embed) == "E[tokens]"


def test_embedding_kernel_against_onnx_reference_gather():
    g = graph_of(tokens())
    table = g.nodes[0].params["weights"]
    ids = np.array([[[0, 999, 5], [1, 2, 3], [7, 7, 7], [998, 0, 1]]])
    got = nnspec.NumpyModel(g).run({"tokens": ids}, trace=True)["embed"]
    x = helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 4, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 3, 5])
    node = helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y], initializer=[numpy_helper.from_array(table, "table")]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"ids": ids})[0])
    assert got[0, 0, 1].tobytes() == table[999].tobytes()


def test_a_float_layer_may_not_read_ids_nor_an_embedding_floats():
    dense_on_ids = tokens(layers=[{"type": "dense", "name": "d", "units": 2, "weights": {"init": "ones"}}])
    message = spec_error(dense_on_ids)
    assert "layers[0]: expected a source of numbers of the network's dtype for a dense layer" in message
    assert "input 'tokens', which holds int64 (only embedding layers read ids)" in message
    embedding_on_floats = tokens(inputs=[{"name": "tokens", "shape": [4, 3]}])
    message = spec_error(embedding_on_floats)
    assert "expected a source of integer ids for a embedding layer, found input 'tokens', which holds floats" in message


def test_embedding_errors_name_the_field():
    wrong = tokens()
    wrong["layers"][0]["weights"] = [[1.0, 2.0]] * 3
    assert "layers[0].weights: expected shape [1000, 5]" in spec_error(wrong)
    zero = tokens()
    zero["layers"][0]["input_dim"] = 0
    assert "layers[0].input_dim: expected an integer >= 1, found 0" in spec_error(zero)
    float_dtype = tokens(inputs=[{"name": "tokens", "shape": [3], "dtype": "float64"}])
    assert "inputs[0].dtype: expected the network's dtype 'float32' or an integer type" in spec_error(float_dtype)


def test_the_bound_is_exact_and_the_check_passes():
    g = graph_of(tokens())
    trace = propagate(g, {"tokens": np.array([[[0, 1, 2]] * 4])}, Precision.of(np.float32))
    assert not trace.errors["embed"].any() and trace.values["embed"].shape == (1, 4, 3, 5)
    report = nnspec.check(nnspec.from_dict(tokens()))
    assert report.passed and [s.name for s in report.steps] == ["embed", "out"]
    assert report.steps[0].max_abs_error == 0.0


def test_the_text_classifier_example_passes():
    path = Path(__file__).resolve().parent.parent / "specs" / "text_classifier.json"
    report = nnspec.check(path)
    assert report.passed, str(report)


# --- feeds: dtypes, whole numbers, ranges ------------------------------------------------------------


def test_integer_feeds_keep_their_dtype_from_any_integer_or_whole_float():
    g = graph_of(tokens(inputs=[{"name": "tokens", "shape": [4, 3], "dtype": "int32"}]))
    for given in (np.ones((2, 4, 3), np.uint8), np.ones((2, 4, 3), np.int64), np.ones((2, 4, 3), np.float64)):
        fed = check_feeds(g, {"tokens": given})["tokens"]
        assert fed.dtype == np.int32 and (fed == 1).all()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (2.5, "input 'tokens': expected integer ids (int64), found 2.5 at [1, 2, 0]"),
        (np.nan, "input 'tokens': expected integer ids (int64), found nan at [1, 2, 0]"),
        (1000, "input 'tokens': expected ids in [0, 1000) for layer 'embed' (layers[0]), found 1000 at [1, 2, 0]"),
        (-1, "input 'tokens': expected ids in [0, 1000) for layer 'embed' (layers[0]), found -1 at [1, 2, 0]"),
        (2**40, f"input 'tokens': expected ids in [0, 1000) for layer 'embed' (layers[0]), found {2**40} at [1, 2, 0]"),
    ],
)
def test_bad_ids_are_refused_with_input_position_and_value(value, message):
    ids = np.zeros((2, 4, 3), np.float64 if isinstance(value, float) else np.int64)
    ids[1, 2, 0] = value
    with pytest.raises(InputDataError) as info:
        check_feeds(graph_of(tokens()), {"tokens": ids})
    assert str(info.value) == message


def test_several_embeddings_on_one_input_take_the_smallest_table():
    spec = tokens(
        layers=[
            {"type": "embedding", "name": "big", "input_dim": 100, "output_dim": 2, "weights": {"init": "ones"}},
            {
                "type": "embedding",
                "name": "small",
                "input_dim": 7,
                "output_dim": 2,
                "weights": {"init": "normal", "seed": 3},
                "inputs": ["tokens"],
            },
            {"type": "add", "name": "sum", "inputs": ["big", "small"]},
        ]
    )
    g = graph_of(spec)
    assert id_ranges(g)["tokens"].size == 7 and id_ranges(g)["tokens"].layer == "small"
    ids = np.zeros((1, 4, 3), np.int64)
    ids[0, 3, 2] = 7
    with pytest.raises(
        InputDataError, match=r"expected ids in \[0, 7\) for layer 'small' \(layers\[1\]\), found 7 at \[0, 3, 2\]"
    ):
        check_feeds(g, {"tokens": ids})
    for case in random_cases(g):
        assert case.feeds["tokens"].max() <= 6
    assert nnspec.check(nnspec.from_dict(spec)).passed


def test_an_integer_input_read_by_no_layer_takes_any_id_its_dtype_holds():
    spec = tokens(
        inputs=[{"name": "x", "shape": [2]}, {"name": "tokens", "shape": [4, 3], "dtype": "int32"}],
        layers=[{"type": "dense", "name": "d", "units": 1, "weights": {"init": "ones"}}],
    )
    g = graph_of(spec)
    fed = check_feeds(g, {"x": np.ones((1, 2)), "tokens": np.full((1, 4, 3), 123456)})
    assert fed["tokens"].dtype == np.int32
    with pytest.raises(InputDataError, match=r"expected ids that fit in int32, found 2147483648 at \[0, 0, 0\]"):
        check_feeds(g, {"x": np.ones((1, 2)), "tokens": np.full((1, 4, 3), 2**31)})


# --- default inputs ---------------------------------------------------------------------------------


def test_default_inputs_draw_valid_ids_and_hit_both_ends():
    g = graph_of(tokens(inputs=[{"name": "tokens", "shape": [4, 3], "dtype": "int32"}]))
    cases = random_cases(g)
    for case in cases:
        ids = case.feeds["tokens"]
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 1000
    assert len(np.unique(cases[2].feeds["tokens"])) > 100  # batch 64: spread over the table
    edges = edge_case(g)
    assert edges.label == "edges: ids 0, 999, 1, 998, 499 of 'tokens'"
    assert {0, 999, 1, 998, 499} == set(np.unique(edges.feeds["tokens"]))
    assert (edges.feeds["tokens"][0] == 0).all() and (edges.feeds["tokens"][1] == 999).all()
    again = random_cases(g)
    assert all(a.feeds["tokens"].tobytes() == b.feeds["tokens"].tobytes() for a, b in zip(cases, again, strict=True))


def test_mixed_inputs_label_both_kinds_of_edge():
    spec = tokens(
        inputs=[{"name": "tokens", "shape": [3], "dtype": "int64"}, {"name": "x", "shape": [3, 2]}],
        layers=[
            {"type": "embedding", "name": "e", "input_dim": 2, "output_dim": 2, "weights": {"init": "ones"}},
            {"type": "add", "name": "sum", "inputs": ["e", "x"]},
        ],
    )
    edges = edge_case(graph_of(spec))
    assert edges.label == "edges: 0, +-1, +-1e3; ids 0, 1, 1, 0, 0 of 'tokens'"
    assert edges.feeds["x"].dtype == np.float32 and edges.feeds["tokens"].dtype == np.int64


# --- ONNX interface ---------------------------------------------------------------------------------


def test_the_onnx_input_has_the_integer_element_type():
    for dtype, elem in (("int64", onnx.TensorProto.INT64), ("int32", onnx.TensorProto.INT32)):
        spec = nnspec.from_dict(tokens(inputs=[{"name": "tokens", "shape": [4, 3], "dtype": dtype}]))
        model = nnspec.to_onnx(spec)
        assert model.graph.input[0].type.tensor_type.elem_type == elem
        assert [n.op_type for n in model.graph.node][0] == "Gather"
        g = nnspec.graph(spec)
        assert interface_problems(g, interface(model), elem_type_of(g.dtype)) == []


def test_a_model_with_a_float_input_where_ids_are_expected_is_an_interface_problem():
    spec = nnspec.from_dict(tokens())
    model = nnspec.to_onnx(spec)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    g = nnspec.graph(spec)
    problems = interface_problems(g, interface(model), elem_type_of(g.dtype))
    assert problems == ["input 'tokens' has ONNX element type 1, expected 7 (int64)"]


# --- files and the CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".json", ".csv"])
def test_run_reads_ids_from_every_file_format(cli, write_spec, tmp_path, suffix):
    ids = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8], [997, 998, 999]]] * 2)
    path = tmp_path / f"ids{suffix}"
    if suffix == ".npy":
        np.save(path, ids)
    elif suffix == ".json":
        path.write_text(json.dumps(ids.tolist()))
    else:
        path.write_text("\n".join(",".join(map(str, row.ravel())) for row in ids))
    g = graph_of(tokens())
    assert check_feeds(g, load_arrays(path, g.inputs))["tokens"].dtype == np.int64
    result = cli("run", write_spec(tokens()), "--input", path)
    assert result.exit_code == 0, result.output
    expected = nnspec.to_numpy(nnspec.from_dict(tokens()))(ids)
    assert np.array2string(expected[0, 0], threshold=99)[:8] in result.output


@pytest.mark.parametrize("command", ["run", "check"])
def test_out_of_range_ids_are_exit_2_in_run_and_check(cli, write_spec, tmp_path, command):
    ids = np.zeros((4, 4, 3), np.int64)
    ids[3, 1, 2] = 1000
    np.save(tmp_path / "ids.npy", ids)
    flag = "--input" if command == "run" else "--inputs"
    result = cli(command, write_spec(tokens()), flag, tmp_path / "ids.npy")
    assert result.exit_code == 2
    assert (
        "input 'tokens': expected ids in [0, 1000) for layer 'embed' (layers[0]), found 1000 at [3, 1, 2]"
        in result.stderr
    )
    assert "Traceback" not in result.output


def test_a_reproduction_of_an_embedding_keeps_its_integer_input(tmp_path):
    spec = nnspec.load(Path(__file__).resolve().parent.parent / "specs" / "text_classifier.json")
    model = nnspec.to_onnx(spec)
    table = next(i for i in model.graph.initializer if i.name == "embed.weights")
    changed = numpy_helper.to_array(table).copy()
    changed[3, 2] *= 1.5
    table.CopyFrom(numpy_helper.from_array(changed, table.name))
    report = nnspec.check(spec, onnx_model=model, repro=tmp_path / "repro")
    assert not report.passed and report.divergence["layer"] == "embed"
    cut = nnspec.load(tmp_path / "repro" / "spec.json")
    assert [(i.name, i.dtype) for i in cut.inputs] == [("tokens", "int64")]
