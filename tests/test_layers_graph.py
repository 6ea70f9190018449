"""Merges (add, multiply, concat), moves (flatten, reshape, transpose, dropout), and relu6 / hard_swish:
their shape rules and messages, their kernels against loops written out here, their bounds on tiny cases
worked by hand, and faults in the exported model that the check must catch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

import nnspec
from nnspec.activations import REGISTRY, Activation, Precision
from nnspec.affine import Affine, Source
from nnspec.layers import LAYERS
from nnspec.onnxio.export import MIN_OPSET, max_opset
from nnspec.runners import onnxruntime_max_opset

OPSETS = sorted({MIN_OPSET, 17, min(max_opset(), onnxruntime_max_opset())})
F32 = Precision.of("float32")


def network(inputs: dict[str, list[int]], *layers: dict[str, Any], dtype: str = "float32", **extra: Any) -> dict:
    """A whole spec: inputs by name and shape, then the layers."""
    return {
        "format": "nnspec/1",
        "name": "t",
        "dtype": dtype,
        "inputs": [{"name": k, "shape": v} for k, v in inputs.items()],
        "layers": list(layers),
        **extra,
    }


def dense(name: str, units: int, inputs: list[str] | None = None, activation: str = "relu", seed: int = 1) -> dict:
    layer = {"type": "dense", "name": name, "units": units, "activation": activation}
    layer |= {"weights": {"init": "glorot_uniform", "seed": seed}, "bias": {"init": "normal", "seed": seed + 50}}
    return layer | ({"inputs": inputs} if inputs else {})


def error_of(data: dict) -> str:
    with pytest.raises(nnspec.SpecError) as caught:
        nnspec.from_dict(data)
    return str(caught.value)


def run(data: dict, **feeds: np.ndarray) -> np.ndarray:
    """The NumPy model's only output."""
    model = nnspec.to_numpy(nnspec.from_dict(data))
    return model.run(feeds)[model.output_names[0]]


# --- shape rules and their messages ------------------------------------------------------------

H1_H2 = (dense("h1", 8, ["x"]), dense("h2", 4, ["x"]))


@pytest.mark.parametrize("kind", ["add", "multiply"])
def test_a_merge_of_different_shapes_lists_every_input(kind: str) -> None:
    data = network({"x": [3]}, *H1_H2, {"type": kind, "inputs": ["h1", "h2"]})
    assert error_of(data) == "layers[2].inputs: expected inputs of one shape, found h1 [8], h2 [4]"
    data = network({"x": [3], "y": [8]}, *H1_H2, {"type": kind, "inputs": ["h1", "y", "h2"]})
    assert error_of(data) == "layers[2].inputs: expected inputs of one shape, found h1 [8], y [8], h2 [4]"


def test_a_merge_needs_two_sources() -> None:
    message = error_of(network({"x": [3]}, dense("h1", 3), {"type": "add"}))
    assert message.startswith("layers[1].inputs: expected 2 or more source(s) for a add layer, found 1")


def test_concat_along_an_axis_where_other_axes_differ() -> None:
    data = network({"a": [2, 3], "b": [4, 2]}, {"type": "concat", "inputs": ["a", "b"], "axis": 1})
    assert error_of(data) == (
        "layers[0].inputs: expected inputs whose shapes agree except along axis 1 (the batch is axis 0), "
        "found a [2, 3], b [4, 2]"
    )
    data = network({"a": [2, 3], "b": [3]}, {"type": "concat", "inputs": ["a", "b"]})
    assert error_of(data) == "layers[0].inputs: expected inputs of one rank, found a [2, 3], b [3]"


@pytest.mark.parametrize(
    ("axis", "why"),
    [
        (0, ", found 0, the batch (no layer may merge it)"),
        (-3, ", found -3, the batch (no layer may merge it)"),
        (3, " (the batch is axis 0), found 3"),
        (-4, " (the batch is axis 0), found -4"),
    ],
)
def test_concat_refuses_the_batch_axis_and_axes_out_of_range(axis: int, why: str) -> None:
    data = network({"a": [2, 3], "b": [2, 3]}, {"type": "concat", "inputs": ["a", "b"], "axis": axis})
    assert error_of(data) == f"layers[0].axis: expected an axis from 1 to 2 or from -2 to -1 of a value [N, 2, 3]{why}"


