"""The cross-check: run two runners on the same inputs and compare every output against a derived bound."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .activations import Precision
from .affine import exact
from .bounds import Trace, propagate
from .errors import InputDataError, NNSpecError
from .inputs import Case, repeat_differs
from .ir import Graph, Node
from .layers import LAYERS
from .power import PowerResult, Samples, collect_samples, test_layers
from .runners import Runner, close_runner


@dataclass(frozen=True)
class Tolerance:
    """How far two results may be apart: derived from the network (default), or given.

    derived: |candidate - reference| <= bound(reference) + bound(candidate), each the rounding-error
    bound that nnspec.bounds carries through the network for arithmetic in the spec's dtype.
    given: |candidate - reference| <= atol + rtol * |reference|.
    """

    mode: str = "derived"
    rtol: float = 0.0
    atol: float = 0.0
    reason: str = "derived from the network: the sum of both sides' rounding-error bounds"

    def __post_init__(self) -> None:
        # NOTE: a NaN or negative tolerance would make every comparison pass (or none), silently: a check
        # that cannot fail. Every way a tolerance enters (API, CLI, spec) ends here or in the same rule.
        if self.mode not in ("derived", "given"):
            raise NNSpecError(f"expected a tolerance mode 'derived' or 'given', found {self.mode!r}")
        object.__setattr__(self, "rtol", tolerance_value(self.rtol, "rtol"))
        object.__setattr__(self, "atol", tolerance_value(self.atol, "atol"))

    @classmethod
    def given(cls, rtol: float | None, atol: float | None, reason: str = "given") -> Tolerance:
        """|candidate - reference| <= atol + rtol |reference|; a missing one is 0."""
        return cls("given", 0.0 if rtol is None else rtol, 0.0 if atol is None else atol, reason)

    def allowed(self, reference: np.ndarray, bound: np.ndarray) -> np.ndarray:
        if self.mode == "derived":
            return bound
        return self.atol + self.rtol * np.where(np.isfinite(reference), np.abs(reference), 0.0)


def tolerance_value(value: object, name: str) -> float:
    """A tolerance (rtol, atol) as a float: a finite number >= 0, or an InputDataError naming it."""
    number = value
    if isinstance(value, np.generic) and np.ndim(value) == 0:
        number = value.item()
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise InputDataError(f"{name}: expected a finite number >= 0, found {type(value).__name__} {value!r}")
    if not (math.isfinite(number) and number >= 0):
        raise InputDataError(f"{name}: expected a finite number >= 0, found {value!r}")
    return float(number)


# Decades of error / allowed for the report's histograms: from far below the bound to above it.
HISTOGRAM_BINS = ("exact", "<1e-8", *(f"1e{k}" for k in range(-8, 2)), "1e2+")


def _histogram(margin: np.ndarray) -> dict[str, int]:
    positive = margin[margin > 0]
    with np.errstate(divide="ignore"):
        decades = np.clip(np.floor(np.log10(positive)), -9, 2)  # -9: below 1e-8; 2: 1e2 and above (inf too)
    counts = np.bincount((decades + 9).astype(np.int64), minlength=len(HISTOGRAM_BINS) - 1)
    return dict(zip(HISTOGRAM_BINS, [int(np.count_nonzero(margin == 0)), *map(int, counts)], strict=True))


@dataclass
class OutputResult:
    """How one output of `candidate` compared with `reference` over every case."""

    name: str
    shape: list[int | str]
    reference: str = ""
    candidate: str = ""
    elements: int = 0
    mismatches: int = 0
    max_abs_error: float = 0.0
    max_abs_at: dict[str, Any] | None = None
    max_rel_error: float = 0.0  # like max_ulps, measured against max(|reference|, SCALE_FLOOR x the output's scale)
    max_ulps: float = 0.0
    worst_margin: float = 0.0  # largest error / allowed; above 1 fails
    worst_at: dict[str, Any] | None = None
    allowed_at_worst: float | None = None
    reference_at_worst: float | None = None
    candidate_at_worst: float | None = None
    unbounded: int = 0  # elements where the allowed error was infinite: compared, but nothing could fail there
    # How many elements fell in each decade of error / allowed: "exact", "<1e-8", "1e-8", ..., "1e1+".
    histogram: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HISTOGRAM_BINS, 0))

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
    oracle: list[OutputResult] = field(default_factory=list)  # each side against the float64 oracle
    ambiguous: dict[str, int] = field(default_factory=dict)  # step layer -> outputs either side may take
    divergence: dict[str, Any] | None = None  # the first layer whose disagreement exceeds its bound
    # Each layer of each candidate against its own step: the layer recomputed (float64) from the values
    # the candidate fed it, within that one layer's rounding bound (see `step_results`).
    steps: list[OutputResult] = field(default_factory=list)
    nondeterministic: list[str] = field(default_factory=list)
    # A model nnspec compiled against a fresh export of its spec (nnspec.onnxio.diff): each initializer that
    # differs (down to the weight) and each node. A verdict of its own: the check's comes from running the
    # model (a weight one ulp off computes the spec within rounding), unless `exact_file` makes any fail it.
    differences: list[dict[str, Any]] = field(default_factory=list)
    compared_with_export: bool = False
    exact_file: bool = False
    # Per dense and conv layer of each candidate: which parameters it applies, tested against the spec's
    # (nnspec.power); a parameter found changed fails the check.
    weights: list[PowerResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: str = ""  # where the input batches came from

    @property
    def passed(self) -> bool:
        return (
            not self.problems
            and bool(self.outputs)
            and all(o.passed for o in self.outputs)
            and all(s.passed for s in self.steps)
            and not (self.exact_file and self.differences)
            and all(w.passed for w in self.weights)
        )

    def __str__(self) -> str:
        """The report as `nnspec check` prints it, in plain text (see `nnspec.render` for the other formats)."""
        from .render import text

        return text(self)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: every field, and `passed` here and on each result."""
        data = asdict(self)
        data["passed"] = self.passed
        for group in ("outputs", "oracle", "steps"):
            for out, result in zip(data[group], getattr(self, group), strict=True):
                out["passed"] = result.passed
        return data


