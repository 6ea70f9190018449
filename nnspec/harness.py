"""The cross-check: run two runners on the same inputs and compare every output, element by element."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .feeds import check_feeds, sample_bytes
from .ir import Graph
from .limits import Limits
from .runners import Runner
from .weights import _normal

# Default batch sizes: 1 (the edge case runtimes special-case), an odd size (catches code that assumes
# even or vector-aligned batches), and 64 (a typical serving batch, large enough to take blocked paths).
DEFAULT_BATCH_SIZES = (1, 7, 64)
# Random inputs are N(0, 2^2): most mass in [-4, 4], where sigmoid/tanh are neither linear nor flat
# and relu-like functions see both signs.
INPUT_SCALE = 2.0
# Allowed rounding drift, in units of the dtype's unit roundoff u (float32: 2^-24, float64: 2^-53).
# A dot product of k terms in floating point is exact to within k·u relative to sum(|w·p|); 1024·u
# covers layers of up to ~1000 inputs in that worst case (and far wider ones in practice, where the
# error grows like sqrt(k)), for values of order one. float32: 6.1e-5, float64: 1.1e-13.
HEADROOM_ULPS = 1024


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |candidate - reference| <= atol + rtol * |reference|."""

    rtol: float
    atol: float
    reason: str = ""

    @classmethod
    def for_dtype(cls, dtype: np.dtype, rtol: float | None = None, atol: float | None = None) -> Tolerance:
        u = float(np.finfo(dtype).eps) / 2
        default = HEADROOM_ULPS * u
        reason = f"default for {np.dtype(dtype).name}: {HEADROOM_ULPS} x unit roundoff ({u:.3g})"
        if rtol is not None or atol is not None:
            reason = "given"
        return cls(default if rtol is None else rtol, default if atol is None else atol, reason)


@dataclass(frozen=True)
class Case:
    """One batch of inputs, with a label that says where it came from."""

    label: str
    feeds: dict[str, np.ndarray]


@dataclass
class OutputResult:
    """How one output compared over every case."""

    name: str
    shape: list[int | str]
    elements: int = 0
    mismatches: int = 0
    max_abs_error: float = 0.0
    max_abs_at: dict[str, Any] | None = None
    max_rel_error: float = 0.0
    max_rel_at: dict[str, Any] | None = None
    worst_ratio: float = 0.0  # largest error / allowed error; above 1 fails
    reference_at_worst: float | None = None
    candidate_at_worst: float | None = None

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and self.elements > 0


