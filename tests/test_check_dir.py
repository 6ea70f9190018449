"""`nnspec check DIR`: every spec under a folder, in parallel processes, one summary and one exit code."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from nnspec.batch import FolderResult, Shard, _map_isolated, check_folder, exit_code
from nnspec.layers import LAYERS
from nnspec.progress import bar


@pytest.fixture
def folder(tmp_path, party, three_layer):
    """party.json and nested/three.json: two valid specs, one in a subfolder."""
    root = tmp_path / "specs"
    (root / "nested").mkdir(parents=True)
    (root / "party.json").write_text(json.dumps(party))
    (root / "nested" / "three.json").write_text(json.dumps(three_layer))
    return root


@pytest.fixture
def broken_bias(monkeypatch):
    """An exporter bug in this process: every dense layer's bias is dropped from the ONNX model."""
    original = LAYERS["dense"]

    def no_bias(node, g, inputs, out):
        params = {k: v for k, v in node.params.items() if k != "bias"}
        return original.onnx(dataclasses.replace(node, params=params), g, inputs, out)

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, onnx=no_bias))


def _rows(stdout: str) -> dict[str, list[str]]:
    """The summary table's cells by spec, from the rendered table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 4 and cells[0].endswith(".json"):
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_all_pass_exits_0(cli, folder, jobs):
    result = cli("check", folder, "--jobs", jobs)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert list(rows) == ["nested/three.json", "party.json"]  # sorted, relative to the folder
    assert all(cells[0] == "pass" and float(cells[1]) < 1 for cells in rows.values())  # worst err/bound
    assert "PASS: all 2 specs agree" in result.stdout


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_invalid_spec_exits_2_and_the_others_are_still_checked(cli, folder, jobs, party):
    party["layers"][0]["activation"] = "sigmoidd"
    (folder / "bad.json").write_text(json.dumps(party))
    (folder / "nested" / "empty.json").write_text("")
    result = cli("check", folder, "-j", jobs)
    assert result.exit_code == 2, result.output
    rows = _rows(result.stdout)
    assert [cells[0] for cells in rows.values()] == ["invalid", "invalid", "pass", "pass"]
    assert rows["bad.json"][2].startswith("layers[0].activation")  # the path is left out: the row names the file
    assert "Traceback" not in result.output


def test_a_disagreement_exits_1_even_beside_an_invalid_spec(cli, folder, party, broken_bias):
    del party["layers"][0]["bias"]  # without a bias the broken exporter is still right
    (folder / "no_bias.json").write_text(json.dumps(party))
    (folder / "bad.json").write_text("{")
    result = cli("check", folder, "--jobs", "1")  # in this process, where the exporter is broken
    assert result.exit_code == 1, result.output
    rows = _rows(result.stdout)
    assert {name: cells[0] for name, cells in rows.items()} == {
        "bad.json": "invalid",
        "nested/three.json": "FAIL",
        "no_bias.json": "pass",
        "party.json": "FAIL",
    }
    assert rows["party.json"][2] == "outputs differ: decide"
    assert re.search(
        r"decide: \d+ of \d+ elements differ", result.stdout
    )  # each failing spec's report follows the table
    assert "FAIL: 2 disagree, 1 invalid (4 specs)" in result.stdout


def test_a_bug_on_one_spec_does_not_stop_the_others(cli, folder, monkeypatch):
    original = LAYERS["dense"]

    def crash(node, g, inputs, out):
        if node.name == "decide":
            raise RuntimeError("boom")
        return original.onnx(node, g, inputs, out)

    monkeypatch.setitem(LAYERS, "dense", dataclasses.replace(original, onnx=crash))
    result = cli("check", folder, "--jobs", "1")
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert rows["nested/three.json"][0] == "pass" and rows["party.json"][0] == "error"
    assert "RuntimeError: boom" in result.stdout  # the traceback: this is a bug
    assert "FAIL: 1 crashed nnspec (2 specs)" in result.stdout


def _die_on_two(x: int) -> int:
    if x == 2:
        os._exit(3)
    return 10 * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_process_that_dies_takes_only_its_own_item_down(jobs):
    ended = []
    items = [1, 3, 4] if jobs == 1 else [1, 2, 3, 4]  # in this process, dying would end the test run
    results = _map_isolated(_die_on_two, items, jobs, lambda x: -x, ended.append)
    assert results == [10 * x if x != 2 else -2 for x in items]
    assert ended == [1] * len(items)  # one step of the progress bar per item, the dead one included


def test_the_progress_bar_is_drawn_on_a_terminal_only():
    for terminal in (True, False):
        stream = io.StringIO()
        with bar(Console(file=stream, force_terminal=terminal, width=60), 3, "checking specs") as done:
            for _ in range(3):
                done(1)
        assert ("checking specs" in stream.getvalue()) is terminal


def test_json_is_a_list_of_results_the_same_for_any_jobs(cli, folder, tmp_path):
    (folder / "bad.json").write_text(json.dumps({"format": "nnspec/1"}))
    outputs = []
    for jobs in ("1", "2"):
        report = tmp_path / f"r{jobs}.json"
        assert cli("check", folder, "--jobs", jobs, "--json", report).exit_code == 2
        outputs.append(json.loads(report.read_text()))
    assert outputs[0] == outputs[1]
    results = outputs[0]
    assert [r["path"] for r in results] == [
        (folder / n).as_posix() for n in ("bad.json", "nested/three.json", "party.json")
    ]
    assert [(r["passed"], r["exit_code"]) for r in results] == [(False, 2), (True, 0), (True, 0)]
    assert results[0]["report"] is None and "expected a 'inputs' here" in results[0]["error"]
    assert results[2]["error"] is None and results[2]["report"]["outputs"][0]["name"] == "decide"


def test_json_to_stdout_replaces_the_table(cli, folder):
    result = cli("check", folder, "--json", "-")
    assert result.exit_code == 0
    assert [r["passed"] for r in json.loads(result.stdout)] == [True, True]


@pytest.mark.parametrize("flag", ["--onnx", "--inputs", "--markdown"])
def test_single_spec_flags_with_a_folder_exit_2(cli, folder, tmp_path, flag):
    result = cli("check", folder, flag, tmp_path / "x")
    assert result.exit_code == 2
    assert f"{flag} applies to one spec, but {folder} is a folder" in result.stderr


def test_a_folder_without_specs_exits_2(cli, tmp_path):
    result = cli("check", tmp_path)
    assert result.exit_code == 2 and "expected *.json specs in this folder or below it, found none" in result.stderr


def test_jobs_must_be_positive(cli, folder):
    assert cli("check", folder, "--jobs", "0").exit_code == 2


def test_folder_flags_reach_every_check(cli, folder):
    result = cli("check", folder, "-j", "1", "--rtol", "0", "--atol", "0", "--opset", "13", "--json", "-")
    reports = [r["report"] for r in json.loads(result.stdout)]
    assert [(r["tolerance"]["rtol"], r["tolerance"]["atol"]) for r in reports] == [(0, 0), (0, 0)]
    assert all("opset 13" in json.dumps(r) for r in reports)
    assert cli("check", folder, "--opset", "12").exit_code == 2  # refused once, before any spec is checked


def test_exit_code_rule():
    def results(*codes):
        return [FolderResult(Path(f"{i}.json"), c) for i, c in enumerate(codes)]

    assert exit_code(results(0, 0)) == 0
    assert exit_code(results(0, 2)) == 2
    assert exit_code(results(2, 1, 0)) == 1  # a disagreement outranks an invalid spec


def test_check_folder_api(folder):
    results = check_folder(folder, jobs=1, seed=3)
    assert [r.path.relative_to(folder).as_posix() for r in results] == ["nested/three.json", "party.json"]
    assert all(r.passed and r.report["passed"] and 0 <= r.worst_margin < 1 for r in results)
    assert "seed 3" in results[0].report["inputs"]


def test_a_failing_layer_step_shows_in_the_summary_and_the_worst_margin():
    step = {"name": "hidden", "passed": False, "worst_margin": 7.0}
    report = {"problems": [], "outputs": [{"name": "out", "passed": True, "worst_margin": 0.01}], "steps": [step]}
    result = FolderResult(path=Path("net.json"), exit_code=1, report=report)
    assert result.summary == "layers differ from their own steps: hidden"
    assert result.worst_margin == 7.0


@given(names=st.sets(st.from_regex(r"[a-c]{1,2}(/[a-c.]{1,3}){0,2}", fullmatch=True), max_size=30), n=st.integers(1, 7))
def test_shards_are_disjoint_cover_the_folder_and_balance(names, n):
    folder = Path("/specs")
    paths = [folder / f"{name}.json" for name in sorted(names)]
    shares = [Shard(k, n).select(paths, folder) for k in range(1, n + 1)]
    assert sorted(p for share in shares for p in share) == sorted(paths)  # cover, and no spec twice
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    for share in shares:  # each share keeps the folder's order
        assert share == [p for p in paths if p in share]
    # the order is the relative paths as text, not Path's own ordering (which differs across Python versions)
    ordered = sorted(paths, key=lambda p: p.relative_to(folder).as_posix())
    assert shares[0] == [p for p in paths if p in ordered[::n]]


def test_shards_of_a_folder_split_its_results(cli, folder, tmp_path, three_layer):
    (folder / "more.json").write_text(json.dumps(three_layer))
    seen = []
    for k in (1, 2):
        report = tmp_path / f"shard{k}.json"
        result = cli("check", folder, "--shard", f"{k}/2", "-j", "1", "--json", report)
        assert result.exit_code == 0, result.output
        paths = [r["path"] for r in json.loads(report.read_text())]
        assert f"(shard {k}/2: {len(paths)} of 3 specs)" in " ".join(result.stdout.split())
        seen += paths
    # by relative path as text: more.json, nested/three.json, party.json; dealt out in turn
    assert seen == [(folder / n).as_posix() for n in ("more.json", "party.json", "nested/three.json")]


def test_an_empty_shard_passes(cli, folder, tmp_path):
    report = tmp_path / "r.json"
    result = cli("check", folder, "--shard", "3/3", "--json", report)
    assert result.exit_code == 0, result.output
    assert "shard 3/3 of" in result.stdout and "no specs (the folder has 2)" in result.stdout
    assert json.loads(report.read_text()) == []


@pytest.mark.parametrize("value", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3", "-1/2"])
def test_a_bad_shard_exits_2(cli, folder, value):
    result = cli("check", folder, "--shard", value)
    assert result.exit_code == 2
    assert f"--shard: expected K/N with 1 <= K <= N, such as 1/4, found {value!r}" in result.stderr


def test_shard_with_one_spec_exits_2(cli, folder):
    result = cli("check", folder / "party.json", "--shard", "1/2")
    assert result.exit_code == 2 and "--shard applies to a folder" in result.stderr