def _index(flat: int, shape: tuple[int, ...]) -> list[int]:
    return [int(i) for i in np.unravel_index(flat, shape)]


# ulps and relative errors are measured at the larger of |reference| and this share of the output's largest
# |reference| in the batch: a value near zero (a softmax tail, a sum that cancels) has ulps far finer than the
# arithmetic that produced it, so its own ulps would make a correct result look wrong (1e15 ulps). A thousandth
# keeps every value within three decades of the output's scale measured in its own ulps. Display only: the
# verdict comes from the allowed error.
SCALE_FLOOR = 1e-3

Pair = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # case label, reference, candidate, allowed difference


def compare(
    name: str, shape: Sequence[int], pairs: Sequence[Pair], dtype: np.dtype, names: tuple[str, str] = ("", "")
) -> OutputResult:
    """Compare one output over (case, reference, candidate, allowed) quadruples, element by element.

    The cases go through as one array (each case's scale for ulps and relative errors stays its own), and the
    worst of each kind is the first one met, case by case, as a loop over them would find it."""
    result = OutputResult(name, ["N", *shape], *names)
    kept: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []  # label, reference, candidate, allowed
    problems: dict[int, str] = {}  # position in `kept` -> a candidate of another shape
    for label, ref, cand, allowed in pairs:
        if cand.shape != ref.shape:
            result.elements += ref.size
            result.mismatches += ref.size or 1
            problems[len(kept)] = f"shape {list(cand.shape)}, expected {list(ref.shape)}"
            kept.append((label, ref, ref, np.zeros(0)))
            continue
        kept.append((label, ref, cand, np.broadcast_to(allowed, ref.shape)))
    sizes = [a.size for _, _, _, a in kept]
    if not sum(sizes):
        for position, problem in problems.items():
            result.worst_margin, result.worst_at = math.inf, {"case": kept[position][0], "problem": problem}
        return result
    r = np.concatenate([ref.astype(np.float64).ravel() for _, ref, _, a in kept if a.size])
    c = np.concatenate([cand.astype(np.float64).ravel() for _, _, cand, a in kept if a.size])
    allowed = np.concatenate([a.ravel() for _, _, _, a in kept if a.size])
    allowed = np.where(np.isnan(allowed), np.inf, allowed)  # no bound is an infinite one, counted as such
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(c - r)
        if not np.isfinite(diff).all():  # an infinity or NaN on some side (else both sides are finite everywhere)
            same_special = (r == c) | (np.isnan(r) & np.isnan(c))  # equal infinities, or NaN on both sides
            # A result whose exact value may lie beyond the dtype's largest number overflows to an infinity of
            # its sign in any correct implementation: the float64 reference holds the finite exact value.
            limit = float(np.finfo(dtype).max)
            overflows = np.isinf(c) & np.isfinite(r) & (np.sign(c) == np.sign(r)) & (np.abs(r) + allowed >= limit)
            same_special |= overflows
            diff = np.where(same_special, 0.0, np.where(np.isnan(diff), np.inf, diff))
        margin = np.where(diff == 0, 0.0, diff / allowed)  # a NaN or inf on one side only: margin inf
        magnitude = np.abs(r)
        magnitude[~np.isfinite(r)] = 0.0
        starts = np.cumsum([0, *[n for n in sizes if n]])[:-1]
        scale = np.repeat(np.maximum.reduceat(magnitude, starts), [n for n in sizes if n])  # each case's largest
        magnitude = np.maximum(magnitude, SCALE_FLOOR * scale)
        rel = np.where(diff == 0, 0.0, np.where(magnitude > 0, diff / magnitude, np.inf))
        ulp = np.spacing(magnitude.astype(dtype)).astype(np.float64)
        ulps = np.where(diff == 0, 0.0, diff / ulp)
    result.elements += r.size
    result.mismatches += int(np.count_nonzero(margin > 1))
    result.unbounded += int(np.count_nonzero(np.isinf(allowed)))
    for key, count in _histogram(margin).items():
        result.histogram[key] += count
    result.max_rel_error = max(result.max_rel_error, float(rel.max()))
    result.max_ulps = max(result.max_ulps, float(ulps.max()))
    # the worst margin and the largest error: the first case (in order) whose maximum beats the ones before it
    offset = 0
    for position, (label, ref, _, a) in enumerate(kept):
        if position in problems:
            result.worst_margin, result.worst_at = math.inf, {"case": label, "problem": problems[position]}
            continue
        if not a.size:
            continue
        part = slice(offset, offset + a.size)
        offset += a.size
        worst = int(np.argmax(margin[part]))
        if margin[part][worst] > result.worst_margin or result.worst_at is None:
            result.worst_margin = float(margin[part][worst])
            result.worst_at = {"case": label, "index": _index(worst, ref.shape)}
            result.allowed_at_worst = float(allowed[part][worst])
            result.reference_at_worst = float(r[part][worst])
            result.candidate_at_worst = float(c[part][worst])
        i = int(np.argmax(diff[part]))
        if diff[part][i] > result.max_abs_error or result.max_abs_at is None:
            result.max_abs_error = float(diff[part][i])
            result.max_abs_at = {"case": label, "index": _index(i, ref.shape)}
    return result


