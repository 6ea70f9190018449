"""The cross-check: it passes correct models, and catches and locates wrong ones."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import nnspec
from nnspec.harness import Tolerance, compare
from nnspec.layers import LAYERS
from nnspec.onnxio.export import to_bytes
from nnspec.onnxio.export import to_onnx as export_graph


def _tamper(model: onnx.ModelProto, name: str, change) -> bytes:
    """A copy of `model` with initializer `name` replaced by change(array)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            array = change(numpy_helper.to_array(init).copy())
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return model.SerializeToString()
    raise KeyError(name)


@pytest.fixture
def three(three_layer):
    return nnspec.from_dict(three_layer)


def test_default_tolerance_is_derived(three):
    report = nnspec.check(three)
    assert report.tolerance.mode == "derived"
    out = report.outputs[0]
    assert out.allowed_at_worst is not None and out.allowed_at_worst > 0
    assert 0 <= out.worst_margin < 1


def test_fresh_export_agrees_and_report_says_where(three):
    report = nnspec.check(three)
    assert report.passed
    (out,) = report.outputs
    assert out.name == "l3" and out.elements == (1 + 7 + 64 + 10) * 2  # three random batches, ten edge rows
    assert out.max_abs_at is not None and out.max_abs_at["case"].startswith(("batch", "edges"))
    assert [c.split(",")[0] for c in report.cases] == ["batch 1", "batch 7", "batch 64", "edges: 0"]


def test_batch_sizes_and_seed_are_honoured(three):
    a = nnspec.check(three, batch_sizes=(3,), seed=5)
    b = nnspec.check(three, batch_sizes=(3,), seed=5)
    assert a.cases[0].startswith("batch 3,") and a.outputs[0].elements == (3 + 10) * 2
    assert a.to_dict() == b.to_dict()  # seeded: the same inputs, the same report


def test_changed_weight_fails_and_is_located(three):
    model = nnspec.to_onnx(three)

    def bump(w):
        w[1, 2] *= 1.01
        return w

    report = nnspec.check(three, onnx_model=_tamper(model, "l2.weights", bump))
    assert not report.passed
    (out,) = report.outputs
    assert out.mismatches > 0 and out.worst_margin > 1
    assert out.max_abs_at["index"][1] in (0, 1)
    assert report.divergence is not None and report.divergence["layer"] == "l2"
    assert report.divergence["path"] == "layers[1]"
    # the float64 oracle blames onnxruntime, not the NumPy evaluator
    assert {o.candidate for o in report.oracle if not o.passed} == {"onnxruntime"}


def test_one_ulp_weight_difference_passes(three):
    model = nnspec.to_onnx(three)
    tampered = _tamper(model, "l1.weights", lambda w: np.nextafter(w, np.inf, dtype=w.dtype))
    report = nnspec.check(three, onnx_model=tampered)
    assert report.passed, report.to_dict()
    assert report.outputs[0].max_abs_error > 0  # the change is real, and within the tolerance


def test_dropped_bias_fails(three):
    model = nnspec.to_onnx(three)
    assert not nnspec.check(three, onnx_model=_tamper(model, "l1.bias", np.zeros_like)).passed


def test_changed_activation_fails(three_layer):
    spec = nnspec.from_dict(three_layer)
    three_layer["layers"][0]["activation"] = "sigmoid"
    other = nnspec.to_onnx(nnspec.from_dict(three_layer))
    report = nnspec.check(spec, onnx_model=other)
    assert not report.passed
    assert any("another version" in note for note in report.notes)  # the recorded spec hash differs


def test_renamed_output_is_an_interface_problem(three):
    model = nnspec.to_onnx(three)
    model.graph.output[0].name = "renamed"
    model.graph.node[-1].output[0] = "renamed"
    report = nnspec.check(three, onnx_model=model)
    assert not report.passed
    assert any("no output 'l3'" in p for p in report.problems)


def test_wrong_element_type_is_an_interface_problem(three_layer):
    spec = nnspec.from_dict(three_layer)
    wide = nnspec.to_onnx(nnspec.from_dict({**three_layer, "dtype": "float64"}))
    report = nnspec.check(spec, onnx_model=wide)
    assert not report.passed and any("element type" in p for p in report.problems)


