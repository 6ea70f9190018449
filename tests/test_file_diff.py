"""`nnspec check --onnx` on a model nnspec compiled: the file against a fresh export of its spec, exactly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import nnspec

SPEC = {
    "format": "nnspec/1",
    "name": "rows",
    "inputs": [{"name": "x", "shape": [3, 5]}],
    "layers": [
        {"type": "dense", "name": "h", "units": 4, "activation": "tanh", "weights": {"init": "normal", "seed": 1}},
        {"type": "dense", "name": "out", "units": 2, "weights": {"init": "normal", "seed": 2}, "bias": [0.5, -1.0]},
    ],
}


def _model() -> tuple[nnspec.Spec, onnx.ModelProto]:
    spec = nnspec.from_dict(json.loads(json.dumps(SPEC)))
    return spec, nnspec.to_onnx(spec)


def _set(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(array, name))


def test_a_clean_file_is_the_spec_export():
    spec, model = _model()
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed and report.compared_with_export and not report.differences
    assert any("every initializer and node the same" in n for n in report.notes)


def test_one_changed_weight_is_named_in_the_specs_layout(tmp_path, cli):
    spec, model = _model()
    stored = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "h.weights_t")).copy()
    stored[3, 1] *= np.float32(1.00001)  # [in, units] as MatMul stores it: the spec's weights[1, 3]
    _set(model, "h.weights_t", stored)
    report = nnspec.check(spec, onnx_model=model, exact_file=True)
    assert not report.passed
    (found,) = report.differences
    assert (found["layer"], found["param"], found["index"], found["count"]) == ("h", "weights", [1, 3], 1)
    assert found["ratio"] == pytest.approx(1.00001, rel=1e-6)
    assert "layer 'h', weights[1, 3]: the model holds" in str(report) and "(x1.00001)" in str(report)
    for rendering in (nnspec.render.to_json(report), nnspec.render.markdown(report), nnspec.render.junit(report)):
        assert "weights[1, 3]" in rendering
    # a verdict of its own: without --exact-file the exit code is the runtime check's
    (tmp_path / "spec.json").write_text(spec.to_json())
    onnx.save(model, tmp_path / "m.onnx")
    plain = cli("check", tmp_path / "spec.json", "--onnx", tmp_path / "m.onnx")
    assert "the file differs from the spec's export: layer 'h', weights[1, 3]" in plain.stdout
    strict = cli("check", tmp_path / "spec.json", "--onnx", tmp_path / "m.onnx", "--exact-file")
    assert strict.exit_code == 1, strict.output


def test_weights_one_ulp_away_pass_but_are_reported_and_so_is_a_sign_of_zero():
    spec, model = _model()
    bias = np.array([0.5, -1.0], np.float32)
    _set(model, "out.bias", np.nextafter(bias, np.float32(np.inf)))
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed, "one ulp computes the spec within rounding"
    assert [d["count"] for d in report.differences] == [2]
    zeros = np.zeros(2, np.float32)
    spec_zero = nnspec.from_dict(
        {**json.loads(json.dumps(SPEC)), "layers": [SPEC["layers"][0], {**SPEC["layers"][1], "bias": [0.0, 0.0]}]}
    )
    model_zero = nnspec.to_onnx(spec_zero)
    _set(model_zero, "out.bias", -zeros)
    assert nnspec.check(spec_zero, onnx_model=model_zero).differences, "-0.0 is not the spec's 0.0"


def test_an_inserted_node_is_named():
    spec, model = _model()
    mask = np.ones((5, 4), np.float32)
    model.graph.initializer.append(numpy_helper.from_array(mask, "mask"))
    product = next(n for n in model.graph.node if "h.weights_t" in n.input)
    product.input[list(product.input).index("h.weights_t")] = "masked"
    model.graph.node.insert(0, helper.make_node("Mul", ["h.weights_t", "mask"], ["masked"], name="h/mask"))
    report = nnspec.check(spec, onnx_model=model, exact_file=True)
    messages = [d["message"] for d in report.differences]
    assert any("Mul 'h/mask'" in m and "the spec's export has not" in m for m in messages)
    assert any("'mask'" in m for m in messages)
    assert not report.passed


def test_a_file_from_another_nnspec_version_is_not_compared():
    spec, model = _model()
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, "nnspec.version": "0.0.1"})
    report = nnspec.check(spec, onnx_model=model)
    assert report.passed and not report.compared_with_export
    assert any("compiled by nnspec 0.0.1" in n for n in report.notes)