def test_reshape_sizes_that_do_not_multiply_out_name_both_products() -> None:
    data = network({"x": [2, 4]}, {"type": "reshape", "shape": [3, 2]})
    assert error_of(data) == (
        "layers[0].shape: expected sizes that multiply to the input's size (the input 'x' [2, 4]: 2 x 4 = 8), "
        "found [3, 2]: 3 x 2 = 6"
    )
    data = network({"x": [2, 4]}, {"type": "reshape", "shape": [3, -1]})
    assert error_of(data) == (
        "layers[0].shape: expected sizes whose product divides the input's size (the input 'x' [2, 4]: 2 x 4 = 8), "
        "found [3, -1], whose other sizes multiply to 3"
    )


def test_reshape_allows_one_inferred_size_and_no_zero() -> None:
    data = network({"x": [2, 4]}, {"type": "reshape", "shape": [-1, -1]})
    assert error_of(data) == "layers[0].shape: expected at most one -1 (inferred size), found 2 in [-1, -1]"
    data = network({"x": [2, 4]}, {"type": "reshape", "shape": [8, 0]})
    assert error_of(data) == "layers[0].shape[1]: expected a positive size or -1 (inferred), found 0"
    data = network({"x": [2, 4]}, {"type": "reshape", "shape": [-2, -4]})
    assert error_of(data) == "layers[0].shape[0]: expected a positive size or -1 (inferred), found -2"


@pytest.mark.parametrize("perm", [[0, 1], [0, 1, 1], [0, 1, 3], [0, 1, 2, 3]])
def test_transpose_refuses_what_is_not_a_permutation_of_all_axes(perm: list[int]) -> None:
    data = network({"x": [2, 3]}, {"type": "transpose", "perm": perm})
    assert error_of(data) == (
        "layers[0].perm: expected a permutation of the axes 0 to 2 of input 'x''s value [N, 2, 3] "
        f"(the batch is axis 0), found {perm}"
    )


def test_transpose_refuses_to_move_the_batch() -> None:
    data = network({"x": [2, 3]}, {"type": "transpose", "perm": [1, 0, 2]})
    assert error_of(data) == (
        "layers[0].perm[0]: expected 0 first (the batch, which no layer may move), found 1, which moves axis 1 "
        "of [N, 2, 3] to the batch's place"
    )
    data = network({"x": [2, 3]}, {"type": "transpose", "perm": [-1, 1, 0]})
    assert error_of(data).startswith("layers[0].perm[0]: expected 0 first (the batch, which no layer may move)")


@pytest.mark.parametrize("rate", [1, 1.0, 1.5, -0.1])
def test_dropout_rate_is_in_zero_to_one(rate: float) -> None:
    data = network({"x": [3]}, {"type": "dropout", "rate": rate})
    assert error_of(data) == (
        f"layers[0].rate: expected a rate in [0, 1) (the share of units dropped in training), found {rate:g}"
    )


def test_shapes_out() -> None:
    data = network(
        {"a": [2, 3], "b": [2, 5]},
        {"type": "concat", "name": "c", "inputs": ["a", "b"]},
        {"type": "transpose", "name": "t", "perm": [0, 2, 1]},
        {"type": "reshape", "name": "r", "shape": [4, -1]},
        {"type": "flatten", "name": "f", "inputs": ["t"]},
        {"type": "dropout", "name": "d", "rate": 0},
        {"type": "concat", "name": "rows", "inputs": ["a", "a", "a"], "axis": -2},
        outputs=["r", "d", "rows"],
    )
    shapes = {n.name: n.shape for n in nnspec.graph(nnspec.from_dict(data)).nodes}
    assert shapes == {"c": (2, 8), "t": (8, 2), "r": (4, 4), "f": (16,), "d": (16,), "rows": (6, 3)}


# --- NumPy kernels against loops written out here -------------------------------------------------


def grid(*shape: int) -> np.ndarray:
    return np.arange(math.prod(shape), dtype=np.float32).reshape(shape) - 5