def test_broken_lowering_is_caught(monkeypatch, three):
    """A lowering bug (the bias dropped in every dense layer) must not survive the check."""
    original = LAYERS["dense"]

    def no_bias(node, g, inputs, out):
        params = {k: v for k, v in node.params.items() if k != "bias"}
        return original.onnx(dataclasses.replace(node, params=params), g, inputs, out)

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, onnx=no_bias))
    assert not nnspec.check(three).passed


def test_given_inputs_replace_random_batches(three):
    x = np.linspace(-3, 3, 12).reshape(4, 3)
    report = nnspec.check(three, inputs={"p": x})
    assert report.passed and report.cases == ["given inputs"] and report.outputs[0].elements == 8


def test_explicit_tolerance_overrides_default(three):
    model = nnspec.to_onnx(three)
    tampered = _tamper(model, "l1.weights", lambda w: w * (1 + 1e-3))
    assert not nnspec.check(three, onnx_model=tampered).passed
    loose = nnspec.check(three, onnx_model=tampered, rtol=0.1, atol=0.1)
    assert loose.passed and loose.tolerance.mode == "given"


def test_compare_counts_nan_on_one_side_as_mismatch():
    ref = np.array([[1.0, np.nan, np.inf]])
    allowed = np.full(ref.shape, 1e-12)
    assert compare("y", [3], [("b", ref, ref.copy(), allowed)], np.dtype("float64")).passed  # equal specials agree
    other = np.array([[1.0, 0.0, np.inf]])
    result = compare("y", [3], [("b", ref, other, allowed)], np.dtype("float64"))
    assert result.mismatches == 1 and result.worst_at == {"case": "b", "index": [0, 1]}


def test_ulps_are_measured_in_the_dtype():
    ref = np.array([[1.0]], dtype=np.float32)
    cand = np.nextafter(ref, np.float32(2))
    result = compare("y", [1], [("b", ref, cand, np.full(ref.shape, 1.0))], np.dtype("float32"))
    assert result.max_ulps == 1.0


def test_the_oracle_blames_the_numpy_side_when_it_is_wrong(monkeypatch, three):
    """A bug in the NumPy kernel: the float64 oracle (the bound pass) agrees with onnxruntime."""
    original = LAYERS["dense"]

    def off_by_a_little(node):
        kernel = original.numpy(node)
        return (lambda x: kernel(x) * np.float32(1.001)) if node.name == "l3" else kernel

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, numpy=off_by_a_little))
    report = nnspec.check(three)
    assert not report.passed
    assert {o.candidate for o in report.oracle if not o.passed} == {"numpy"}


def test_float64_networks_have_no_separate_oracle(three_layer):
    report = nnspec.check(nnspec.from_dict({**three_layer, "dtype": "float64"}))
    assert report.passed and report.oracle == []


def test_step_within_rounding_of_zero_is_counted_not_failed():
    """A pre-activation of -7.9e-7 after a cancelling sum: either side of the step is correct."""
    from test_properties import FLIP_SPEC  # the network the property test once flagged

    report = nnspec.check(nnspec.from_dict(FLIP_SPEC), opset=13, batch_sizes=[5], seed=0)
    assert report.passed
    assert set(report.ambiguous) == {"activation_1"}


class _Noisy:
    """A runner whose answers change from call to call."""

    name = "noisy"

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def run(self, feeds):
        self.calls += 1
        return {k: v * np.float32(1 + self.calls * 1e-6) for k, v in self.inner.run(feeds).items()}


def test_nondeterminism_is_flagged(three):
    from nnspec.harness import cross_check
    from nnspec.inputs import random_cases
    from nnspec.runners import NumpyRunner

    g = nnspec.graph(three)
    report = cross_check(g, NumpyRunner(g), _Noisy(NumpyRunner(g)), random_cases(g), Tolerance())
    assert report.nondeterministic == ["l3 (noisy)"]
    assert any("different results" in note for note in report.notes)


