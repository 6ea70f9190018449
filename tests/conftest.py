"""Shared fixtures: example specs as dicts, a way to write them to a folder, and the CLI runner."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

# CI runs the property tests derandomized so a red build is reproducible; `--hypothesis-profile=dev`
# explores fresh examples locally.
settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "specs"

PARTY: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "party",
    "inputs": [{"name": "p", "shape": [2]}],
    "layers": [{"type": "dense", "name": "decide", "units": 1, "weights": [[-4, 1]], "bias": [2]}],
}

THREE_LAYER: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "three",
    "inputs": [{"name": "p", "shape": [3]}],
    "layers": [
        {
            "type": "dense",
            "name": "l1",
            "units": 4,
            "activation": "tanh",
            "weights": {"init": "glorot_uniform", "seed": 1},
            "bias": {"init": "normal", "seed": 2},
        },
        {
            "type": "dense",
            "name": "l2",
            "units": 5,
            "activation": "relu",
            "weights": {"init": "he_normal", "seed": 3},
            "bias": {"init": "zeros"},
        },
        {
            "type": "dense",
            "name": "l3",
            "units": 2,
            "activation": "sigmoid",
            "weights": {"init": "uniform", "seed": 4, "low": -1, "high": 1},
        },
    ],
}


@pytest.fixture
def party() -> dict[str, Any]:
    return copy.deepcopy(PARTY)


@pytest.fixture
def three_layer() -> dict[str, Any]:
    return copy.deepcopy(THREE_LAYER)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec (a dict, or raw text) as `<tmp>/<name>` and return its path."""

    def write(spec: dict[str, Any] | str | bytes, name: str = "model.json") -> Path:
        path = tmp_path / name
        if isinstance(spec, bytes):
            path.write_bytes(spec)
        else:
            path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
        return path

    return write


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Invoke `nnspec ...` in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from nnspec.cli import app

    runner = CliRunner()

    def invoke(*args: str | Path) -> Any:
        return runner.invoke(app, [str(a) for a in args])

    return invoke
