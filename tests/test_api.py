"""The Python API as a script uses it: tolerances, inputs and the report's text, with clear errors."""

from __future__ import annotations

import copy
import inspect
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import PARTY, THREE_LAYER
from onnx import numpy_helper

import nnspec
from nnspec.harness import Tolerance, compare

BROKEN_FACTOR = 1.01  # one weight matrix scaled by 1%: far beyond any rounding, so every check must see it


def broken_model(spec: nnspec.Spec, factor: float = BROKEN_FACTOR) -> onnx.ModelProto:
    """The spec's ONNX form with its first weight matrix scaled by `factor`."""
    model = nnspec.to_onnx(spec)
    init = next(i for i in model.graph.initializer if i.name.endswith(".weights"))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))
    return model


def spec_with_tolerance(tolerance: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(THREE_LAYER)
    if tolerance is not None:
        data["tolerance"] = {"l3": tolerance}
    return data


# ---- 1. A tolerance can never make a check that cannot fail


INVALID = [float("nan"), -1.0, -1e-12, float("inf"), -float("inf")]
NOT_NUMBERS = ["1e-3", True, None, [1e-3]]


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", INVALID, ids=repr)
def test_api_refuses_a_tolerance_that_is_not_a_finite_number_at_least_zero(name, value):
    spec = nnspec.from_dict(THREE_LAYER)
    with pytest.raises(nnspec.InputDataError, match=f"{name}: expected a finite number >= 0"):
        nnspec.check(spec, onnx_model=broken_model(spec), **{name: value})


@pytest.mark.parametrize("value", [v for v in NOT_NUMBERS if v is not None], ids=repr)
def test_api_refuses_a_tolerance_that_is_not_a_number(value):
    with pytest.raises(nnspec.InputDataError, match="rtol: expected a finite number >= 0"):
        nnspec.check(nnspec.from_dict(THREE_LAYER), rtol=value)


@pytest.mark.parametrize("kwargs", [{"rtol": math.nan}, {"atol": -1}, {"mode": "given", "rtol": -0.5}])
def test_tolerance_objects_refuse_invalid_values_however_made(kwargs):
    with pytest.raises(nnspec.InputDataError):
        Tolerance(**kwargs) if "mode" in kwargs else Tolerance.given(kwargs.get("rtol"), kwargs.get("atol"))


def test_tolerance_mode_must_be_known():
    with pytest.raises(nnspec.NNSpecError, match="'derived' or 'given'"):
        Tolerance("loose")


# Every way a tolerance enters, with a tight valid value: the broken model must fail each time.
WAYS = {
    "api rtol": lambda spec, path, model: nnspec.check(spec, onnx_model=model, rtol=1e-6).passed,
    "api atol": lambda spec, path, model: nnspec.check(spec, onnx_model=model, atol=1e-7).passed,
    "api both": lambda spec, path, model: nnspec.check(spec, onnx_model=model, rtol=1e-6, atol=1e-7).passed,
    "api numpy scalar": lambda spec, path, model: nnspec.check(spec, onnx_model=model, rtol=np.float32(1e-6)).passed,
    "api default": lambda spec, path, model: nnspec.check(spec, onnx_model=model).passed,
}


@pytest.mark.parametrize("way", list(WAYS))
def test_a_broken_model_fails_for_every_way_of_passing_a_tolerance_in_the_api(way, tmp_path):
    spec = nnspec.from_dict(THREE_LAYER)
    assert WAYS[way](spec, None, broken_model(spec)) is False


@pytest.mark.parametrize("flags", [["--rtol", "1e-6"], ["--atol", "1e-7"], ["--rtol", "0", "--atol", "0"], []])
def test_a_broken_model_fails_for_every_way_of_passing_a_tolerance_on_the_command_line(cli, tmp_path, flags):
    spec_path = tmp_path / "three.json"
    spec_path.write_text(json.dumps(THREE_LAYER))
    model_path = tmp_path / "broken.onnx"
    onnx.save(broken_model(nnspec.load(spec_path)), model_path)
    result = cli("check", spec_path, "--onnx", model_path, *flags)
    assert result.exit_code == 1, result.stdout + result.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "-inf", "1e-3x"])
@pytest.mark.parametrize("flag", ["--rtol", "--atol"])
def test_the_command_line_refuses_invalid_tolerances(cli, write_spec, flag, value):
    result = cli("check", write_spec(THREE_LAYER), flag, value)
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}': expected a finite number >= 0, found" in result.stderr


def test_a_broken_model_fails_with_a_tolerance_declared_in_the_spec(tmp_path):
    spec = nnspec.from_dict(spec_with_tolerance({"rtol": 1e-6, "atol": 1e-7}))
    report = nnspec.check(spec, onnx_model=broken_model(spec))
    assert not report.passed and report.tolerance.mode == "derived"
    assert any(not o.passed for o in report.outputs)


@pytest.mark.parametrize("tolerance", [{"rtol": -1}, {"atol": -1e-9}, {"rtol": "1e-3"}])
def test_the_spec_refuses_invalid_tolerances(tolerance):
    with pytest.raises(nnspec.SpecError, match=r"tolerance\.l3\.(rtol|atol)"):
        nnspec.from_dict(spec_with_tolerance(tolerance))


def test_the_spec_refuses_nan_and_infinity_in_its_text(write_spec):
    text = json.dumps(spec_with_tolerance({"rtol": 1e-3})).replace("0.001", "NaN")
    with pytest.raises(nnspec.SpecError, match="NaN and Infinity are not allowed"):
        nnspec.load(write_spec(text))