def test_merges_compute_element_by_element_in_order() -> None:
    a, b, c = grid(2, 3), grid(2, 3) * 0.5, grid(2, 3) ** 2
    inputs = {"a": [3], "b": [3], "c": [3]}
    for kind, expected in (("add", a + b + c), ("multiply", a * b * c)):
        got = run(network(inputs, {"type": kind, "inputs": ["a", "b", "c"]}), a=a, b=b, c=c)
        hand = [[[x, y, z] for x, y, z in zip(ra, rb, rc, strict=True)] for ra, rb, rc in zip(a, b, c, strict=True)]
        folded = [[(x + y + z) if kind == "add" else (x * y * z) for x, y, z in row] for row in hand]
        assert got.tolist() == folded == expected.tolist()


def test_concat_keeps_the_order_of_inputs() -> None:
    a, b = grid(1, 2, 2), grid(1, 1, 2) + 100
    got = run(network({"a": [2, 2], "b": [1, 2]}, {"type": "concat", "inputs": ["b", "a"], "axis": 1}), a=a, b=b)
    assert got.tolist() == [[[95.0, 96.0], [-5.0, -4.0], [-3.0, -2.0]]]
    got = run(network({"a": [2, 2], "b": [2, 2]}, {"type": "concat", "inputs": ["a", "b"]}), a=a, b=a + 1)
    assert got.tolist() == [[[-5.0, -4.0, -4.0, -3.0], [-3.0, -2.0, -2.0, -1.0]]]


def test_flatten_and_reshape_are_row_major() -> None:
    x = grid(2, 3, 4)
    flat = run(network({"x": [3, 4]}, {"type": "flatten"}), x=x)
    hand = np.zeros((2, 12), np.float32)
    for n in range(2):
        for i in range(3):
            for j in range(4):
                hand[n, i * 4 + j] = x[n, i, j]
    assert flat.tolist() == hand.tolist()
    back = run(network({"x": [12]}, {"type": "reshape", "shape": [-1, 2, 3]}), x=hand)
    for n, i, j, k in np.ndindex(2, 2, 2, 3):
        assert back[n, i, j, k] == hand[n, i * 6 + j * 3 + k]


def test_transpose_moves_every_element() -> None:
    x = grid(2, 2, 3, 4)
    got = run(network({"x": [2, 3, 4]}, {"type": "transpose", "perm": [0, 3, 1, 2]}), x=x)
    assert got.shape == (2, 4, 2, 3)
    for n, a, b, c in np.ndindex(*got.shape):
        assert got[n, a, b, c] == x[n, b, c, a]


def test_dropout_is_the_identity() -> None:
    x = grid(3, 4)
    assert run(network({"x": [4]}, {"type": "dropout", "rate": 0.5}), x=x).tolist() == x.tolist()


def test_a_skip_connection_reads_an_intermediate_twice() -> None:
    data = network(
        {"x": [3]}, dense("h1", 4), dense("h2", 4, seed=2), {"type": "add", "name": "s", "inputs": ["h1", "h2"]}
    )
    g = nnspec.graph(nnspec.from_dict(data))
    p = {n.name: n.params for n in g.nodes}
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    h1 = np.maximum(x @ p["h1"]["weights"].T + p["h1"]["bias"], 0)
    h2 = np.maximum(h1 @ p["h2"]["weights"].T + p["h2"]["bias"], 0)
    np.testing.assert_array_equal(run(data, x=x), h1 + h2)
    model = nnspec.to_onnx(nnspec.from_dict(data))
    assert sum("h1" in node.input for node in model.graph.node) == 2
    report = nnspec.check(nnspec.from_dict(data))
    assert report.passed and {s.name for s in report.steps} == {"h1", "h2", "s"}


# --- the exported model ----------------------------------------------------------------------------