def cross_check(
    graph: Graph,
    reference: Runner,
    candidates: Runner | Sequence[Runner],
    cases: Sequence[Case],
    tol: Tolerance,
    *,
    traced: Callable[[Runner], Runner | None] | None = None,
    stepwise: bool = False,
    problems: Sequence[str] = (),
    notes: Sequence[str] = (),
    inputs: str = "",
    power_cases: Sequence[Case] = (),
    spare_cases: Callable[[], Sequence[Case]] | None = None,
    tell: Callable[[str], None] | None = None,
) -> Report:
    """Run the reference and every candidate on every case and compare every output of the graph.

        With the derived tolerance, each element may differ by the sum of both sides' error bounds.
        The float64 oracle is compared with every side too (for float32 networks), so that a failure
        says which side is wrong. `traced(candidate)` gives a runner that also returns every layer's
        output: with `stepwise` (and the derived tolerance), every layer of every candidate is also checked
        against its own step (see `step_results`), and every parameter of its dense and conv layers is tested
        against the spec's (nnspec.power) over those cases and `power_cases` (and `spare_cases()`, made and run only
    for dense layers whose rows are taken two by two), run through the traced model only;
        on failure, the first layer that diverges is named. Every side is closed (`nnspec.runners.close_runner`)
        once it has run the end-to-end batches, before a traced model is opened: a side run again reopens.
    """
    runners = [candidates] if not isinstance(candidates, Sequence) else list(candidates)
    report = Report(
        model=graph.name,
        reference=reference.name,
        candidate=", ".join(r.name for r in runners),
        dtype=graph.dtype.name,
        tolerance=tol,
        cases=[c.label for c in cases],
        problems=list(problems),
        notes=list(notes),
        inputs=inputs,
    )
    if report.problems:
        return report
    steps = stepwise and tol.mode == "derived" and traced is not None and len(graph.nodes) > 1
    # NOTE: where every layer is also checked against its own step (far tighter than any end-to-end bound),
    # the end-to-end bound keeps no per-row Jacobians (FOLDED_BUDGET): carrying them costs d_s times the
    # forward pass per layer, the bulk of a check, for cancellation the steps do not need.
    budget = FOLDED_BUDGET if steps and not graph.tolerances else None
    tell = tell or (lambda stage: None)  # the stage under way, for a progress display
    tell(f"every side twice on {len(cases)} input batches, and the error bounds")
    traces = _end_to_end(graph, reference, runners, cases, tol, report, budget)
    # NOTE: every side has run its last batch of the end-to-end comparison: what each holds besides the model
    # given to it (an onnxruntime session, the evaluator's transposed weights: each as many bytes as the weights)
    # is let go before the traced models are opened, and made again by a side that runs again (localize).
    for side in [reference, *runners]:
        close_runner(side)
    if traces is None:  # a runner failed: reported as a problem
        return report
    tracers: dict[str, Runner] = {}
    if stepwise and tol.mode == "derived":
        if graph.tolerances:
            report.notes.append(
                "layers were not checked one by one: the spec declares tolerances for its outputs, which a "
                "layer's own step could not honour"
            )
        elif traced is not None:
            for runner in runners:
                if (tracer := traced(runner)) is not None:
                    tracers[runner.name] = tracer
                    seen: list[dict[str, np.ndarray]] = []
                    if len(graph.nodes) > 1:
                        tell(f"each of {len(graph.nodes)} layers ({runner.name}) against its own step")
                        report.steps += step_results(graph, tracer, runner.name, cases, seen)
                    else:  # one layer: its step is the end-to-end check; its traced values feed the parameter test
                        seen += [{**case.feeds, **tracer.run(case.feeds)} for case in cases]
                    # The edge batch (0, ±1, ±1e3) is for the bounds: its rows reach the first layer as repeated
                    # values, which the parameter test leaves out, and later ones saturated or clamped; without it
                    # the test sorts out fewer duplicate and repeated rows in every layer (10 rows of the 594 it would have).
                    drawn = [values for case, values in zip(cases, seen, strict=True) if not case.edges]
                    tell(f"every weight and bias ({runner.name}) against the spec's")
                    report.weights += _parameter_tests(graph, tracer, runner.name, drawn, power_cases, spare_cases)
    report.notes += _notes(report, graph, traces, tol, folded=budget is not None)
    failed_step = next((s for s in report.steps if not s.passed), None)
    changed = next((w for w in report.weights if not w.passed), None)
    if failed_step is None and changed is not None:  # within every bound, but a parameter is not the spec's
        node = graph.node(changed.layer)
        worst = changed.worst
        report.divergence = {
            "layer": node.name,
            "index": node.index,
            "path": f"layers[{node.index}]",
            "type": node.op,
            "runner": changed.candidate,
            "case": cases[0].label,
            "mismatches": changed.flagged,
            "elements": changed.tested,
            "worst_margin": (worst.z / changed.threshold) if worst else math.inf,
            "parameters": worst.describe() if worst else "",
        }
    elif failed_step is not None:
        case = (failed_step.worst_at or {}).get("case")
        report.divergence = {
            **_divergence(graph.node(failed_step.name), failed_step, failed_step.candidate, case),
            "from_own_inputs": True,
        }
    elif not report.passed and traced is not None:
        failing = next((r for r in runners if any(not o.passed for o in report.outputs if o.candidate == r.name)), None)
        if failing is not None:
            tracer = tracers.get(failing.name)
            report.divergence = localize(graph, reference, lambda: tracer or traced(failing), traces, tol, budget)
    return report


