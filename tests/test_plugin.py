"""The pytest plugin: `pytest --nnspec PATH` collects each spec as a test item that cross-checks it."""

from __future__ import annotations

import dataclasses
import json
import re

import onnxruntime  # noqa: F401
import pytest

import nnspec.onnxio.export  # noqa: F401
from nnspec.layers import LAYERS

# NOTE: onnx and onnxruntime are imported here, before pytester snapshots sys.modules: it drops modules
# first imported during an in-process run, and importing onnx's protobuf extension a second time aborts.

pytest_plugins = ["pytester"]


@pytest.fixture
def specs(pytester, party, three_layer):
    """specs/party.json and specs/nested/three.json inside pytester's folder."""
    folder = pytester.mkdir("specs")
    (folder / "party.json").write_text(json.dumps(party))
    (folder / "nested").mkdir()
    (folder / "nested" / "three.json").write_text(json.dumps(three_layer))
    return folder


def test_each_spec_is_an_item_named_by_its_path(pytester, specs):
    result = pytester.runpytest_inprocess("--nnspec", "specs", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["specs/nested/three.json::nnspec PASSED*", "specs/party.json::nnspec PASSED*"])


def test_files_and_folders_repeat(pytester, specs, party):
    other = pytester.mkdir("other")
    (other / "solo.json").write_text(json.dumps(party))
    result = pytester.runpytest_inprocess("--nnspec", "specs/party.json", "--nnspec", "other", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["other/solo.json::nnspec PASSED*", "specs/party.json::nnspec PASSED*"])


def test_invalid_spec_fails_with_the_clean_message(pytester, specs, party):
    party["layers"][0]["weights"] = [[-4, 1, 7]]
    (specs / "bad.json").write_text(json.dumps(party))
    result = pytester.runpytest_inprocess("--nnspec", "specs")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "error: specs/bad.json: layers[0].weights: expected shape [1, 2] (1 units x 2 inputs" in out
    assert "FAILED specs/bad.json::nnspec - error: specs/bad.json: layers[0].weights" in out
    assert "Traceback" not in out and "api.py" not in out


def test_disagreement_fails_with_the_report(pytester, specs, monkeypatch):
    original = LAYERS["dense"]

    def no_bias(node, g, inputs, out):  # an exporter bug: every dense layer's bias dropped
        params = {k: v for k, v in node.params.items() if k != "bias"}
        return original.onnx(dataclasses.replace(node, params=params), g, inputs, out)

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, onnx=no_bias))
    result = pytester.runpytest_inprocess("--nnspec", "specs")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "the ONNX form disagrees with the spec: outputs differ: decide\n" in out
    assert "FAILED specs/party.json::nnspec - the ONNX form disagrees" in out
    assert "nnspec check: party" in out and "abs err" in out  # the rendered table
    assert re.search(r"decide: \d+ of \d+ elements differ", out)  # the report, as `nnspec check` prints it
    assert "Traceback" not in out


def test_without_the_option_the_plugin_does_nothing(pytester, specs):
    result = pytester.runpytest_inprocess("specs")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_missing_path_is_a_usage_error(pytester):
    result = pytester.runpytest_inprocess("--nnspec", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--nnspec nowhere: no such file or folder*"])


def test_in_addopts_it_applies_like_testpaths(pytester, specs):
    """From addopts, specs join a plain `pytest`, but `pytest test_x.py` runs that file alone."""
    pytester.makeini("[pytest]\naddopts = --nnspec specs\n")
    pytester.makepyfile(test_x="def test_x(): pass")
    pytester.runpytest_inprocess().assert_outcomes(passed=3)
    pytester.runpytest_inprocess("test_x.py").assert_outcomes(passed=1)
    pytester.runpytest_inprocess("specs/party.json").assert_outcomes(passed=1)
    pytester.runpytest_inprocess("test_x.py", "--nnspec", "specs").assert_outcomes(passed=3)
    pytester.runpytest_inprocess("-m", "not nnspec").assert_outcomes(passed=1, deselected=2)


def test_registered_as_an_installed_plugin(pytester, specs):
    """The pytest11 entry point in pyproject.toml loads the plugin in a fresh process."""
    result = pytester.runpytest_subprocess("--nnspec", "specs")
    result.assert_outcomes(passed=2)