def test_report_json_round_trips(three):
    from nnspec.render import to_json

    data = json.loads(to_json(nnspec.check(three)))
    assert data["passed"] is True
    assert data["outputs"][0]["name"] == "l3"
    assert data["tolerance"]["mode"] == "derived"
    assert {"oracle", "ambiguous", "divergence", "nondeterministic"} <= set(data)


def test_markdown_report_renders_from_template(three):
    from nnspec.render import markdown

    text = markdown(nnspec.check(three))
    assert "## nnspec check: `three` passed" in text
    assert "| `l3` |" in text


def test_model_bytes_are_deterministic(three):
    assert to_bytes(nnspec.to_onnx(three)) == to_bytes(nnspec.to_onnx(three))


def test_spec_declares_a_tolerance_per_output(three_layer):
    model = nnspec.to_onnx(nnspec.from_dict(three_layer))
    tampered = _tamper(model, "l1.weights", lambda w: w * (1 + 1e-3))
    assert not nnspec.check(nnspec.from_dict(three_layer), onnx_model=tampered).passed
    declared = nnspec.from_dict({**three_layer, "tolerance": {"l3": {"rtol": 0.05, "atol": 0.01}}})
    assert nnspec.check(declared, onnx_model=tampered).passed
    assert nnspec.check(declared, onnx_model=tampered, rtol=0, atol=0).passed is False  # the CLI flags win
    assert any("not checked one by one" in note for note in nnspec.check(declared, onnx_model=tampered).notes)


def test_spec_tolerance_must_name_an_output(three_layer):
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.from_dict({**three_layer, "tolerance": {"l4": {"rtol": 0.1}}})
    assert info.value.path == "tolerance.l4" and "outputs: l3" in info.value.message
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.from_dict({**three_layer, "tolerance": {"l3": {"rtol": -1}}})
    assert info.value.path == "tolerance.l3.rtol"


def test_repro_folder_reproduces_the_divergence(three, tmp_path):
    import onnxruntime

    model = nnspec.to_onnx(three)

    def bump(w):
        w[1, 2] *= 1.01
        return w

    folder = tmp_path / "repro"
    report = nnspec.check(three, onnx_model=_tamper(model, "l2.weights", bump), repro=folder)
    assert not report.passed and report.divergence["layer"] == "l2"
    assert any("reproduction" in note for note in report.notes)
    # the cut-down spec is valid, holds the one layer, and the NumPy form gives the expected outputs
    cut = nnspec.load(folder / "spec.json")
    assert [layer.name for layer in cut.layers] == ["l2"] and [i.name for i in cut.inputs] == ["l1"]
    with np.load(folder / "inputs.npz") as inputs, np.load(folder / "expected.npz") as expected:
        np.testing.assert_array_equal(nnspec.to_numpy(cut)(inputs["l1"]), expected["l2"])
        # the extracted ONNX model still carries the fault: it disagrees with the expected outputs
        session = onnxruntime.InferenceSession(str(folder / "onnx" / "model.onnx"))
        (got,) = session.run(None, {"l1": inputs["l1"]})
        assert not np.allclose(got, expected["l2"], rtol=1e-4, atol=1e-6)
    # onnxruntime's test-data layout
    tensor = onnx.TensorProto()
    tensor.ParseFromString((folder / "onnx" / "test_data_set_0" / "input_0.pb").read_bytes())
    assert tensor.name == "l1" and numpy_helper.to_array(tensor).shape[1] == 4
    assert (folder / "onnx" / "test_data_set_0" / "output_0.pb").is_file()


def test_onnx_reference_evaluator_is_a_further_runner(three):
    report = nnspec.check(three, runners=["onnxruntime", "onnx-reference"])
    assert report.passed
    assert [o.candidate for o in report.outputs] == ["onnxruntime", "onnx-reference"]
    assert {o.candidate for o in report.oracle} == {"numpy", "onnxruntime", "onnx-reference"}


def test_unknown_runner_is_a_clear_error(three):
    with pytest.raises(nnspec.NNSpecError, match="expected a runner .* found 'onnxrt'"):
        nnspec.check(three, runners=["onnxrt"])


def failed_cases(suite) -> list[str]:
    """The names of a JUnit suite's test cases that hold a <failure>, each once per <failure> it holds."""
    return [case.get("name") for case in suite.iter("testcase") for _ in case.iter("failure")]