# Jacobian entries per value kept by the end-to-end bound when every layer is also checked by its step: per-row
# Jacobians are folded at once (sound, without cancellation across layers), shared ones ([d, d_s]) kept.
FOLDED_BUDGET = 0


def _end_to_end(
    graph: Graph,
    reference: Runner,
    runners: Sequence[Runner],
    cases: Sequence[Case],
    tol: Tolerance,
    report: Report,
    budget: int | None = None,
) -> list[tuple[Case, Trace]] | None:
    """Every side on every case, twice; fills the report's outputs, oracle, ambiguous and nondeterministic
    results. Returns the oracle's traces, or None when a side failed to run (then a problem is reported)."""
    precision, wide = Precision.of(graph.dtype), Precision.of(np.float64)
    narrow = graph.dtype != np.float64
    outputs = [o.name for o in graph.outputs]
    sides = [reference, *runners]
    pairs: dict[str, dict[str, list[Pair]]] = {r.name: {n: [] for n in outputs} for r in runners}
    oracle_pairs: dict[str, dict[str, list[Pair]]] = {r.name: {n: [] for n in outputs} for r in sides}
    traces: list[tuple[Case, Trace]] = []
    unsteady: set[str] = set()
    bounds = _bounds(graph, cases, precision, budget, outputs)
    # the float64 oracle's own bound is some 1e-9 of the network's: folded, it costs a forward pass
    oracle_bounds = _bounds(graph, cases, wide, FOLDED_BUDGET, outputs) if narrow else None
    for index, case in enumerate(cases):
        trace = bounds[index]
        oracle_bound = oracle_bounds[index].errors if oracle_bounds is not None else None
        results: dict[str, dict[str, np.ndarray]] = {}
        for runner in sides:  # each side runs twice: results that change between runs are flagged
            try:
                results[runner.name] = runner.run(case.feeds)
                changed = repeat_differs(runner.run, case.feeds, first=results[runner.name])
            except Exception as exc:  # a runtime failing on valid inputs is a disagreement, reported as such
                report.problems.append(f"{runner.name} failed on {case.label}: {str(exc).splitlines()[0]}")
                return None
            unsteady.update(f"{name} ({runner.name})" for name in changed)
        expected = results[reference.name]
        for name in outputs:
            bound = trace.errors[name]
            rule = tol
            if tol.mode == "derived" and name in graph.tolerances:
                rule = Tolerance.given(*graph.tolerances[name], reason="declared in the spec")
            allowed = rule.allowed(expected[name], 2 * bound)
            for runner in runners:
                pairs[runner.name][name].append((case.label, expected[name], results[runner.name][name], allowed))
            if oracle_bound is not None:
                for side in sides:
                    oracle_pairs[side.name][name].append(
                        (case.label, trace.values[name], results[side.name][name], bound + oracle_bound[name])
                    )
        for layer, mask in trace.ambiguous.items():
            report.ambiguous[layer] = report.ambiguous.get(layer, 0) + int(mask.sum())
        traces.append((case, trace))
    shapes = {o.name: o.shape for o in graph.outputs}
    for runner in runners:
        names = (reference.name, runner.name)
        report.outputs += [compare(n, shapes[n], pairs[runner.name][n], graph.dtype, names) for n in outputs]
    if narrow:
        for side in sides:
            names = ("float64 oracle", side.name)
            report.oracle += [compare(n, shapes[n], oracle_pairs[side.name][n], graph.dtype, names) for n in outputs]
    report.nondeterministic = sorted(unsteady)
    return traces