def test_lowering_uses_the_expected_operators() -> None:
    data = network(
        {"a": [2, 3], "b": [2, 3]},
        {"type": "add", "name": "s", "inputs": ["a", "b", "a"]},
        {"type": "multiply", "name": "m", "inputs": ["s", "b"]},
        {"type": "concat", "name": "c", "inputs": ["m", "a"], "axis": -2},
        {"type": "dropout", "name": "d", "rate": 0.3},
        {"type": "transpose", "name": "t", "perm": [0, -1, 1]},
        {"type": "reshape", "name": "r", "shape": [2, -1]},
        {"type": "flatten", "name": "f"},
    )
    model = nnspec.to_onnx(nnspec.from_dict(data))
    ops = [(n.op_type, list(n.input)) for n in model.graph.node]
    assert [op for op, _ in ops] == ["Add", "Add", "Mul", "Concat", "Transpose", "Constant", "Reshape", "Flatten"]
    attrs = {n.op_type: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node}
    assert (
        attrs["Concat"] == {"axis": 1} and attrs["Transpose"] == {"perm": [0, 2, 1]} and attrs["Flatten"] == {"axis": 1}
    )
    assert attrs["Constant"] == {"value_ints": [0, 2, 6]}  # 0: the batch as it comes
    assert ops[4][1] == ["c"], "the layer after a dropout reads the dropout's source"
    assert nnspec.check(nnspec.from_dict(data)).passed


def test_a_dropout_output_is_an_identity_of_its_source() -> None:
    data = network({"x": [3]}, dense("h", 2), {"type": "dropout", "name": "d", "rate": 0.2}, outputs=["h", "d"])
    model = nnspec.to_onnx(nnspec.from_dict(data))
    assert [(n.op_type, list(n.input), list(n.output)) for n in model.graph.node][-1] == ("Identity", ["h"], ["d"])
    assert nnspec.check(nnspec.from_dict(data)).passed


def test_the_layer_after_a_dropout_is_checked_layer_by_layer() -> None:
    data = network({"x": [3]}, dense("h", 4), {"type": "dropout", "name": "d", "rate": 0.2}, dense("out", 2, seed=2))
    assert {s.name for s in nnspec.check(nnspec.from_dict(data)).steps} >= {"h", "out"}


def _swap_inputs(model: onnx.ModelProto, op_type: str) -> None:
    node = next(n for n in model.graph.node if n.op_type == op_type)
    node.input[0], node.input[1] = node.input[1], node.input[0]


def _retype(model: onnx.ModelProto, op_type: str, new: str) -> None:
    next(n for n in model.graph.node if n.op_type == op_type).op_type = new


def _perm(model: onnx.ModelProto, perm: list[int]) -> None:
    node = next(n for n in model.graph.node if n.op_type == "Transpose")
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("perm", perm))


def _reshape_as_transpose(model: onnx.ModelProto) -> None:
    node = next(n for n in model.graph.node if n.op_type == "Reshape")
    node.op_type = "Transpose"
    del node.input[1:]
    node.attribute.append(helper.make_attribute("perm", [0, 2, 1]))  # the same shape, the wrong order


