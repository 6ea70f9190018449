"""`--threads N`: onnxruntime's intra-op pool and NumPy's BLAS capped for a command; folder checks share the cores."""

from __future__ import annotations

import json

import pytest
from threadpoolctl import threadpool_info

import nnspec
from nnspec import threads
from nnspec.cli import hoist_limits
from nnspec.runners import OnnxRuntimeRunner


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_limited_caps_blas_and_new_sessions_then_restores(party):
    model = nnspec.to_onnx(nnspec.from_dict(party)).SerializeToString()
    before = _blas_threads()
    with threads.limited(1):
        assert _blas_threads() == {1}
        assert threads.session_threads() == 1
        inside = OnnxRuntimeRunner(model)
    assert inside.session.get_session_options().intra_op_num_threads == 1
    assert _blas_threads() == before and threads.session_threads() == 0
    assert OnnxRuntimeRunner(model).session.get_session_options().intra_op_num_threads == 0  # onnxruntime's default


def test_no_limit_changes_nothing():
    before = _blas_threads()
    with threads.limited(None):
        assert _blas_threads() == before and threads.session_threads() == 0


@pytest.mark.parametrize(
    ("given", "processes", "cores", "expected"),
    [
        (None, 1, 8, None),  # one process: the libraries' own defaults
        (None, 2, 8, 4),  # the cores shared out
        (None, 3, 8, 2),
        (None, 16, 8, 1),  # never below one
        (3, 4, 8, 3),  # as given
    ],
)
def test_folder_workers_share_the_cores(monkeypatch, given, processes, cores, expected):
    monkeypatch.setattr(threads, "cores", lambda: cores)
    assert threads.per_process(given, processes) == expected


def test_threads_is_hoisted_like_limit():
    argv = ["check", "x.json", "--threads", "2", "--limit=max-layers=5", "--threads=3"]
    assert hoist_limits(argv) == ["--threads", "2", "--limit=max-layers=5", "--threads=3", "check", "x.json"]


def test_check_with_threads(cli, tmp_path, party, monkeypatch):
    seen = []
    original = OnnxRuntimeRunner.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        seen.append(self.session.get_session_options().intra_op_num_threads)

    monkeypatch.setattr(OnnxRuntimeRunner, "__init__", spy)
    path = tmp_path / "party.json"
    path.write_text(json.dumps(party))
    result = cli("--threads", "1", "check", path)
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {1}
    assert threads.session_threads() == 0  # restored when the command ends


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_threads_must_be_a_positive_count(cli, party, tmp_path, value):
    path = tmp_path / "party.json"
    path.write_text(json.dumps(party))
    assert cli("--threads", value, "check", path).exit_code == 2
