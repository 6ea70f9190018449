"""The command line as CI logs and people read it: unwrapped output, reports on stdout, folders, help text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from conftest import PARTY, SPECS, THREE_LAYER

from nnspec.files import load_arrays, save_arrays
from nnspec.ir import TensorInfo

COMMANDS = ["validate", "show", "compile", "run", "check", "migrate", "limits", "schema"]


def nnspec_piped(*args: str | Path, columns: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`nnspec ARGS` in a child process whose stdout and stderr are pipes, as in a CI job."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    command = [sys.executable, "-c", "from nnspec.cli import main; main()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


# ---- 3. Piped output is not wrapped


def test_piped_check_output_keeps_messages_on_one_line_and_tables_whole(tmp_path):
    result = nnspec_piped("check", SPECS / "two_heads.json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    verdict = [line for line in lines if line.startswith("PASS: ")]
    assert len(verdict) == 1 and "tolerance: derived" in verdict[0]  # one line, for grep
    rows = [line for line in lines if line.startswith(("┃", "│", "┏", "┡", "└"))]
    assert len(rows) >= 3 + 4 and len({len(row) for row in rows}) == 1  # every row has its right border
    assert all(row.endswith(("┃", "│", "┓", "┩", "┘")) for row in rows)
    assert any("worst at" in row for row in rows) and max(map(len, rows)) > 80


def test_piped_error_messages_are_one_line(write_spec):
    bad = dict(PARTY, layers=[dict(PARTY["layers"][0], weights=[[-4, 1, 3]])])
    result = nnspec_piped("validate", write_spec(bad))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "layers[0].weights" in line


def test_columns_sets_the_width_of_piped_output():
    result = nnspec_piped("check", SPECS / "two_heads.json", columns="72")
    assert result.returncode == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 72


# ---- 4. '-' is stdout for every report


def _parses(flag: str, text: str) -> bool:
    if flag == "--json":
        return json.loads(text)["passed"] is True
    if flag == "--junit":
        return ET.fromstring(text).tag == "testsuites"
    if flag == "--markdown":
        return text.startswith("## nnspec check: `party` passed")
    return text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--junit", "--html"])
def test_a_report_to_stdout_is_the_whole_stdout(cli, write_spec, tmp_path, monkeypatch, flag):
    monkeypatch.chdir(tmp_path)
    result = cli("check", write_spec(PARTY), flag, "-")
    assert result.exit_code == 0 and _parses(flag, result.stdout)
    assert "┃" not in result.stdout and not (tmp_path / "-").exists()


def test_two_reports_on_stdout_are_refused(cli, write_spec):
    result = cli("check", write_spec(PARTY), "--json", "-", "--markdown", "-")
    assert (
        result.exit_code == 2 and "only one report can go to stdout ('-'), found --json and --markdown" in result.stderr
    )


def test_a_report_to_stdout_and_another_to_a_file(cli, write_spec, tmp_path):
    result = cli("check", write_spec(PARTY), "--junit", "-", "--markdown", tmp_path / "r.md")
    assert result.exit_code == 0 and _parses("--junit", result.stdout)
    assert (tmp_path / "r.md").read_text().startswith("## nnspec check")


def test_a_folders_junit_to_stdout(cli, write_spec, tmp_path):
    write_spec(PARTY, "party.json")
    result = cli("check", tmp_path, "--jobs", "1", "--junit", "-")
    assert result.exit_code == 0
    assert [s.get("name") for s in ET.fromstring(result.stdout)] == ["party.json"]


# ---- 5. Several runners: a runner column, outputs counted once


def test_two_runners_get_a_runner_column_and_outputs_count_once(cli, write_spec):
    result = cli("check", write_spec(PARTY), "--runner", "onnxruntime", "--runner", "onnx-reference")
    assert result.exit_code == 0
    header = next(line for line in result.stdout.splitlines() if "output" in line and "runner" in line)
    assert header
    rows = [line for line in result.stdout.splitlines() if "decide" in line and "│" in line]
    assert len(rows) == 2 and "onnxruntime" in rows[0] and "onnx-reference" in rows[1]
    assert "PASS: 1 output(s) by 2 runners" in result.stdout


def test_one_runner_has_no_runner_column(cli, write_spec):
    result = cli("check", write_spec(PARTY))
    assert "runner" not in next(line for line in result.stdout.splitlines() if "output" in line)
    assert "PASS: 1 output(s) over" in result.stdout


# ---- 6. Folders: JSON that is not a spec is skipped and listed; --exclude


@pytest.fixture
def folder_with_inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    (folder / "inputs").mkdir(parents=True)
    (folder / "party.json").write_text(json.dumps(PARTY))
    (folder / "inputs" / "p.json").write_text(json.dumps({"p": [[1, 3], [0, 0]]}))
    (folder / "inputs" / "bare.json").write_text("[[1, 3], [0, 0]]")
    (folder / "settings.json").write_text(json.dumps({"threshold": 0.5}))
    return folder


def test_a_folder_skips_json_that_is_not_a_spec_and_lists_it(cli, folder_with_inputs):
    result = cli("check", folder_with_inputs, "--jobs", "1")
    assert result.exit_code == 0, result.stdout
    assert "1 specs" in result.stdout and "all 1 specs agree" in result.stdout
    skipped = next(line for line in result.stdout.splitlines() if line.startswith("skipped "))
    assert skipped.startswith('skipped 3 JSON file(s) that are not specs (no "format" or "layers" key): ')
    assert "inputs/bare.json, inputs/p.json, settings.json" in skipped


@pytest.mark.parametrize(
    "broken",
    [
        {"format": "nnspec/1"},  # has "format": a spec missing its layers
        {"layers": []},
        {"fromat": "nnspec/1", "name": "x", "inputs": [], "layer": []},  # typos of both keys
        {"Format": "nnspec/1"},
    ],
)
def test_a_json_that_looks_like_a_spec_but_is_broken_stays_invalid(cli, folder_with_inputs, broken):
    (folder_with_inputs / "broken.json").write_text(json.dumps(broken))
    result = cli("check", folder_with_inputs, "--jobs", "1")
    assert result.exit_code == 2 and "invalid" in result.stdout and "broken.json" in result.stdout


def test_malformed_json_is_never_skipped(cli, folder_with_inputs):
    (folder_with_inputs / "typo.json").write_text('{"name": "x", "inputs": [}')
    result = cli("check", folder_with_inputs, "--jobs", "1")
    assert result.exit_code == 2 and "typo.json" in result.stdout


def test_exclude_leaves_files_out_by_relative_path_or_name(cli, folder_with_inputs):
    (folder_with_inputs / "draft.json").write_text(json.dumps({"format": "nnspec/1"}))  # invalid, but excluded
    result = cli("check", folder_with_inputs, "--jobs", "1", "--exclude", "draft.json", "--exclude", "inputs/*")
    assert result.exit_code == 0, result.stdout
    assert "skipped 2 file(s) matching --exclude: draft.json, inputs/bare.json" not in result.stdout
    assert "skipped 3 file(s) matching --exclude: draft.json, inputs/bare.json, inputs/p.json" in result.stdout
    assert "skipped 1 JSON file(s) that are not specs" in result.stdout


def test_a_folder_of_no_specs_is_an_error_that_says_what_was_skipped(cli, tmp_path):
    (tmp_path / "x.json").write_text('{"x": [[1]]}')
    result = cli("check", tmp_path)
    assert result.exit_code == 2 and "found none (1 JSON file(s) that are not specs, 0 excluded)" in result.stderr


def test_exclude_with_one_spec_is_refused(cli, write_spec):
    result = cli("check", write_spec(PARTY), "--exclude", "x")
    assert result.exit_code == 2 and "--exclude applies to a folder" in result.stderr


def test_the_pytest_plugin_skips_json_that_is_not_a_spec(folder_with_inputs):
    from nnspec.batch import find_specs

    found = find_specs(folder_with_inputs)
    assert [p.name for p in found.specs] == ["party.json"]
    assert [p.name for p in found.skipped] == ["bare.json", "p.json", "settings.json"]


# ---- 9. Help reads like other command-line tools'


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_plain_metavars_and_the_limit_option(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    for python_ish in ("<bool>", "<path>", "<int", "<float>", "list[", "{spec}", "x>=1"):
        assert python_ish not in result.stdout, (command, python_ish)
    assert "--limit NAME=VALUE" in result.stdout
    if command not in ("limits", "schema"):
        assert f"Usage: root {command} [OPTIONS] SPEC" in result.stdout


def test_help_lists_choices_and_input_formats(cli):
    check_help = cli("check", "--help").stdout
    assert "--provider [cpu|cuda]" in check_help and "--runner [onnxruntime|onnx-reference]" in check_help
    run_help = " ".join(cli("run", "--help").stdout.split())
    assert "--backend [numpy|onnxruntime]" in run_help
    for suffix in (".npy", ".csv", ".npz", ".json"):
        assert suffix in run_help.split("--output")[0]


def test_a_wrong_choice_is_a_plain_message(cli, write_spec):
    result = cli("run", write_spec(PARTY), "--input", "x.npy", "--backend", "torch")
    assert result.exit_code == 2
    assert "expected one of numpy, onnxruntime; found 'torch'" in result.stderr and "Value error" not in result.stderr


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version_flags(cli, flag):
    from nnspec import __version__

    result = cli(flag)
    assert result.exit_code == 0 and result.stdout.strip() == f"nnspec {__version__}"


# ---- 10. run: the provider only with onnxruntime; every number; .json and .csv outputs


def test_run_refuses_a_provider_for_the_numpy_backend(cli, write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2)))
    result = cli("run", write_spec(PARTY), "--input", tmp_path / "x.npy", "--provider", "cuda")
    assert result.exit_code == 2 and "--provider cuda applies to --backend onnxruntime" in result.stderr


def test_run_prints_every_number_of_a_large_batch(cli, write_spec, tmp_path):
    x = np.arange(2 * 1500, dtype=np.float32).reshape(1500, 2)
    np.save(tmp_path / "x.npy", x)
    result = cli("run", write_spec(PARTY), "--input", tmp_path / "x.npy")
    assert result.exit_code == 0 and "..." not in result.stdout
    printed = np.array(result.stdout.split("=", 1)[1].replace("[", " ").replace("]", " ").split(), dtype=np.float32)
    np.testing.assert_array_equal(printed, x @ np.array([-4, 1], dtype=np.float32) + 2)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".npz"])
def test_run_writes_outputs_that_read_back_exactly(cli, write_spec, tmp_path, suffix):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(5, 3)).astype(np.float32))
    out = tmp_path / f"y{suffix}"
    result = cli("run", write_spec(THREE_LAYER), "--input", tmp_path / "x.npy", "--output", out)
    assert result.exit_code == 0, result.stderr
    import nnspec

    expected = nnspec.to_numpy(nnspec.from_dict(THREE_LAYER))(np.load(tmp_path / "x.npy"))
    read = load_arrays(out, (TensorInfo("l3", (2,)),))["l3"]
    np.testing.assert_array_equal(read.astype(np.float32), expected)


def test_csv_output_puts_several_outputs_side_by_side_under_a_header(tmp_path):
    save_arrays(tmp_path / "y.csv", {"a": np.ones((2, 2), np.float32), "b": np.zeros((2, 1, 2), np.float64)})
    lines = (tmp_path / "y.csv").read_text().splitlines()
    assert lines[0] == "a[0],a[1],b[0,0],b[0,1]" and lines[1:] == ["1,1,0,0", "1,1,0,0"]


def test_json_output_holds_nan_as_null(tmp_path):
    save_arrays(tmp_path / "y.json", {"y": np.array([[1.5, np.nan, np.inf]], np.float32)})
    assert json.loads((tmp_path / "y.json").read_text()) == {"y": [[1.5, None, None]]}


def test_migrate_writes_each_matrix_row_on_one_line(cli, write_spec):
    result = cli("migrate", write_spec(PARTY))
    assert result.exit_code == 0
    assert '"weights": [\n        [-4, 1]\n      ],' in result.stdout and '"bias": [2]' in result.stdout
    assert json.loads(result.stdout) == PARTY
    three = cli("migrate", SPECS / "three_layer.json").stdout
    assert "        [0.5, -0.2],\n" in three