FAULTS = {
    "concat-order": (network({"a": [3], "b": [3]}, {"type": "concat", "inputs": ["a", "b"]}), _swap_inputs, "Concat"),
    "add-as-sub": (network({"a": [3], "b": [3]}, {"type": "add", "inputs": ["a", "b"]}), _retype, "Add", "Sub"),
    "mul-as-add": (network({"a": [3], "b": [3]}, {"type": "multiply", "inputs": ["a", "b"]}), _retype, "Mul", "Add"),
    "transpose-none": (network({"x": [3, 3]}, {"type": "transpose", "perm": [0, 2, 1]}), _perm, [0, 1, 2]),
    "reshape-as-transpose": (network({"x": [2, 3]}, {"type": "reshape", "shape": [3, 2]}), _reshape_as_transpose),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_in_the_model_fails_the_check(fault: str) -> None:
    data, change, *args = FAULTS[fault]
    spec = nnspec.from_dict(data)
    model = nnspec.to_onnx(spec)
    change(model, *args)
    assert not nnspec.check(spec, onnx_model=model).passed


# --- bounds on tiny cases, by hand -------------------------------------------------------------------


def node_of(data: dict, name: str) -> Any:
    return nnspec.graph(nnspec.from_dict(data)).widened().node(name)


TWO = network({"a": [2], "b": [2], "c": [2]}, {"type": "add", "name": "s", "inputs": ["a", "b"]})


def test_add_bound_is_the_inputs_errors_plus_one_rounding() -> None:
    u = F32.u
    gamma1 = u / (1 - u)
    x = Affine(np.array([[1.0, -2.0]]), [Source(np.array([[1e-3, 0.0]]))])
    y = Affine(np.array([[3.0, 0.5]]), [Source(np.array([[0.0, 2e-3]]))])
    out = LAYERS["add"].bound(node_of(TWO, "s"), [x, y], F32)
    assert out.value.tolist() == [[4.0, -1.5]]
    expected = [1e-3 + gamma1 * (1 + 1e-3 + 3), 2e-3 + gamma1 * (2 + 0.5 + 2e-3)]
    np.testing.assert_allclose(out.bound()[0], expected, rtol=1e-15)
    three = network({"a": [2], "b": [2], "c": [2]}, {"type": "add", "name": "s", "inputs": ["a", "b", "c"]})
    z = Affine(np.array([[-4.0, 0.0]]))
    out = LAYERS["add"].bound(node_of(three, "s"), [x, y, z], F32)
    gamma2 = 2 * u / (1 - 2 * u)
    expected = [1e-3 + gamma2 * (1 + 1e-3 + 3 + 4), 2e-3 + gamma2 * (2 + 0.5 + 2e-3)]
    np.testing.assert_allclose(out.bound()[0], expected, rtol=1e-15)


def test_add_keeps_every_input_source_with_its_signed_jacobian() -> None:
    # x and y = -x carry the same rounding e through J = 1 and J = -1: the sum lists both as they are (their
    # union: |J1| e + |J2| e >= |J1 + J2| e, sound), then its own rounding.
    e = np.array([[1e-3]])
    x = Affine(np.array([[1.0]]), [Source(e)])
    y = Affine(np.array([[-1.0]]), [Source(e).scale_rows(np.array([[-1.0]]))])
    out = LAYERS["add"].bound(node_of(TWO, "s"), [x, y], F32)
    assert out.sources[0] is x.sources[0] and out.sources[1] is y.sources[0] and len(out.sources) == 3
    assert out.sources[1].J.tolist() == [[-1.0]]
    np.testing.assert_allclose(out.bound(), [[2e-3 + F32.u / (1 - F32.u) * (2 + 2e-3)]], rtol=1e-15)


def test_multiply_bound_carries_each_error_through_the_other_value() -> None:
    u, tiny = F32.u, F32.tiny
    two = network({"a": [1], "b": [1], "c": [1]}, {"type": "multiply", "name": "m", "inputs": ["a", "b"]})
    x = Affine(np.array([[2.0]]), [Source(np.array([[0.1]]))])
    y = Affine(np.array([[3.0]]), [Source(np.array([[0.01]]))])
    out = LAYERS["multiply"].bound(node_of(two, "m"), [x, y], F32)
    assert out.value.tolist() == [[6.0]]
    # 3 * 0.1 + 2 * 0.01 through the values, 0.1 * 0.01 second order, u |x y| with the errors, and underflow
    expected = 0.3 + 0.02 + 0.001 + u * 2.1 * 3.01 + tiny
    np.testing.assert_allclose(out.bound(), [[expected]], rtol=1e-15)
    three = network({"a": [1], "b": [1], "c": [1]}, {"type": "multiply", "name": "m", "inputs": ["a", "b", "c"]})
    exact = [Affine(np.array([[v]])) for v in (2.0, 3.0, -4.0)]
    out = LAYERS["multiply"].bound(node_of(three, "m"), exact, F32)
    first = u * 6 + tiny  # 2 x 3
    expected = 4 * first + u * (6 + first) * 4 + tiny  # (2 x 3) x -4
    assert out.value.tolist() == [[-24.0]]
    np.testing.assert_allclose(out.bound(), [[expected]], rtol=1e-15)


def test_moves_carry_each_error_with_its_value() -> None:
    data = network(
        {"a": [2, 2], "b": [1, 2]},
        {"type": "concat", "name": "c", "inputs": ["b", "a"], "axis": 1},
        {"type": "transpose", "name": "t", "perm": [0, 2, 1]},
        {"type": "flatten", "name": "f"},
    )
    a = Affine(np.array([[1.0, 2.0], [3.0, 4.0]]), [Source(np.array([[0.1, 0.2], [0.3, 0.4]]))])
    b = Affine(np.array([[5.0, 6.0]]), [Source(np.array([[0.5, 0.6]]))])
    c = LAYERS["concat"].bound(node_of(data, "c"), [b, a], F32)
    assert c.value.tolist() == [[5, 6], [1, 2], [3, 4]] and c.bound().tolist() == [[0.5, 0.6], [0.1, 0.2], [0.3, 0.4]]
    t = LAYERS["transpose"].bound(node_of(data, "t"), [c], F32)
    assert t.value.tolist() == [[5, 1, 3], [6, 2, 4]] and t.bound().tolist() == [[0.5, 0.1, 0.3], [0.6, 0.2, 0.4]]
    f = LAYERS["flatten"].bound(node_of(data, "f"), [t], F32)
    assert f.value.tolist() == [[5, 1, 3, 6, 2, 4]] and f.bound().tolist() == [[0.5, 0.1, 0.3, 0.6, 0.2, 0.4]]


def test_moves_that_keep_the_last_axis_keep_the_form() -> None:
    data = network(
        {"x": [4, 2]},
        {"type": "reshape", "name": "r", "shape": [2, 2, 2]},
        {"type": "dropout", "name": "d", "rate": 0.5},
    )
    x = Affine(np.ones((4, 2)), [Source(np.full((4, 2), 0.1), np.eye(2))])
    assert LAYERS["reshape"].bound(node_of(data, "r"), [x], F32) is x
    assert LAYERS["dropout"].bound(node_of(data, "d"), [x], F32) is x


def test_formulas_name_their_sources() -> None:
    data = network(
        {"h1": [2], "h2": [2]},
        {"type": "add", "name": "s", "inputs": ["h1", "h2"]},
        {"type": "multiply", "name": "m", "inputs": ["h1", "h2"]},
        {"type": "concat", "name": "c", "inputs": ["s", "m"]},
        {"type": "dropout", "name": "d", "rate": 0.5},
        {"type": "reshape", "name": "r", "shape": [2, 2]},
        {"type": "transpose", "name": "t", "perm": [0, 2, 1]},
        {"type": "flatten", "name": "f"},
        {"type": "concat", "name": "rows", "inputs": ["r", "t"], "axis": 1},
    )
    g = nnspec.graph(nnspec.from_dict(data))
    assert {n.name: LAYERS[n.op].formula(n) for n in g.nodes} == {
        "s": "h1 + h2",
        "m": "h1 ⊙ h2",
        "c": "concat(s, m; axis=-1)",
        "d": "dropout(c; 0.5, identity at inference)",
        "r": "reshape(d; [2, 2])",
        "t": "transpose(r; [0, 2, 1])",
        "f": "flatten(t)",
        "rows": "concat(r, t; axis=1)",
    }


# --- relu6 and hard_swish ----------------------------------------------------------------------------


def act(name: str) -> Activation:
    return Activation(REGISTRY[name], {})


def test_relu6_and_hard_swish_values() -> None:
    x = np.array([-7.0, -4.0, -3.0, -1.5, 0.0, 1.0, 3.0, 6.0, 7.5])
    assert act("relu6")(x).tolist() == [0, 0, 0, 0, 0, 1, 3, 6, 6]
    # n * relu6(n + 3) / 6, one at a time
    assert act("hard_swish")(x).tolist() == pytest.approx([0, 0, 0, -0.375, 0, 2 / 3, 3, 6, 7.5], abs=0, rel=1e-15)


@pytest.mark.parametrize(
    ("name", "kinks"), [("relu6", [(0.0, 1.0), (6.0, 1.0)]), ("hard_swish", [(-3.0, 0.5), (3.0, 0.5)])]
)
def test_kinks_are_where_the_slope_jumps(name: str, kinks: list[tuple[float, float]]) -> None:
    model, f = REGISTRY[name].error, act(name)
    assert model.kinks() == kinks
    h = 1e-6
    for at, jump in kinks:
        left, right = (f(np.array([at])) - f(np.array([at - h]))) / h, (f(np.array([at + h])) - f(np.array([at]))) / h
        assert abs(right - left)[0] == pytest.approx(jump, abs=1e-5)
        assert model.derivative(np.array([at - 1e-3]))[0] == pytest.approx(left[0], abs=1e-2)
        assert model.derivative(np.array([at + 1e-3]))[0] == pytest.approx(right[0], abs=1e-2)


def _near(points: list[float], dtype: str) -> np.ndarray:
    """Each point, its neighbours one and two ulps away, and points a little further out."""
    x = np.array(points, dtype=dtype)
    around = [x, np.nextafter(x, x - 1), np.nextafter(x, x + 1)]
    around += [np.nextafter(a, a + d) for a, d in ((around[1], -1), (around[2], 1))]
    around += [x + 1e-4, x - 1e-4, x * (1 + 1e-3), x * (1 - 1e-3)]
    return np.concatenate(around).reshape(-1, 1).astype(dtype)


def _crossing(dtype: str) -> np.ndarray:
    """Pairs (x1, x2) of neighbouring floats near 1000: 0.1 x1 - 0.1 x2 is within an ulp of 100 of 0, so the
    rounded products put n = kink + 0.1 x1 - 0.1 x2 on either side of the kink, often the other side than
    exact arithmetic does."""
    base = np.float64(1000)
    ulp = float(np.spacing(np.array(1000, dtype=dtype)))
    x1 = base + ulp * np.arange(64)
    pairs = [np.stack([x1, x1 + ulp * d], axis=1) for d in (-1, 0, 1)]
    return np.concatenate(pairs).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "points"), [("relu6", [0.0, 6.0]), ("hard_swish", [-3.0, 3.0, 0.0])])