def _bounds(
    graph: Graph, cases: Sequence[Case], precision: Precision, budget: int | None, keep: Sequence[str]
) -> list[Trace]:
    """`propagate` on every case. With every Jacobian folded (budget 0) each row's bound is its own, whatever
    rows surround it, so all cases go through in one pass (each layer's weights are read once, not per case);
    otherwise what is folded depends on the batch, and each case goes alone."""
    if budget != 0 or len(cases) < 2:
        return [propagate(graph, case.feeds, precision, budget, keep=keep) for case in cases]
    sizes = [next(iter(case.feeds.values())).shape[0] for case in cases]
    feeds = {name: np.concatenate([case.feeds[name] for case in cases]) for name in cases[0].feeds}
    whole = propagate(graph, feeds, precision, budget, keep=keep)
    ends = np.cumsum(sizes)
    parts = []
    for start, end in zip(ends - sizes, ends, strict=True):
        cut = slice(int(start), int(end))
        parts.append(
            Trace(
                whole.precision,
                {name: value[cut] for name, value in whole.values.items()},
                {name: error[cut] for name, error in whole.errors.items()},
                {name: mask[cut] for name, mask in whole.ambiguous.items()},
                whole.loose,
            )
        )
    return parts


def _notes(
    report: Report, graph: Graph, traces: Sequence[tuple[Case, Trace]], tol: Tolerance, folded: bool = False
) -> list[str]:
    """What a reader of the verdict should know: weak or loose bounds, unsteady results, unbounded elements."""
    notes = []
    if tol.mode == "derived":
        notes += _weak_bound_notes(report.outputs, graph.tolerances, stepped=bool(report.steps))
    loose = {name for _, trace in traces for name in trace.loose}
    if loose and not folded:  # folded on purpose, every layer being checked by its own step
        first = next(n.name for n in graph.nodes if n.name in loose)
        notes.append(
            f"the derived bound is looser from layer {first!r} on: its Jacobians exceeded the memory budget, so "
            "errors there are bounded elementwise (no cancellation); a failure still means a bug, but small "
            "faults may pass"
        )
    if report.nondeterministic:
        notes.append(f"different results on the same inputs: {', '.join(report.nondeterministic)}")
    for result in [*report.outputs, *report.steps]:
        if result.unbounded:
            what = "layer" if result.reference == STEP_REFERENCE else "output"
            notes.append(
                f"{what} {result.name!r} ({result.candidate}): {result.unbounded} of {result.elements} elements had "
                "no finite bound (correct implementations may differ without limit there: sums whose terms leave the "
                "dtype's range, a float32 layer norm of nearly constant values, a max over NaN), so nothing could "
                "fail there"
            )
    return notes


