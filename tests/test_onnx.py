"""The ONNX exporter: a valid model, the spec's names and shapes, one Gemm per dense layer, metadata,
the requested opset, deterministic bytes, and compositions where an opset lacks an operator."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

import nnspec
from nnspec.onnxio.export import to_bytes
from nnspec.runners import onnxruntime_max_opset

OPSETS = sorted({13, 17, 18, 20, onnxruntime_max_opset()})

TWO_HEADS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "two_heads",
    "inputs": [{"name": "a", "shape": [3]}, {"name": "b", "shape": [2]}],
    "layers": [
        {
            "type": "dense",
            "name": "left",
            "units": 4,
            "activation": "relu",
            "weights": {"init": "normal", "seed": 1},
            "inputs": ["a"],
        },
        {
            "type": "dense",
            "name": "right",
            "units": 5,
            "weights": {"init": "normal", "seed": 2},
            "bias": {"init": "ones"},
            "inputs": ["b"],
        },
        {"type": "activation", "name": "right_soft", "activation": "softmax"},
        {
            "type": "dense",
            "units": 2,
            "activation": "tanh",
            "weights": {"init": "uniform", "seed": 3},
            "inputs": ["left"],
        },
    ],
    "outputs": ["right_soft", "left", "dense_3"],
}

# A per-sample input of rank 2: each of the 3 rows goes through the dense layers.
MATRIX_INPUT: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "rows",
    "inputs": [{"name": "m", "shape": [3, 4]}],
    "layers": [
        {
            "type": "dense",
            "name": "d1",
            "units": 6,
            "activation": "sigmoid",
            "weights": {"init": "glorot_uniform", "seed": 5},
            "bias": {"init": "normal", "seed": 6},
        },
        {"type": "dense", "name": "d2", "units": 2, "weights": {"init": "he_normal", "seed": 7}},
    ],
}


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def attribute(node: onnx.NodeProto, name: str) -> Any:
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("spec", ["three_layer", "two_heads", "matrix"])
def test_model_passes_the_full_checker(spec: str, opset: int, dtype: str, three_layer: dict[str, Any]) -> None:
    data = {"three_layer": three_layer, "two_heads": TWO_HEADS, "matrix": MATRIX_INPUT}[spec]
    model = nnspec.to_onnx(nnspec.from_dict({**data, "dtype": dtype}), opset=opset)
    onnx.checker.check_model(model, full_check=True)
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[dtype]
    assert {v.type.tensor_type.elem_type for v in (*graph_inputs(model), *model.graph.output)} == {elem}
    assert {i.data_type for i in model.graph.initializer} == {elem}


def test_inputs_and_outputs_keep_the_spec_names_and_shapes() -> None:
    model = nnspec.to_onnx(nnspec.from_dict(TWO_HEADS))
    assert [(i.name, dims(i)) for i in graph_inputs(model)] == [("a", ["N", 3]), ("b", ["N", 2])]
    # The outputs in the spec's order, with every dimension after the batch known.
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("right_soft", ["N", 5]),
        ("left", ["N", 4]),
        ("dense_3", ["N", 2]),
    ]
    model = nnspec.to_onnx(nnspec.from_dict(MATRIX_INPUT))
    assert [(i.name, dims(i)) for i in graph_inputs(model)] == [("m", ["N", 3, 4])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [("d2", ["N", 3, 2])]


def test_the_batch_dimension_is_symbolic_and_any_size_runs() -> None:
    import onnxruntime

    spec = nnspec.from_dict(MATRIX_INPUT)
    session = onnxruntime.InferenceSession(to_bytes(nnspec.to_onnx(spec)), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 9):
        (out,) = session.run(None, {"m": np.zeros((batch, 3, 4), np.float32)})
        assert out.shape == (batch, 3, 2)


def test_node_names_carry_the_layer_names(three_layer: dict[str, Any]) -> None:
    for data in (three_layer, TWO_HEADS, MATRIX_INPUT):
        spec = nnspec.from_dict(data)
        layers = [n.name for n in nnspec.graph(spec).nodes]
        model = nnspec.to_onnx(spec)
        owners = [node.name.split("/")[0] for node in model.graph.node]
        assert set(owners) == set(layers), (owners, layers)
        assert len({n.name for n in model.graph.node}) == len(model.graph.node), "node names are unique"


def test_one_gemm_with_transposed_weights_per_dense_layer(three_layer: dict[str, Any]) -> None:
    spec = nnspec.from_dict(three_layer)
    model = nnspec.to_onnx(spec)
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert [g.name.split("/")[0] for g in gemms] == ["l1", "l2", "l3"]
    assert "MatMul" not in op_types(model)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for gemm, node in zip(gemms, nnspec.graph(spec).nodes, strict=True):
        assert attribute(gemm, "transB") == 1
        # B is W as the spec writes it, [units, in_features], so a deployed model reads like the spec.
        np.testing.assert_array_equal(weights[gemm.input[1]], node.params["weights"])
        assert len(gemm.input) == (3 if "bias" in node.params else 2)


def test_dense_on_matrix_inputs_is_matmul_then_add() -> None:
    spec = nnspec.from_dict(MATRIX_INPUT)
    model = nnspec.to_onnx(spec)
    types = op_types(model)
    assert "Gemm" not in types
    assert types.count("MatMul") == 2  # one per dense layer
    assert types.count("Add") == 1  # d1 has a bias, d2 has none
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert add.name.startswith("d1/")
    assert nnspec.check(spec).passed


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def test_metadata_records_version_and_spec_hash(party: dict[str, Any]) -> None:
    spec = nnspec.from_dict(party)
    meta = _metadata(nnspec.to_onnx(spec))
    assert meta["nnspec.version"] == nnspec.__version__
    assert re.fullmatch(r"[0-9a-f]{64}", meta["nnspec.spec_sha256"])
    assert meta["nnspec.spec_sha256"] == nnspec.graph(spec).fingerprint
    # The same spec, read again, hashes the same; one weight changed by one float32 ulp does not.
    assert _metadata(nnspec.to_onnx(nnspec.from_dict(copy.deepcopy(party)))) == meta
    changed = copy.deepcopy(party)
    changed["layers"][0]["weights"] = [[-4.0, float(np.nextafter(np.float32(1), np.float32(2)))]]
    assert _metadata(nnspec.to_onnx(nnspec.from_dict(changed)))["nnspec.spec_sha256"] != meta["nnspec.spec_sha256"]
    rebiased = copy.deepcopy(party)
    rebiased["layers"][0]["bias"] = [3]
    assert _metadata(nnspec.to_onnx(nnspec.from_dict(rebiased)))["nnspec.spec_sha256"] != meta["nnspec.spec_sha256"]


@pytest.mark.parametrize("opset", OPSETS)
def test_opset_import_is_the_requested_opset(opset: int, three_layer: dict[str, Any]) -> None:
    model = nnspec.to_onnx(nnspec.from_dict(three_layer), opset=opset)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]


def test_default_opset_is_17(party: dict[str, Any]) -> None:
    model = nnspec.to_onnx(nnspec.from_dict(party))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


def test_exporting_twice_gives_identical_bytes(three_layer: dict[str, Any]) -> None:
    first = to_bytes(nnspec.to_onnx(nnspec.from_dict(copy.deepcopy(three_layer))))
    second = to_bytes(nnspec.to_onnx(nnspec.from_dict(copy.deepcopy(three_layer))))
    assert first == second
    spec = nnspec.from_dict(TWO_HEADS)
    assert to_bytes(nnspec.to_onnx(spec)) == to_bytes(nnspec.to_onnx(spec))


@pytest.mark.parametrize("opset", [12, onnx.defs.onnx_opset_version() + 1])
def test_opsets_outside_the_supported_range_are_refused(opset: int, party: dict[str, Any]) -> None:
    with pytest.raises(nnspec.NNSpecError, match=str(opset)):
        nnspec.to_onnx(nnspec.from_dict(party), opset=opset)


# (activation, opset, the operator that opset lacks)
COMPOSED = [
    ("gelu", 17, "Gelu"),
    ({"name": "gelu", "approximate": "tanh"}, 17, "Gelu"),
    ("gelu", 13, "Gelu"),
    ("mish", 13, "Mish"),
    ("mish", 17, "Mish"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("activation", "opset", "missing"), COMPOSED, ids=lambda v: str(v) if not isinstance(v, dict) else "gelu-tanh"
)
def test_activations_without_an_operator_are_composed(activation: Any, opset: int, missing: str, dtype: str) -> None:
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "composed",
            "dtype": dtype,
            "inputs": [{"name": "x", "shape": [6]}],
            "layers": [
                {
                    "type": "dense",
                    "name": "h",
                    "units": 8,
                    "activation": activation,
                    "weights": {"init": "normal", "seed": 3, "std": 1.0},
                }
            ],
        }
    )
    model = nnspec.to_onnx(spec, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert missing not in op_types(model)
    report = nnspec.check(spec, opset=opset)
    assert report.passed, report.outputs


@pytest.mark.parametrize(("activation", "opset", "operator"), [("gelu", 20, "Gelu"), ("mish", 18, "Mish")])
def test_float32_uses_the_operator_once_the_opset_has_it(activation: str, opset: int, operator: str) -> None:
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "native",
            "inputs": [{"name": "x", "shape": [4]}],
            "layers": [{"type": "activation", "name": "f", "activation": activation}],
        }
    )
    assert op_types(nnspec.to_onnx(spec, opset=opset)) == [operator]
    assert nnspec.check(spec, opset=opset).passed


def test_negative_zero_is_its_own_constant():
    """A float64 leaky_relu with alpha = -0.0 next to a 0.0 constant: keyed by value, the two would share
    one initializer, and onnxruntime would compute alpha * n = -0.0 where NumPy gives 0.0."""
    import numpy as np
    from onnx import numpy_helper

    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "zeros",
            "dtype": "float64",
            "inputs": [{"name": "x", "shape": [2]}],
            "layers": [{"type": "activation", "activation": {"name": "leaky_relu", "alpha": -0.0}}],
        }
    )
    model = nnspec.to_onnx(spec)
    scalars = [numpy_helper.to_array(t) for t in model.graph.initializer if not t.dims]
    assert any(a == 0 and np.signbit(a) for a in scalars) and any(a == 0 and not np.signbit(a) for a in scalars)
    from nnspec.runners import OnnxRuntimeRunner

    x = np.array([[-1.5, 2.0]])
    got = OnnxRuntimeRunner(model.SerializeToString()).run({"x": x})
    assert np.array_equal(
        np.signbit(got["activation_0"]), np.signbit(nnspec.to_numpy(spec).run({"x": x})["activation_0"])
    )