def test_the_check_passes_at_and_near_the_kinks(name: str, points: list[float], dtype: str) -> None:
    alone = nnspec.from_dict(network({"x": [1]}, {"type": "activation", "activation": name}, dtype=dtype))
    for opset in OPSETS:
        report = nnspec.check(alone, opset=opset, inputs={"x": _near(points, dtype)})
        assert report.passed, (opset, report.outputs)
    for kink in points:
        # Rounding moves the activation's input across the kink: its bound must allow the other side's slope.
        layer = {"type": "dense", "units": 1, "activation": name, "weights": [[0.1, -0.1]], "bias": [kink]}
        crossing = nnspec.from_dict(network({"x": [2]}, layer, dtype=dtype))
        for opset in OPSETS:
            report = nnspec.check(crossing, opset=opset, inputs={"x": _crossing(dtype)})
            assert report.passed, (opset, kink, report.outputs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["relu6", "hard_swish"])
def test_after_relu_in_onnxruntime(name: str, dtype: str) -> None:
    # onnxruntime fuses Relu -> Clip, which fails on float64 Clip; float64 clips are Max and Min.
    data = network(
        {"x": [3]},
        {"type": "dense", "units": 4, "activation": "relu", "weights": {"init": "normal", "seed": 1, "std": 4}},
        {"type": "activation", "activation": name},
        dtype=dtype,
    )
    for opset in OPSETS:
        assert nnspec.check(nnspec.from_dict(data), opset=opset).passed


