"""The check's memory: a network too large for the check to keep its float64 copy (nnspec.ir.WIDE_KEPT_BYTES) is
checked one layer at a time and gets the same report, and each side lets go of its copy of the weights (an
onnxruntime session, the evaluator's transposed weights) once its end-to-end runs are done.

The large-network path is taken here at a size a test can afford, by setting the budgets to what such a network
would meet: no float64 copy kept, and the parameter test's scores in blocks of units.
`python benchmarks/bench_check_memory.py` measures the real thing (403 MB and, with --big, 3.05 GB of weights).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

import nnspec
from nnspec import ir, power
from nnspec.harness import Tolerance, cross_check
from nnspec.inputs import random_cases
from nnspec.onnxio.model import with_outputs
from nnspec.onnxio.tamper import scaled_entry
from nnspec.runners import NumpyRunner, OnnxRuntimeRunner, ReferenceRunner, Runner


def mlp(width: int, depth: int) -> nnspec.Spec:
    layers = [
        {
            "type": "dense",
            "name": f"l{i}",
            "units": width,
            "activation": "tanh",
            "weights": {"init": "he_normal", "seed": i},
            "bias": {"init": "normal", "seed": 50 + i},
        }
        for i in range(depth)
    ]
    return nnspec.from_dict(
        {"format": "nnspec/1", "name": "mlp", "inputs": [{"name": "x", "shape": [width]}], "layers": layers}
    )


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check as a network over WIDE_KEPT_BYTES meets it: each layer's float64 parameters made when read and
    dropped after, and the scores of the parameter test in blocks of 128 units."""
    monkeypatch.setattr(ir, "WIDE_KEPT_BYTES", 0)
    monkeypatch.setattr(power, "SCORE_BUDGET", 128 * 2049)


def test_the_check_holds_one_layers_float64_weights_at_a_time(large: None) -> None:
    """tracemalloc sees NumPy's arrays (not onnxruntime's own memory). The graph holds the float32 weights once and
    the evaluator once more, transposed; a layer's float64 weights and their magnitudes add 4x that layer's bytes
    (here one of 4 layers: 1x); the parameter test's rows and scores, and the traced values of its 512 extra
    rows, about 1x more. Measured: 3.48x (2026-11-30); with the whole network's float64 copy, its magnitudes and
    the parameter test's copy per batch, as before, 13x."""
    width, depth = 2048, 4
    weights = depth * (width * width + width) * 4
    tracemalloc.start()
    try:
        report = nnspec.check(mlp(width, depth))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.passed
    assert peak < 3.5 * weights, f"{peak / weights:.2f}x the weights"


def _without_scores(report: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    """The report less the parameter test's z values (made in blocks of units, BLAS may sum them in another
    order), and those values."""
    scores = []
    for result in report["weights"]:
        scores.append(result.pop("max_abs_z"))
        if result["worst"] is not None:
            scores.append(result["worst"].pop("z"))
            scores.append(result["worst"].pop("applied"))
    if report["divergence"] is not None and "parameters" in report["divergence"]:  # named by the parameter test
        scores.append(report["divergence"].pop("worst_margin"))
        report["divergence"].pop("parameters")
    return report, scores


def test_checked_one_layer_at_a_time_the_report_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A weight x1.01, found by the layer step and the parameter test: the same report whether the graph keeps its
    float64 copy and scores every unit at once, or not; the bounds and the steps to the bit."""
    spec = mlp(128, 3)
    weights = nnspec.graph(spec).node("l1").params["weights"]
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(weights)), weights.shape))
    model = scaled_entry(nnspec.to_onnx(spec), "l1.weights", index, 1.01, "initializer")
    kept, kept_scores = _without_scores(nnspec.check(spec, onnx_model=model).to_dict())
    monkeypatch.setattr(ir, "WIDE_KEPT_BYTES", 0)
    monkeypatch.setattr(power, "SCORE_BUDGET", 8 * 129)
    alone, alone_scores = _without_scores(nnspec.check(spec, onnx_model=model).to_dict())
    assert not kept["passed"] and kept["weights"][1]["flagged"] == 1 and kept["weights"][1]["worst"]["index"] == index
    assert alone == kept
    assert alone_scores == pytest.approx(kept_scores, rel=1e-6)


def test_a_closed_runner_runs_again_alike() -> None:
    spec = mlp(64, 2)
    graph = nnspec.graph(spec)
    feeds = random_cases(graph)[2].feeds
    numpy_runner, ort_runner = NumpyRunner(graph), OnnxRuntimeRunner(nnspec.api.export(spec).data())
    reference_runner = ReferenceRunner(nnspec.api.export(spec).data())
    for runner in (numpy_runner, ort_runner, reference_runner):
        before = runner.run(feeds)
        runner.close()  # type: ignore[attr-defined]
        after = runner.run(feeds)
        assert before.keys() == after.keys()
        for name in before:
            np.testing.assert_array_equal(before[name], after[name])
    numpy_runner.close()
    ort_runner.close()
    reference_runner.close()
    assert numpy_runner._model is None and ort_runner.session is None and reference_runner.session is None


def test_each_side_lets_go_of_its_copy_before_the_traced_model_opens() -> None:
    spec = mlp(64, 3)
    graph = nnspec.graph(spec)
    data = nnspec.api.export(spec).data()
    reference, candidate = NumpyRunner(graph), OnnxRuntimeRunner(data)
    held: list[bool] = []

    def traced(runner: Runner) -> Runner:
        held.append(reference._model is not None or candidate.session is not None)
        names = [n.name for n in graph.nodes] + [f"{n.name}/n" for n in graph.nodes]
        return OnnxRuntimeRunner(with_outputs(data, names))

    report = cross_check(graph, reference, candidate, random_cases(graph), Tolerance(), traced=traced, stepwise=True)
    assert report.passed and len(report.steps) == 3
    assert held == [False]