def junit_failures(report: dict[str, Any]) -> list[str]:
    """The JUnit case names of a report's (`Report.to_dict()`) failing outputs, layer steps and layers' parameters,
    in its order."""
    outputs = [f"{o['name']} [{o['candidate']} vs {o['reference']}]" for o in report["outputs"] if not o["passed"]]
    steps = [f"layer {s['name']} step [{s['candidate']}]" for s in report["steps"] if not s["passed"]]
    weights = [f"layer {w['layer']} parameters [{w['candidate']}]" for w in report["weights"] if w["flagged"]]
    return outputs + steps + weights


def test_junit_has_one_case_per_output_and_runner(three_layer):
    from xml.etree import ElementTree as ET

    from nnspec.render import junit

    three_layer["outputs"] = ["l1", "l3"]
    spec = nnspec.from_dict(three_layer)
    suite = ET.fromstring(junit(nnspec.check(spec, runners=["onnxruntime", "onnx-reference"])))[0]
    names = [case.get("name") for case in suite.iter("testcase")]
    runners = ("onnxruntime", "onnx-reference")
    outputs = [f"{o} [{r} vs numpy]" for r in runners for o in ("l1", "l3")]
    steps = [f"layer {layer} step [{r}]" for r in runners for layer in ("l1", "l2", "l3")]
    parameters = [f"layer {layer} parameters [{r}]" for r in runners for layer in ("l1", "l2", "l3")]
    assert names == outputs + steps + parameters
    assert suite.get("tests") == "16" and suite.get("failures") == "0" and failed_cases(suite) == []
    report = nnspec.check(spec, onnx_model=_tamper(nnspec.to_onnx(spec), "l3.weights", lambda w: -w))
    failing = ET.fromstring(junit(report))[0]
    # the output l3 and the layer l3's step fail; the file against the spec's export is a case of its own, which
    # reports the changed weight and fails only with exact_file
    assert failing.get("tests") == "9" and failing.get("failures") == "3"
    # each failing result has its own <failure>, and no passing one has any
    expected = ["l3 [onnxruntime vs numpy]", "layer l3 step [onnxruntime]", "layer l3 parameters [onnxruntime]"]
    assert failed_cases(failing) == junit_failures(report.to_dict()) == expected
    messages = [f.get("message") for f in failing.iter("failure")]
    assert all("beyond the allowed error" in m for m in messages[:2]) and "weights[" in messages[2]


def test_html_report_is_self_contained_with_a_histogram_per_output(three):
    from html.parser import HTMLParser

    from nnspec.render import html

    page = html(nnspec.check(three))

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.links = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.links += [v for k, v in attrs if k in ("src", "href")]

    parser = Tags()
    parser.feed(page)
    assert parser.tags.count("svg") == 1 and "rect" in parser.tags  # one output, one histogram
    assert parser.links == []  # nothing to fetch: the page stands alone
    assert "passed" in page


def test_histogram_counts_every_element(three):
    out = nnspec.check(three).outputs[0]
    assert sum(out.histogram.values()) == out.elements


def test_a_bound_folded_for_memory_says_so(three):
    """Checked end to end only (a model without nnspec's metadata), a bound folded for memory is noted; where
    every layer is also checked by its own step, the end-to-end bound is folded on purpose, without a note."""
    from nnspec.affine import jacobian_budget

    model = nnspec.to_onnx(three)
    del model.metadata_props[:]
    with jacobian_budget(0):  # every Jacobian is over budget: all folded
        report = nnspec.check(three, onnx_model=model)
    assert report.passed and not report.steps
    assert any("looser from layer 'l1'" in note for note in report.notes)
    assert not any("looser" in note for note in nnspec.check(three, onnx_model=model).notes)
    stepped = nnspec.check(three)
    assert stepped.steps and not any("looser" in note for note in stepped.notes)


def wide_tanh(width: int, depth: int) -> nnspec.Spec:
    layer = {"type": "dense", "units": width, "activation": "tanh"}
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": f"tanh{width}x{depth}",
            "inputs": [{"name": "x", "shape": [width]}],
            "layers": [{**layer, "weights": {"init": "he_normal", "seed": i}} for i in range(depth)],
        }
    )