@pytest.mark.parametrize("opset", OPSETS)
def test_hard_swish_uses_the_operator_where_onnxruntime_runs_it(opset: int) -> None:
    def ops(dtype: str) -> set[str]:
        spec = nnspec.from_dict(network({"x": [2]}, {"type": "activation", "activation": "hard_swish"}, dtype=dtype))
        return {n.op_type for n in nnspec.to_onnx(spec, opset).graph.node}

    assert ("HardSwish" in ops("float32")) == (opset >= 14)
    assert "HardSwish" not in ops("float64") and {"Max", "Min"} <= ops("float64")


def test_a_wrong_hard_swish_is_caught() -> None:
    # hard_sigmoid with alpha 1/6 is the gate alone, without the factor n: far from n relu6(n + 3) / 6
    spec = nnspec.from_dict(network({"x": [4]}, {"type": "activation", "name": "f", "activation": "hard_swish"}))
    model = nnspec.to_onnx(spec, 17)
    node = next(n for n in model.graph.node if n.op_type == "HardSwish")
    node.op_type = "HardSigmoid"
    node.attribute.extend([helper.make_attribute("alpha", 1 / 6), helper.make_attribute("beta", 0.5)])
    assert not nnspec.check(spec, onnx_model=model).passed


def test_skip_concat_spec_passes() -> None:
    report = nnspec.check(Path(__file__).resolve().parent.parent / "specs" / "skip_concat.json")
    assert report.passed, str(report)