def _parameter_tests(
    graph: Graph,
    tracer: Runner,
    name: str,
    seen: list[dict[str, np.ndarray]],
    extra: Sequence[Case],
    spare_cases: Callable[[], Sequence[Case]] | None = None,
) -> list[PowerResult]:
    """Which parameters the candidate applies (nnspec.power), from the values its traced model exposed on the
    check's cases and on `extra` batches (rows enough for wide layers), and on `spare_cases()` for the dense
    layers whose rows are taken two by two (made and run when the first of them asks)."""
    runs = [*seen, *({**case.feeds, **tracer.run(case.feeds)} for case in extra)]

    def spare() -> Samples:
        cases = spare_cases() if spare_cases is not None else []
        return collect_samples(graph, [{**case.feeds, **tracer.run(case.feeds)} for case in cases])

    with np.errstate(all="ignore"):
        return test_layers(graph, collect_samples(graph, runs), name, spare=spare if spare_cases else None)


# The reference named in a step's result: the layer recomputed in float64 from the candidate's inputs.
STEP_REFERENCE = "float64 step"


def step_results(
    graph: Graph, tracer: Runner, name: str, cases: Sequence[Case], seen: list[dict[str, np.ndarray]] | None = None
) -> list[OutputResult]:
    """Every layer of one candidate against its own step, over every case.

    Each layer is recomputed in float64 from the very values the candidate fed it (its traced inputs,
    exact in float64), and the candidate's output must lie within that one layer's rounding bound plus
    the float64 recomputation's own. Errors from earlier layers do not compound here, so a fault deep in
    a wide network stands out against a bound that is orders of magnitude tighter than the end-to-end
    one. Layers whose inputs the candidate does not expose are skipped. `seen` collects, per case, every
    value the candidate exposed (for the parameter test, nnspec.power).
    """
    precision = Precision.of(graph.dtype)
    pairs: dict[str, list[Pair]] = {n.name: [] for n in graph.nodes}
    kernels: dict[str, Callable[..., np.ndarray]] = {}  # built once, for layers the model holds in no tensor
    runs: list[tuple[Case, dict[str, np.ndarray], dict[str, np.ndarray]]] = []
    for case in cases:
        got = tracer.run(case.feeds)
        values = {**case.feeds, **got}
        if seen is not None:
            seen.append(values)
        for node in graph.nodes:
            # A layer whose output the model holds in no tensor of its name (dropout emits no node) is not
            # checked itself; the layers after it read what its kernel makes of the values the model fed it.
            if node.name not in values and all(i in values for i in node.inputs):
                if node.name not in kernels:
                    kernels[node.name] = LAYERS[node.op].numpy(node)
                with np.errstate(all="ignore"):
                    values[node.name] = kernels[node.name](*(values[i] for i in node.inputs))
        runs.append((case, got, values))
    for node in graph.nodes:
        # A step's bound is each row's own: the cases go through together, each layer's weights read once.
        held = [(case, got, values) for case, got, values in runs if node.name in got]
        held = [run for run in held if all(i in run[2] for i in node.inputs)]
        if held:
            pairs[node.name] = _step_pairs(node, graph.wide_node(node), held, precision)
    names = (STEP_REFERENCE, name)
    return [compare(n.name, n.shape, pairs[n.name], graph.dtype, names) for n in graph.nodes if pairs[n.name]]