# ---- 2. One array for a single-input model


def test_check_takes_one_array_for_a_single_input_model():
    spec = nnspec.from_dict(PARTY)
    x = np.array([[1.0, 3.0], [0.0, 0.0]])
    by_name = nnspec.check(spec, inputs={"p": x})
    alone = nnspec.check(spec, inputs=x)
    assert alone.passed and alone.to_dict()["outputs"] == by_name.to_dict()["outputs"]
    assert not nnspec.check(spec, onnx_model=broken_model(spec), inputs=x).passed


def test_check_with_one_array_for_a_model_of_several_inputs_names_them():
    spec = nnspec.load(Path(__file__).parent.parent / "specs" / "two_heads.json")
    with pytest.raises(nnspec.InputDataError, match="keyed by input name .*2 inputs: features, context"):
        nnspec.check(spec, inputs=np.zeros((2, 4)))


@pytest.mark.parametrize("given", [object(), {1, 2}, 3.5, "p"], ids=["object", "set", "float", "str"])
def test_check_with_something_other_than_arrays_is_a_clear_input_error(given):
    with pytest.raises(nnspec.InputDataError, match="input 'p'|keyed by input name"):
        nnspec.check(nnspec.from_dict(PARTY), inputs=given)


def test_the_numpy_model_takes_one_array_in_run_too():
    model = nnspec.to_numpy(nnspec.from_dict(PARTY))
    np.testing.assert_array_equal(model.run(np.array([[1.0, 3.0]]))["decide"], [[1.0]])


# ---- 7. ulps where they mean something


def test_ulps_near_zero_are_measured_at_the_outputs_scale():
    # A softmax tail: 1e-30 beside 1. Off by 1e-37 there, which is 1e7 of its own ulps but nothing at its scale.
    ref = np.array([[1.0, 1e-30]], dtype=np.float32)
    cand = np.array([[1.0, 1e-30 + 1e-37]], dtype=np.float32)
    result = compare("probs", [2], [("b", ref, cand, np.full((1, 2), 1e-6))], np.dtype(np.float32))
    assert result.passed and 0 < result.max_ulps < 1 and result.max_rel_error < 1e-6


def test_ulps_within_the_outputs_range_are_the_values_own():
    ref = np.array([[1.0, 0.5]], dtype=np.float32)
    cand = ref.copy()
    cand[0, 1] = np.nextafter(np.float32(0.5), np.float32(1), dtype=np.float32)
    cand[0, 1] = np.nextafter(cand[0, 1], np.float32(1), dtype=np.float32)
    result = compare("y", [2], [("b", ref, cand, np.ones((1, 2)))], np.dtype(np.float32))
    assert result.max_ulps == 2


def test_no_passing_output_of_the_examples_reads_as_alarming():
    report = nnspec.check(nnspec.load(Path(__file__).parent.parent / "specs" / "digits_mlp.json"))
    assert report.passed
    # the derived bound allows k u relative to the terms (k = 785): a few thousand ulps at most
    assert all(o.max_ulps < 1e4 and o.max_rel_error < 1e-2 for o in report.outputs), [
        (o.name, o.max_ulps, o.max_rel_error) for o in report.outputs
    ]


# ---- 10. A report reads as text; the API documents itself


def test_printing_a_report_shows_the_table_and_verdict_not_a_dataclass():
    report = nnspec.check(nnspec.from_dict(PARTY))
    text = str(report)
    assert "PASS" in text and "err/allowed" in text and "decide" in text
    assert not text.startswith("Report(")


def test_help_on_check_describes_its_arguments_and_result():
    doc = inspect.getdoc(nnspec.check) or ""
    for word in ("onnx_model", "inputs", "rtol, atol", "Returns", "Report", "worst_margin", "Raises"):
        assert word in doc


def test_non_finite_given_inputs_are_said_in_the_report():
    report = nnspec.check(nnspec.from_dict(PARTY), inputs=np.array([[np.nan, 1.0], [0.0, 0.0]]))
    assert any("input 'p' holds 1 non-finite value" in n and "[0, 0]" in n for n in report.notes)


def test_another_models_file_is_named_as_another_spec(tmp_path):
    other = copy.deepcopy(PARTY)
    other["name"] = "party_v2"
    other["layers"][0]["weights"] = [[-3, 1]]
    model = nnspec.to_onnx(nnspec.from_dict(other))
    notes = nnspec.check(nnspec.from_dict(PARTY), onnx_model=model).notes
    assert any("compiled from another spec (model 'party_v2')" in n for n in notes)
    changed = copy.deepcopy(PARTY)
    changed["layers"][0]["bias"] = [2.5]
    notes = nnspec.check(nnspec.from_dict(changed), onnx_model=nnspec.to_onnx(nnspec.from_dict(PARTY))).notes
    assert any("a different network named 'party'" in n for n in notes)


def test_a_check_tells_its_stages_as_it_goes(three_layer):
    told: list[str] = []
    assert nnspec.check(nnspec.from_dict(three_layer), tell=told.append).passed
    assert told == [
        "every side twice on 4 input batches, and the error bounds",
        "each of 3 layers (onnxruntime) against its own step",
        "every weight and bias (onnxruntime) against the spec's",
    ]


def test_stages_are_drawn_on_a_terminal_only():
    import io

    from rich.console import Console

    from nnspec.progress import stages

    for terminal in (True, False):
        stream = io.StringIO()
        with stages(Console(file=stream, force_terminal=terminal, width=80), "checking") as tell:
            tell("the steps")
        assert ("checking" in stream.getvalue()) is terminal