def test_a_weak_bound_is_reported_with_what_it_allows():
    """On a wide network the bound is far above the differences seen; the report says so and by how much."""
    report = nnspec.check(wide_tanh(256, 4))
    assert report.passed
    (note,) = [n for n in report.notes if "of the derived bound" in n]
    out = report.outputs[0]
    assert out.worst_margin < 1e-3
    assert f"used {out.worst_margin:.1e} of the derived bound" in note and "own step" in note
    model = nnspec.to_onnx(wide_tanh(256, 4))
    del model.metadata_props[:]  # not compiled by nnspec: checked end to end only, and told how to sharpen it
    (note,) = [n for n in nnspec.check(wide_tanh(256, 4), onnx_model=model).notes if "of the derived bound" in n]
    assert "--rtol/--atol" in note


def test_a_close_bound_is_not_called_weak(three):
    report = nnspec.check(wide_tanh(8, 2))
    assert report.outputs[0].worst_margin > 1e-3
    assert not any("of the derived bound" in n for n in report.notes + nnspec.check(three).notes)


def test_a_declared_tolerance_is_not_called_weak():
    spec = wide_tanh(256, 4)
    data = spec.model_dump(mode="json", exclude_none=True)
    data["tolerance"] = {spec.layers[-1].name or "dense_3": {"atol": 1e-4}}
    report = nnspec.check(nnspec.from_dict(data))
    assert report.passed and not any("of the derived bound" in n for n in report.notes)


# --- layer by layer ----------------------------------------------------------------------------------


def relu_stack(width: int, depth: int) -> nnspec.Spec:
    layer = {"type": "dense", "units": width, "activation": "relu"}
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": f"relu{width}x{depth}",
            "inputs": [{"name": "x", "shape": [width]}],
            "layers": [
                {**layer, "weights": {"init": "he_normal", "seed": i}, "bias": {"init": "normal", "seed": 9 + i}}
                for i in range(depth)
            ],
        }
    )


def with_weight_scaled(graph, layer: int, factor: float):
    """The graph with the largest weight of one layer multiplied by `factor` (a small, real fault)."""
    node = graph.nodes[layer]
    w = node.params["weights"].copy()
    w.flat[np.argmax(np.abs(w))] *= factor
    changed = dataclasses.replace(node, params={**node.params, "weights": w})
    return dataclasses.replace(graph, nodes=tuple(changed if n is node else n for n in graph.nodes))


def test_every_layer_is_checked_against_its_own_step(three):
    report = nnspec.check(three)
    assert [s.name for s in report.steps] == [n.name for n in nnspec.graph(three).nodes]
    assert all(s.passed and s.candidate == "onnxruntime" for s in report.steps)
    assert report.to_dict()["steps"][0]["passed"] is True


def test_a_small_fault_deep_in_a_wide_network_is_caught_and_located():
    """A 5% change of one weight in layer 4 of a 256-wide, 5-deep stack moves the outputs by far less than
    the end-to-end bound allows (it passes there), but its own step is tight enough to see it."""
    spec = relu_stack(256, 5)
    faulty = to_bytes(export_graph(with_weight_scaled(nnspec.graph(spec), 3, 1.05)))
    report = nnspec.check(spec, onnx_model=faulty)
    assert all(o.passed for o in report.outputs)  # end to end, within the bound
    assert not report.passed
    failing = [s.name for s in report.steps if not s.passed]
    assert failing[0] == "dense_3" and report.divergence["layer"] == "dense_3"
    assert report.divergence["from_own_inputs"] is True
    assert nnspec.check(spec, onnx_model=to_bytes(nnspec.to_onnx(spec))).passed  # the same model, unchanged


def test_models_not_compiled_by_nnspec_are_checked_end_to_end_only(three):
    model = nnspec.to_onnx(three)
    del model.metadata_props[:]
    report = nnspec.check(three, onnx_model=to_bytes(model))
    assert report.passed and report.steps == []
    assert any("checked end to end only" in note for note in report.notes)