def _step_pairs(
    node: Node,
    wide_node: Node,
    held: Sequence[tuple[Case, dict[str, np.ndarray], dict[str, np.ndarray]]],
    precision: Precision,
) -> list[Pair]:
    """One layer's step on every case that exposed it and its inputs: (case, float64 step, the model's output,
    allowed) per case. `wide_node` is the layer in float64, dropped on return where the graph keeps no copy."""
    wide_precision = Precision.of(np.float64)
    sizes = [got[node.name].shape[0] for _, got, _ in held]
    shape = (sum(sizes), *node.shape)
    output = np.concatenate([np.asarray(got[node.name], dtype=np.float64) for _, got, _ in held])
    with np.errstate(all="ignore"):
        inputs = []
        for i in node.inputs:
            value = np.concatenate([np.asarray(values[i], dtype=np.float64) for _, _, values in held])
            inputs.append(exact(value.reshape(-1, value.shape[-1])))
        step = LAYERS[node.op].bound(wide_node, inputs, precision)
        allowed = step.bound().reshape(shape)
        # The float64 recomputation's own error is added where it could matter: where the model is
        # beyond the step's bound alone (elsewhere the layer passes with or without it, and its
        # err/allowed reads a hair high). It is the same bound again in float64 networks.
        outside = ~(np.abs(output - step.value.reshape(shape)) <= allowed)
        if outside.any():
            same = precision == wide_precision
            own = step.bound() if same else LAYERS[node.op].bound(wide_node, inputs, wide_precision).bound()
            allowed = allowed + own.reshape(shape)
    expected = step.value.reshape(shape)
    ends = np.cumsum(sizes)
    return [
        (case.label, expected[start:end], got[node.name], allowed[start:end])
        for (case, got, _), start, end in zip(held, ends - sizes, ends, strict=True)
    ]


# A passing output whose closest call used less than this share of its derived bound is reported as
# weakly checked. Over the first 2000 random networks of tests/test_faults.py (widths up to 64) the
# median share is 0.036 and 99% are above 1.3e-3; wide networks fall far below (specs/digits_mlp.json: 9e-5),
# because the bound is worst-case per dot product (see docs/cross-check.md, "The derived bound").
WEAK_BOUND_SHARE = 1e-3


def _weak_bound_notes(outputs: Sequence[OutputResult], declared: Mapping[str, Any], stepped: bool) -> list[str]:
    """Say, per output, when the derived bound is so far above the differences seen that it checks little."""
    notes = []
    for o in outputs:
        if o.name in declared or not o.passed or not 0 < o.worst_margin < WEAK_BOUND_SHARE:
            continue
        allowed = o.allowed_at_worst or 0.0
        remedy = (
            "every layer was also checked against its own step, which is far tighter"
            if stepped
            else 'declare a tolerance for it in the spec ("tolerance") or pass --rtol/--atol for a sharper check'
        )
        notes.append(
            f"output {o.name!r} ({o.candidate}): the closest call used {o.worst_margin:.1e} of the derived bound, "
            f"which allowed {allowed:.2g} there: end to end, agreement is proven only to within the bound, and a "
            f"fault that moves this output by less would pass there; {remedy}."
        )
    return notes


def localize(
    graph: Graph,
    reference: Runner,
    traced: Callable[[], Runner | None],
    traces: Sequence[tuple[Case, Trace]],
    tol: Tolerance,
    budget: int | None = None,
) -> dict[str, Any] | None:
    """The first layer, in spec order, whose outputs disagree beyond their bound on some case."""
    runner = traced()
    if runner is None or not hasattr(reference, "trace"):
        return None
    precision = Precision.of(graph.dtype)
    # every layer's bound, which the check itself keeps for its outputs only: made again, on failure alone
    runs = [
        (case, propagate(graph, case.feeds, precision, budget), reference.trace(case.feeds), runner.run(case.feeds))  # type: ignore[attr-defined]
        for case, _ in traces
    ]
    for node in graph.nodes:  # layer by layer, so the first layer in spec order wins over the first batch
        for case, trace, expected, got in runs:
            if node.name not in got:
                continue
            allowed = tol.allowed(expected[node.name], 2 * trace.errors[node.name])
            pair = (case.label, expected[node.name], got[node.name], allowed)
            result = compare(node.name, node.shape, [pair], graph.dtype)
            if not result.passed:
                return _divergence(node, result, runner.name, case.label)
    return None