@dataclass
class Report:
    """The result of a cross-check, as data; rendering is separate (see `nnspec.render`)."""

    model: str
    reference: str
    candidate: str
    dtype: str
    tolerance: Tolerance
    cases: list[str]
    outputs: list[OutputResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: str = ""  # where the input batches came from

    @property
    def passed(self) -> bool:
        return not self.problems and all(o.passed for o in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        for out, result in zip(data["outputs"], self.outputs, strict=True):
            out["passed"] = result.passed
        return data


def random_cases(graph: Graph, seed: int = 0, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES) -> list[Case]:
    """Seeded, reproducible batches: N(0, INPUT_SCALE^2) values for every input, per batch size."""
    cases = []
    per_sample, _ = sample_bytes(graph)
    largest = max(1, Limits.from_env().max_batch_bytes // per_sample)
    for k, batch in enumerate(dict.fromkeys(min(b, largest) for b in batch_sizes)):  # capped to the memory limit
        feeds = {}
        for j, info in enumerate(graph.inputs):
            count = batch * math.prod(info.shape)
            values = INPUT_SCALE * _normal(seed * 1_000_003 + k * 1009 + j, count)
            feeds[info.name] = values.reshape(batch, *info.shape).astype(graph.dtype)
        cases.append(Case(f"batch {batch}", feeds))
    return cases


def given_cases(graph: Graph, feeds: Mapping[str, object], label: str = "given inputs") -> list[Case]:
    return [Case(label, check_feeds(graph, feeds))]


def _index(flat: int, shape: tuple[int, ...]) -> list[int]:
    return [int(i) for i in np.unravel_index(flat, shape)]


def compare(
    name: str,
    shape: Sequence[int],
    pairs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    tol: Tolerance,
) -> OutputResult:
    """Compare one output over (case label, reference, candidate) triples."""
    result = OutputResult(name, ["N", *shape])
    for label, ref, cand in pairs:
        if cand.shape != ref.shape:
            result.mismatches += ref.size or 1
            result.elements += ref.size
            result.worst_ratio = math.inf
            result.max_abs_at = {"case": label, "problem": f"shape {list(cand.shape)}, expected {list(ref.shape)}"}
            continue
        r = ref.astype(np.float64)
        c = cand.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            diff = np.abs(c - r)
            same_special = (r == c) | (np.isnan(r) & np.isnan(c))  # equal infinities, or NaN on both sides
            diff = np.where(same_special, 0.0, np.where(np.isnan(diff), np.inf, diff))
            magnitude = np.where(np.isfinite(r), np.abs(r), 0.0)
            allowed = tol.atol + tol.rtol * magnitude
            ratio = np.where(diff == 0, 0.0, diff / allowed)  # a NaN or inf on one side only: ratio inf
            rel = np.where(diff == 0, 0.0, np.where(magnitude > 0, diff / magnitude, np.inf))
        result.elements += r.size
        result.mismatches += int(np.count_nonzero(ratio > 1))
        if r.size == 0:
            continue
        worst = int(np.argmax(ratio))
        if ratio.flat[worst] > result.worst_ratio or result.max_abs_at is None:
            result.worst_ratio = float(ratio.flat[worst])
            result.reference_at_worst = float(r.flat[worst])
            result.candidate_at_worst = float(c.flat[worst])
        i = int(np.argmax(diff))
        if diff.flat[i] > result.max_abs_error or result.max_abs_at is None:
            result.max_abs_error = float(diff.flat[i])
            result.max_abs_at = {"case": label, "index": _index(i, r.shape)}
        i = int(np.argmax(rel))
        if rel.flat[i] > result.max_rel_error or result.max_rel_at is None:
            result.max_rel_error = float(rel.flat[i])
            result.max_rel_at = {"case": label, "index": _index(i, r.shape)}
    return result


def cross_check(
    graph: Graph,
    reference: Runner,
    candidate: Runner,
    cases: Sequence[Case],
    tol: Tolerance,
    *,
    problems: Sequence[str] = (),
    notes: Sequence[str] = (),
    inputs: str = "",
) -> Report:
    """Run both runners on every case and compare every output of the graph."""
    report = Report(
        model=graph.name,
        reference=reference.name,
        candidate=candidate.name,
        dtype=graph.dtype.name,
        tolerance=tol,
        cases=[c.label for c in cases],
        problems=list(problems),
        notes=list(notes),
        inputs=inputs,
    )
    if report.problems:
        return report
    pairs: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {o.name: [] for o in graph.outputs}
    for case in cases:
        expected = reference.run(case.feeds)
        try:
            got = candidate.run(case.feeds)
        except Exception as exc:  # a runtime failing on valid inputs is a disagreement, reported as such
            report.problems.append(f"{candidate.name} failed on {case.label}: {str(exc).splitlines()[0]}")
            return report
        for name in pairs:
            pairs[name].append((case.label, expected[name], got[name]))
    report.outputs = [compare(o.name, o.shape, pairs[o.name], tol) for o in graph.outputs]
    return report


def interface_problems(graph: Graph, iface: Mapping[str, Any], elem_type: int) -> list[str]:
    """Ways an existing model's inputs and outputs differ from the spec's (names, element type, dims)."""
    problems = []
    for kind, expected in (("input", graph.inputs), ("output", graph.outputs)):
        found = iface[f"{kind}s"]
        for info in expected:
            if info.name not in found:
                problems.append(f"the model has no {kind} {info.name!r} (its {kind}s: {', '.join(found) or 'none'})")
                continue
            dims, elem = found[info.name]
            if elem != elem_type:
                problems.append(
                    f"{kind} {info.name!r} has ONNX element type {elem}, expected {elem_type} ({graph.dtype.name})"
                )
            if [d for d in dims[1:]] != list(info.shape) or not dims:
                problems.append(
                    f"{kind} {info.name!r} has dims {dims}, expected ['N', {', '.join(map(str, info.shape))}]"
                )
        extra = [name for name in found if name not in {i.name for i in expected}]
        if kind == "input" and extra:
            problems.append(f"the model has inputs the spec does not: {', '.join(extra)}")
    return problems
