"""The derived tolerance, measured: no false alarm on random valid networks, and injected faults caught.

NETWORKS random networks (nnspec.faults.random_spec, seeds [SEED, i]) are checked as they are: every
check must pass. Then each gets one fault of every kind that has a place in it (seeds [SEED, i, k]),
exported to ONNX and checked against the original spec. A fault counts as applying only when, computed
in float64 on the check's own inputs and rounded to the network's dtype (nnspec.faults.effect), it
moves some output by more than the derived tolerance there; the rest are equivalent mutants on those
inputs (no correct checker can see them) and are counted apart.

`pytest -s tests/test_faults.py` prints the figures. CI checks 1000 networks and injects faults into
the first 600 of them (about a minute on two cores); the longer run checks 10000 and injects faults
into every one: `NNSPEC_FAULT_NETWORKS=10000 pytest -s tests/test_faults.py` (about 12 minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import nnspec
from nnspec.activations import REGISTRY, Precision
from nnspec.faults import KINDS, effect, faulted_layer, gamma, inject, random_spec, traces
from nnspec.inputs import random_cases
from nnspec.ir import Graph
from nnspec.onnx_export import to_bytes, to_onnx

SEED = 2026
NETWORKS = int(os.environ.get("NNSPEC_FAULT_NETWORKS", "1000"))
# A faulty model's check costs about 15 ms and each network offers up to five faults: CI injects them
# into the first 600 networks (150 or more faults of every kind apply there); a longer run, into all.
FAULTED = NETWORKS if "NNSPEC_FAULT_NETWORKS" in os.environ else 600
CATCH_RATE = 0.99  # of the faults that apply, per kind
LOCATED_RATE = 0.95  # of the caught faults in one layer, the divergence names that layer
IN_ONE_LAYER = ("weight", "transpose", "activation", "bias")


@dataclass
class KindTally:
    """What happened to the faults of one kind."""

    injected: int = 0
    unchanged: int = 0  # equivalent: the outputs do not move at all (a step, clamp or dead relu absorbs the change)
    within: int = 0  # equivalent: the outputs move, by less than the derived tolerance
    within_caught: int = 0  # ... and yet the layer-by-layer check sees the faulty layer
    applies: int = 0
    caught: int = 0
    located: int = 0
    caught_float32: int = 0
    blames_onnxruntime: int = 0  # float32 only: the oracle finds onnxruntime, and only it, outside its bound
    missed: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    misblamed: list[str] = field(default_factory=list)


@dataclass
class Measurement:
    networks: int = 0
    float32: int = 0
    false_alarms: list[str] = field(default_factory=list)
    oracle_alarms: list[str] = field(default_factory=list)  # a side outside its bound of the float64 oracle
    faulted: int = 0
    kinds: dict[str, KindTally] = field(default_factory=lambda: {k: KindTally() for k in KINDS})
    check_seconds: float = 0.0
    fault_seconds: float = 0.0


def _outputs(report: nnspec.Report) -> list[tuple[Any, ...]]:
    return [(o.name, o.worst_margin, o.worst_at) for o in report.outputs if not o.passed]


def _measure(networks: int, faulted: int) -> Measurement:
    m = Measurement()
    for i in range(networks):
        start = time.perf_counter()
        data = random_spec(np.random.default_rng([SEED, i]))
        spec = nnspec.from_dict(data)
        graph = nnspec.graph(spec)
        m.networks += 1
        m.float32 += graph.dtype == np.float32
        report = nnspec.check(spec)
        if not report.passed:
            m.false_alarms.append(f"network {i}: {report.problems} {_outputs(report)}")
        blamed = [(o.candidate, o.name, o.worst_margin) for o in report.oracle if not o.passed]
        if blamed:
            m.oracle_alarms.append(f"network {i}: {blamed}")
        middle = time.perf_counter()
        m.check_seconds += middle - start
        if i >= faulted:
            continue
        m.faulted += 1
        cases = random_cases(graph)  # what nnspec.check ran: seed 0, the default batch sizes, the edges
        before = traces(graph, cases)
        for k, kind in enumerate(KINDS):
            faulty = inject(graph, kind, np.random.default_rng([SEED, i, k]))
            if faulty is None:
                continue
            tally = m.kinds[kind]
            tally.injected += 1
            moved = effect(graph, faulty, cases, before)
            if moved <= 1:
                tally.unchanged += moved == 0
                if moved > 0:
                    tally.within += 1
                    tally.within_caught += not nnspec.check(spec, onnx_model=to_bytes(to_onnx(faulty))).passed
                continue
            tally.applies += 1
            where = f"network {i}, {kind} fault (effect {moved:.3g} x the bound)"
            caught = nnspec.check(spec, onnx_model=to_bytes(to_onnx(faulty)))
            if caught.passed:
                tally.missed.append(where)
                continue
            tally.caught += 1
            layer = faulted_layer(graph, faulty)
            named = caught.divergence["layer"] if caught.divergence else None
            if kind in IN_ONE_LAYER:
                if named == layer:
                    tally.located += 1
                else:
                    tally.misplaced.append(f"{where}: injected into {layer!r}, divergence names {named!r}")
            if graph.dtype == np.float32:
                tally.caught_float32 += 1
                sides = {o.candidate for o in caught.oracle if not o.passed}
                if sides == {"onnxruntime"}:
                    tally.blames_onnxruntime += 1
                else:
                    tally.misblamed.append(f"{where}: the oracle finds outside their bounds: {sorted(sides)}")
        m.fault_seconds += time.perf_counter() - middle
    return m


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _print(m: Measurement) -> None:
    print(
        f"\nnnspec fault injection: {m.networks} random networks (seed {SEED}; {m.float32} float32, "
        f"{m.networks - m.float32} float64), {m.check_seconds + m.fault_seconds:.1f} s "
        f"({m.check_seconds:.1f} s clean checks, {m.fault_seconds:.1f} s faults)"
    )
    print(
        f"false alarms: {len(m.false_alarms)} of {m.networks} checks; "
        f"a side outside its bound of the float64 oracle: {len(m.oracle_alarms)}"
    )
    print(f"faults injected into the first {m.faulted} networks, each kind where it has a place:")
    header = ("kind", "injected", "unchanged", "within (caught)", "applies", "caught", "located", "blames ort")
    print(("{:<11}" + "{:>16}" * (len(header) - 1)).format(*header))
    for kind, t in m.kinds.items():
        located = _percent(t.located, t.caught) if kind in IN_ONE_LAYER else "n/a"
        row = (
            kind,
            t.injected,
            t.unchanged,
            f"{t.within} ({t.within_caught})",
            t.applies,
            f"{t.caught} {_percent(t.caught, t.applies)}",
            located,
            _percent(t.blames_onnxruntime, t.caught_float32),
        )
        print(("{:<11}" + "{:>16}" * (len(row) - 1)).format(*row))
    kept = [p for t in m.kinds.values() for p in (*t.missed, *t.misplaced, *t.misblamed)]
    for problem in [*m.false_alarms, *m.oracle_alarms, *kept]:
        print("  ", problem)


@pytest.fixture(scope="module")
def measured() -> Measurement:
    m = _measure(NETWORKS, FAULTED)
    _print(m)
    return m


# --- the measurements -------------------------------------------------------------------------------


def test_random_networks_raise_no_false_alarm(measured: Measurement) -> None:
    assert measured.networks == NETWORKS
    assert measured.false_alarms == []


def test_both_sides_stay_within_their_bound_of_the_float64_oracle(measured: Measurement) -> None:
    assert measured.oracle_alarms == []


@pytest.mark.parametrize("kind", KINDS)
def test_faults_that_change_the_outputs_are_caught(measured: Measurement, kind: str) -> None:
    t = measured.kinds[kind]
    assert t.applies >= measured.faulted // 5, f"too few {kind} faults apply to measure a rate: {t.applies}"
    assert t.caught >= CATCH_RATE * t.applies, t.missed


@pytest.mark.parametrize("kind", IN_ONE_LAYER)
def test_the_divergence_names_the_faulty_layer(measured: Measurement, kind: str) -> None:
    t = measured.kinds[kind]
    assert t.located >= LOCATED_RATE * t.caught, t.misplaced


@pytest.mark.parametrize("kind", KINDS)
def test_the_oracle_blames_onnxruntime_not_numpy(measured: Measurement, kind: str) -> None:
    t = measured.kinds[kind]
    assert t.blames_onnxruntime == t.caught_float32, t.misblamed


def test_the_random_networks_cover_what_the_issue_asks() -> None:
    activations: Counter[str] = Counter()
    depths: Counter[int] = Counter()
    widths: set[int] = set()
    float32 = matrix_inputs = two_outputs = 0
    for i in range(1000):
        graph = nnspec.graph(nnspec.from_dict(random_spec(np.random.default_rng([SEED, i]))))
        activations.update(n.activation.name for n in graph.nodes if n.activation is not None)
        depths[len(graph.nodes)] += 1
        widths.update(n.shape[-1] for n in graph.nodes)
        float32 += graph.dtype == np.float32
        matrix_inputs += len(graph.inputs[0].shape) > 1
        two_outputs += len(graph.outputs) == 2
    assert set(activations) == set(REGISTRY)
    assert set(depths) == {1, 2, 3, 4, 5, 6}  # 1-5 layers, plus a second output's head
    assert {1, 64} <= widths
    assert 300 < float32 < 700 and matrix_inputs > 100 and two_outputs > 200


# Networks on which the measurements once found both sides outside their bound of the float64 oracle
# (each fixed in nnspec/affine.py, where the comments say why): the float32 side rounds leaky_relu's
# alpha (0.01 is 0.0099999998), the argument of softmax's exp (u |n - max n|, 70 u at n - max n = -70)
# and underflows (exp(-110) is 0); a step flipped within its bound moves a whole log_softmax row.
FOUND = {
    "leaky_relu alpha": ([35], [{"name": "leaky_relu", "alpha": 1.969110697039019}]),
    "leaky_relu default alpha": ([54], ["leaky_relu"]),
    "softmax of spread inputs": ([7], ["softmax"]),
    "log_softmax after a flipped step": ([6], ["log_softmax", "hardlims", "log_softmax"]),
}


@pytest.mark.parametrize("shape, activations", FOUND.values(), ids=FOUND)
def test_both_sides_stay_within_their_bound_where_the_measurements_found_gaps(
    shape: list[int], activations: list[Any]
) -> None:
    layers = [{"type": "activation", "activation": a} for a in activations]
    spec = {"format": "nnspec/1", "name": "found", "inputs": [{"name": "x", "shape": shape}], "layers": layers}
    report = nnspec.check(nnspec.from_dict(spec))
    assert report.passed
    assert [(o.candidate, o.worst_margin) for o in report.oracle if not o.passed] == []


# --- the injector ----------------------------------------------------------------------------------

TWO_HEADS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "two_heads",
    "inputs": [{"name": "x", "shape": [3]}],
    "layers": [
        {
            "type": "dense",
            "name": "hidden",
            "units": 3,
            "activation": {"name": "leaky_relu", "alpha": 0.2},
            "weights": [[1.0, 2.0, 3.0], [2.0, 5.0, 6.0], [3.0, 6.0, 9.0]],
            "bias": [0.5, 0.0, -0.5],
        },
        {"type": "dense", "name": "left", "units": 2, "activation": "tanh", "weights": {"init": "normal", "seed": 1}},
        {
            "type": "dense",
            "name": "right",
            "inputs": ["x"],
            "units": 2,
            "weights": {"init": "normal", "seed": 2},
            "bias": {"init": "zeros"},
        },
    ],
    "outputs": ["left", "right"],
}


@pytest.fixture
def two_heads() -> Graph:
    return nnspec.graph(nnspec.from_dict(TWO_HEADS))


def _changed(before: np.ndarray, after: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(before != after)]


def test_a_weight_fault_changes_one_weight_by_1000_gamma_k(two_heads: Graph) -> None:
    for seed in range(20):
        faulty = inject(two_heads, "weight", np.random.default_rng(seed))
        assert faulty is not None
        layer = faulted_layer(two_heads, faulty)
        assert layer is not None
        w, w2 = two_heads.node(layer).params["weights"], faulty.node(layer).params["weights"]
        (i,) = _changed(w, w2)
        k = w.shape[1] + ("bias" in two_heads.node(layer).params)
        change = abs(float(w2.flat[i]) / float(w.flat[i]) - 1)
        assert change == pytest.approx(1000 * gamma(k, Precision.of(np.float32).u), rel=1e-3)


def test_a_transposed_matrix_is_never_a_symmetric_one(two_heads: Graph) -> None:
    assert inject(two_heads, "transpose", np.random.default_rng(0)) is None  # hidden's W is symmetric
    spec = {**TWO_HEADS, "layers": [{**TWO_HEADS["layers"][0], "weights": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}]}
    graph = nnspec.graph(nnspec.from_dict({**spec, "outputs": None}))
    faulty = inject(graph, "transpose", np.random.default_rng(0))
    assert faulty is not None
    np.testing.assert_array_equal(faulty.node("hidden").params["weights"], graph.node("hidden").params["weights"].T)


def test_an_activation_fault_swaps_or_reparametrizes(two_heads: Graph) -> None:
    seen = set()
    for seed in range(40):
        faulty = inject(two_heads, "activation", np.random.default_rng(seed))
        assert faulty is not None
        layer = faulted_layer(two_heads, faulty)
        assert layer is not None
        before, after = two_heads.node(layer).activation, faulty.node(layer).activation
        assert before is not None and after is not None and before != after
        if before.name == after.name:
            (key,) = [k for k in before.params if before.params[k] != after.params[k]]
            assert after.params[key] / before.params[key] in (pytest.approx(0.5), pytest.approx(1.5))
            seen.add("reparametrized")
        else:
            seen.add("swapped")
    assert seen == {"reparametrized", "swapped"}


def test_only_a_nonzero_bias_is_dropped(two_heads: Graph) -> None:
    for seed in range(10):
        faulty = inject(two_heads, "bias", np.random.default_rng(seed))
        assert faulty is not None and faulted_layer(two_heads, faulty) == "hidden"  # right's bias is zeros
        assert "bias" not in faulty.node("hidden").params


def test_swapped_outputs_trade_values_and_nothing_else(two_heads: Graph) -> None:
    faulty = inject(two_heads, "outputs", np.random.default_rng(0))
    assert faulty is not None and faulted_layer(two_heads, faulty) is None
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    good, bad = nnspec.NumpyModel(two_heads)(x), nnspec.NumpyModel(faulty)(x)
    np.testing.assert_array_equal(bad["left"], good["right"])
    np.testing.assert_array_equal(bad["right"], good["left"])
    one_output = nnspec.graph(nnspec.from_dict({**TWO_HEADS, "outputs": ["left"]}))
    assert inject(one_output, "outputs", np.random.default_rng(0)) is None


def test_a_fault_that_moves_nothing_is_an_equivalent_mutant(two_heads: Graph) -> None:
    cases = random_cases(two_heads)
    assert effect(two_heads, two_heads, cases) == 0
    dropped = inject(two_heads, "bias", np.random.default_rng(0))
    assert dropped is not None and effect(two_heads, dropped, cases) > 1


def test_unknown_fault_kind_is_refused(two_heads: Graph) -> None:
    with pytest.raises(ValueError, match="expected a fault kind"):
        inject(two_heads, "typo", np.random.default_rng(0))


def test_the_injector_does_not_import_onnx() -> None:
    code = "import sys, nnspec.faults; sys.exit('onnx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