def _divergence(node: Node, result: OutputResult, runner: str, case: str | None) -> dict[str, Any]:
    """The report's `divergence`: which layer, where in the spec, on which case, and by how much."""
    return {
        "layer": node.name,
        "index": node.index,
        "path": f"layers[{node.index}]",
        "type": node.op,
        "runner": runner,
        "case": case,
        "mismatches": result.mismatches,
        "elements": result.elements,
        "worst_margin": result.worst_margin,
        "worst_at": result.worst_at,
    }


# ONNX element types of integer inputs: TensorProto.DataType codes, fixed by the ONNX standard (this module
# compares codes from a loaded model's interface and does not build protobufs).
INTEGER_ELEM_TYPES = {"int64": 7, "int32": 6}


def _called(graph: Graph, name: str) -> str:
    """A spec input or output as messages name it: `'x'`, or `'x' ('onnx::Gemm_0' in the model)`."""
    renamed = graph.onnx_names.get(name)
    return f"{name!r}" if renamed is None else f"{name!r} ({renamed!r} in the model)"


def interface_problems(graph: Graph, iface: Mapping[str, Any], elem_type: int) -> list[str]:
    """Ways an existing model's inputs and outputs differ from the spec's (names, element type, dims).

    Each spec input and output is looked up under its name in the model (`graph.onnx_names`, else its own).
    `elem_type` is the network dtype's ONNX element type; an integer input (ids) expects its own.
    """
    problems = []
    for kind, expected in (("input", graph.inputs), ("output", graph.outputs)):
        found = iface[f"{kind}s"]
        for info in expected:
            in_model = graph.onnx_names.get(info.name, info.name)
            if in_model not in found:
                problems.append(
                    f"the model has no {kind} {_called(graph, info.name)} (its {kind}s: {', '.join(found) or 'none'}; "
                    'if the model calls it otherwise, say so in the spec\'s "onnx_names")'
                )
                continue
            dims, elem = found[in_model]
            want = INTEGER_ELEM_TYPES[info.dtype] if info.dtype in INTEGER_ELEM_TYPES else elem_type
            if elem != want:
                problems.append(
                    f"{kind} {_called(graph, info.name)} has ONNX element type {elem}, expected {want} "
                    f"({info.dtype if info.dtype in INTEGER_ELEM_TYPES else graph.dtype.name})"
                )
            if [d for d in dims[1:]] != list(info.shape) or not dims:
                problems.append(
                    f"{kind} {_called(graph, info.name)} has dims {dims}, expected "
                    f"['N', {', '.join(map(str, info.shape))}]"
                )
        mapped = {graph.onnx_names.get(i.name, i.name) for i in expected}
        extra = [name for name in found if name not in mapped]
        if kind == "input" and extra:
            problems.append(f"the model has inputs the spec does not: {', '.join(extra)}")
    fixed = fixed_first_dims(graph, iface)
    if fixed and (len(set(fixed.values())) > 1 or min(fixed.values()) < 1):
        sizes = ", ".join(f"{what} {rows}" for what, rows in fixed.items())
        problems.append(
            f"expected one fixed batch size >= 1 for every input and output whose first dim is fixed, found {sizes}"
        )
    return problems


def fixed_first_dims(graph: Graph, iface: Mapping[str, Any]) -> dict[str, int]:
    """The spec's inputs and outputs whose first (batch) dim the model fixes, as messages name them, and that dim."""
    fixed = {}
    for kind, values in (("input", graph.inputs), ("output", graph.outputs)):
        for info in values:
            dims, _ = iface[f"{kind}s"].get(graph.onnx_names.get(info.name, info.name), ([], 0))
            if dims and isinstance(dims[0], int):
                fixed[f"{kind} {_called(graph, info.name)}"] = dims[0]
    return fixed


def fixed_batch(graph: Graph, iface: Mapping[str, Any]) -> tuple[int, str] | None:
    """The one batch size a model with fixed first dims accepts, and the report's note saying so; None when
    it accepts any. Call only on a model without `interface_problems`, which ensures a single size."""
    fixed = fixed_first_dims(graph, iface)
    if not fixed:
        return None
    rows = next(iter(fixed.values()))
    inputs_fixed = all(f"input {_called(graph, i.name)}" in fixed for i in graph.inputs)
    which = "its inputs' first dim is" if inputs_fixed else f"the first dim of {', '.join(fixed)} is"
    return rows, f"the model accepts batches of {rows} only ({which} fixed): run in chunks of {rows}"
