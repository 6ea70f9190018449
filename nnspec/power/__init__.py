"""Which parameters a model applies: every weight and bias of every dense and conv layer tested against the spec's.

This package: the test, its results and where it looks (here), the filter and scores (`statistic`), which rows
it uses (`rows`).

The layer-by-layer step bound is worst-case per dot product (k·u·Σ|w||x|), so on wide layers one weight changed
by x1.001 stays within it. This test looks at each parameter instead. For a layer's linear part n = x Wᵀ + b,
fed R rows X (the exact values the model fed it; for a conv, one row per sample and output position) and
giving the model's own pre-activation Y, the residual D = Y − (X Wᵀ + b), computed in float64, is rounding
noise in a correct model, while a weight applied as w_ji + δ adds δ·x_ri to column j of D (a bias: δ).

Rows are scaled to unit norm (x̌ = x/ρ, Ď = D/ρ; a bias is one more input, the column of ones, 1̌ = 1/ρ), and
a filter A, built from X alone, answers for each parameter, so that column i of A responds to parameter i and
little to the others (its gain G = AᵀX̌ is near the identity):

    C = Aᵀ Ď,   V = (A∘A)ᵀ (Ď∘Ď),   T = |G| m,   z = (|C| − T) / √V,   δ̂ = C_ij / G_ii

with m the tolerated change of each parameter (one ulp: another exporter may round the same number the other
way) and T the most that all parameters of unit j, each moved by at most that, can add to C_ij (without it,
a float64 file with every weight one ulp up reached z = 33). A parameter fails when z > t, t = √(2 ln(2M/α)),
M the parameters tested in one call, and its estimated change δ̂ moves the rows by more than half an ulp of their
results (`statistic.change_floor`: below that, a correct runtime's consistent rounding biases live). The changes in a failing
unit are found greedily: its parameter with the largest z is taken as changed by δ̂, that is removed from
the unit's residual, and the unit tested again.

The filter. For the weights, ridge regression with an instrument: A = Ã (X̌ᵀÃ + λI)⁻¹ = (ÃX̌ᵀ + λI)⁻¹ Ã, with
Ã = sign(X̌)·√|X̌| elementwise and both X̌ and Ã stripped of the rows' common direction 1̌ (`statistic._weights_filter`).
The push-through identity lets it be computed over rows (R×R) when the rows are fewer than the inputs, so a
1024-wide layer needs a few hundred rows, not thousands: least squares (λ → 0) needs R > k before it sees
anything, while the matched filter (λ → ∞) lets every other parameter's tolerated move into each test; λ at
the mean eigenvalue sits between. The instrument's square root gives each row's vote a more even weight than
X̌ itself (the reach below is Σa x̌ / √Σa²x̌², largest for even |a|), about 15% more z for the same rows.
Without the common direction, a rounding error that all rows share (nearly equal rows sum alike) and the bias
add nothing to any weight's test. The bias's filter (`statistic._common_filter`) is what ridge regression on the inputs
leaves of 1̌, a contrast between rows; it needs rows well beyond the inputs (about 3k: a bias competes with
every input's mean).

Why t bounds false alarms. Assume that a correct runtime computes each unit as with the spec's parameters,
each within one ulp, plus rounding errors that are, given the inputs, independent across rows and symmetric
about zero. Then, given their magnitudes, the signs of the terms a_ri·e_rj are fair coin flips, and whatever
the magnitudes (Hoeffding's inequality for Rademacher sums, self-normalized as in Efron 1969)
P(|Σ ε_r c_r| > t·√Σ c_r²) ≤ 2 exp(−t²/2). A depends on X only, |C| − T is at most the noise's share of C,
and √V holds the noise (plus, for moved parameters, their own effect, which in expectation only enlarges
it): so each of the M tests is within 2 exp(−t²/2), and by the union bound a correct model fails a call with
probability at most α. Nothing is tuned: t follows from M and α, T and the floor from the dtype's ulps; λ
changes which changes are seen best, never the bound.

Where errors are not independent across rows, rows are dropped (a choice made from X alone, so the bound
stands): rows equal up to sign and a power of two (their sums are exactly proportional), rows holding an
infinity or NaN or all zero, and rows made mostly of repeated values (`rows.repeating`: clamped, saturated or
step outputs, the edge rows), which share runs of partial sums. Measured, before those rules: clean models
failed in 10 of 1000 random networks of tests/test_faults.py (layers of 1 to 128 inputs on 0/1, ±1, relu6
or selu-floor values, 2.3 ulps low on average; and small MatMul or 1x1 conv units 0.1 to 0.2 ulp low or high
over thousands of rows); after them, none. Where rows are merely nearly equal (layers after sigmoids of nearly
constant values) their errors correlate too: a filter that contrasts rows, as each weight's does (it is
orthogonal to the rows' common direction), cancels that, but a plain mean over rows does not (testing a bias
by the mean of D_j gave clean models z up to 12 there), so a bias's filter is a contrast too, and a bias is
reported only beyond what its sum's roundings could add in total (`statistic.change_floor`). Where most
inputs barely vary about a common part, rows are differenced two by two (`rows.paired`), which cancels what
such rows share. tests/test_power.py checks the consequence: over clean models the share of |z| (no tolerance) beyond 2 to 5 stays near Gaussian,
far within 2 exp(−t²/2).

What it needs: rows. z cannot exceed G_ii/‖a_i∘x̌_i‖ (its `reach`, every row's vote agreeing), which grows
about as √R (0.55 √R on the benchmark's tanh, relu and gelu layers); parameters whose reach is at most t are
counted as `blind`: no change of theirs alone could fail. The check's own 82 rows leave a 1024-wide layer
blind; `power_rows` adds POWER_ROWS per layer, whatever its width. Inputs that are nearly collinear (deep
sigmoid layers: all near 0.5, spread 0.12) would stay blind row by row, their common part being most of
each input: their rows are taken two by two (`rows.paired`), and such a dense layer takes SPARE_ROWS more
(a spare batch, drawn and run only then), so that its pairs number about as many as the others' rows.

Float32 arithmetic for C and V: `statistic.z_scores` computes both in float32 (half the work) and takes |C|
at its smallest and V at its largest within the products' rigorous error bounds, so z is never above its
float64 value.

Float64 networks: D then also holds the float64 recomputation's own rounding, noise of the same kind
(symmetric, independent of any fault), so the test holds as it is; it sees changes of 1e-9 relative.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Node
from ..layers.spatial import Window
from .rows import paired
from .statistic import Filter, build_filter, change_floor, z_scores

Case = tuple[list[np.ndarray], np.ndarray]  # one case of a layer: its exact inputs, the model's pre-activation
Samples = Mapping[str, list[Case]]  # per layer name

# False-alarm rate per call (one candidate, every tested parameter): a clean model is reported as changed in
# at most one of a million checks under the assumption above. It costs little: t grows as √(2 ln(2M/α)), so
# going from 1e-3 to 1e-6 raises t by 15% (M = 1e6: 6.5 to 7.5), about a third more rows.
ALPHA = 1e-6

# A weight may differ by one ulp: another exporter may round the same float64 number the other way.
TOLERATED_ULPS = 1.0

# The most numbers (rows x inputs) pooled for one layer or conv group, in float64: 64 MiB. Convolutions have
# a row per output position and sample, far more than the test needs; rows are then taken evenly spaced.
ROW_BUDGET = 2**23

LINEAR_TYPES = ("dense", "conv1d", "conv2d")

# Rows of the extra batch each dense or conv layer gets. z cannot exceed a parameter's reach, about 0.55 √R once
# the change dominates the rounding noise (√R/√3 for normal inputs with Ã = X̌, more with the √ instrument), so
# t = 7.5 needs 190 rows at the very least; 512 give reach 10 to 13 on the benchmark's tanh, relu and gelu layers,
# where x1.001 and x1.00001 of the largest weight of 1024-wide layers then stand at z = 9 to 17. Independent of
# the width: the filter works in row space when the rows are fewer than the inputs, and its cost grows with R.
POWER_ROWS = 512

# A dense layer whose rows are taken two by two (`rows.paired`: inputs that barely vary about a common part, deep in
# sigmoid and softplus stacks) has half as many rows to test: its reach about √(R/2). Such a layer takes a spare
# batch of as many rows again (its pairs then number about POWER_ROWS), drawn and run only when one asks for it;
# the others keep POWER_ROWS, and their cost. Measured (benchmarks/bench_power.py): the third layer of a 1024-wide
# softplus stack, paired, reached z 7.57 against t = 7.61 on 297 pairs; 14.6 on 1065.
SPARE_ROWS = POWER_ROWS


@dataclass(frozen=True)
class WeightFinding:
    """One flagged parameter entry: where it is in the spec's layout, and the value the model applies."""

    layer: str
    param: str  # "weights" or "bias"
    index: tuple[int, ...]  # in the spec's layout: weights [units, in_features], conv [filters, in / groups, *kernel]
    spec: float
    applied: float  # the spec's value plus the estimated change
    z: float

    @property
    def ratio(self) -> float:
        return self.applied / self.spec if self.spec else math.inf

    def describe(self) -> str:
        """`layer 'l1', weights[12, 345]: the model applies 0.52343, the spec says 0.52291 (x1.001)`."""
        where = f"layer {self.layer!r}, {self.param}[{', '.join(map(str, self.index))}]"
        change = self.applied - self.spec
        # enough digits to show the change itself: x1.00001 needs seven
        digits = 5 if not change or not self.spec else max(5, 2 - math.floor(math.log10(abs(change / self.spec))))
        how = f"x{self.ratio:.{digits}g}" if self.spec else f"{change:+.3g}"
        return f"{where}: the model applies {self.applied:.{digits}g}, the spec says {self.spec:.{digits}g} ({how})"


@dataclass
class PowerResult:
    """The parameter test of one layer of one candidate."""

    layer: str
    candidate: str
    tested: int  # parameters whose input is non-zero in some row
    rows: int  # rows used (per conv group, the most), after dropping non-finite, all-zero and repeated ones
    threshold: float
    flagged: int  # parameters found changed
    worst: WeightFinding | None  # the finding with the largest z
    max_abs_z: float  # the largest z of its tests (without slack and floor where z stayed within t even so)
    blind: int = 0  # tested parameters whose reach is at most the threshold: no change of theirs alone can fail

    @property
    def passed(self) -> bool:
        return self.flagged == 0


def pre_activation_name(node: Node) -> str | None:
    """The tensor that holds a layer's pre-activation in nnspec's export (`<layer>/n` when the activation is
    not linear, else the layer's own name), None for types without a linear part."""
    if node.op not in LINEAR_TYPES:
        return None
    linear = node.activation is None or node.activation.name == "linear"
    return node.name if linear else f"{node.name}/n"


def threshold(tested: int, alpha: float = ALPHA) -> float:
    """t = √(2 ln(2M/α)): with M parameters each within 2 exp(−t²/2), the chance of any false flag is α."""
    return math.sqrt(2 * math.log(2 * max(tested, 1) / alpha))


def power_rows(graph: Graph) -> int:
    """Samples of one extra random batch (nnspec.inputs.random_cases) to run through the traced model for this
    test, besides the check's own: enough that each dense or conv layer sees POWER_ROWS rows from it (a conv
    has a row per output position, so one sample is often enough). The spare batch (SPARE_ROWS), for the dense
    layers whose rows are taken two by two, is as many samples again, drawn as `random_cases(..., part=1)`."""
    samples = 0
    for node in graph.nodes:
        if pre_activation_name(node) is None:
            continue
        rows_per_sample = max(math.prod(node.shape[:-1]) if node.op == "dense" else math.prod(node.shape[1:]), 1)
        samples = max(samples, math.ceil(POWER_ROWS / rows_per_sample))
    return samples


@dataclass(frozen=True)
class _Group:
    """One block of a layer's linear part: rows X [R, k] (float64 for a conv; a dense layer's as the model gave
    them), the model's Y [R, S], the spec's W [S, k] and b [S] (or None), and where its S outputs and k inputs sit
    in the spec's parameters."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None
    first_unit: int  # output channel of column 0 (conv groups)


def _groups(
    node: Node,
    inputs: Sequence[np.ndarray],
    pre: np.ndarray | None,
    limit: int | None,
    wide: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> list[_Group]:
    """The layer's linear part in rows; `limit` caps the rows (evenly spaced positions, chosen from shapes only).
    `wide`: the layer's weights and bias in float64 (`_wide`), made once for all its cases; else made here."""
    (x,) = inputs
    weights, bias = wide or _wide(node)
    if node.op == "dense":  # rows as the model gave them: `_test_layer` makes them float64 as it pools them
        rows = np.reshape(x, (-1, weights.shape[1]))
        y = None if pre is None else np.reshape(pre, (-1, weights.shape[0]))
        if limit is not None and len(rows) > limit:
            keep = _spaced(len(rows), limit)
            rows, y = rows[keep], None if y is None else y[keep]
        return [_Group(rows, y, weights, bias, 0)]
    window, groups = Window.from_attrs(node.attrs), node.attrs["group"]
    x = np.asarray(x, dtype=np.float64)
    windows = window.view(x, 0.0)  # [N, C, *out, *kernel], a strided view
    n, rank = x.shape[0], window.rank
    out = windows.shape[2 : 2 + rank]
    positions = np.unravel_index(_spaced(n * math.prod(out), limit), (n, *out))
    at = (positions[0], slice(None), *positions[1:])  # the sample and the output position of each row
    taps = windows[at]  # [R, C, *kernel]: only the chosen windows are copied
    filters = weights.shape[0]
    per_filters = filters // groups
    taps = taps.reshape(len(taps), groups, -1)
    y = None
    if pre is not None:
        pre = np.asarray(pre, dtype=np.float64)
        y = pre[at]  # [R, F]
    return [
        _Group(
            np.ascontiguousarray(taps[:, g]),
            None if y is None else y[:, g * per_filters : (g + 1) * per_filters],
            weights[g * per_filters : (g + 1) * per_filters].reshape(per_filters, -1),
            None if bias is None else bias[g * per_filters : (g + 1) * per_filters],
            g * per_filters,
        )
        for g in range(groups)
    ]


def _wide(node: Node) -> tuple[np.ndarray, np.ndarray | None]:
    """A layer's weights and bias (or None) in float64, converted exactly."""
    bias = node.params["bias"].astype(np.float64) if "bias" in node.params else None
    return node.params["weights"].astype(np.float64), bias


def _spaced(count: int, limit: int | None) -> np.ndarray:
    if limit is None or count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def linear_rows(node: Node, inputs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(X rows float64, W as S×k float64, b or None) of a layer's linear part, or None for a type without one.

    Dense: rows are the input's last axis ([N, T, in] gives N·T rows). Conv: one row per sample and output
    position, the window's taps (im2col), in the order [channel, *kernel]; a grouped conv's W is block-diagonal
    (its zeros are no parameters: `test_layers` works per group).
    """
    if node.op not in LINEAR_TYPES:
        return None
    parts = _groups(node, inputs, None, None)
    if len(parts) == 1:
        (part,) = parts
        return np.asarray(part.x, dtype=np.float64), part.weights, part.bias
    x = np.concatenate([p.x for p in parts], axis=1)
    w = np.zeros((sum(len(p.weights) for p in parts), x.shape[1]))
    row = col = 0
    for p in parts:
        w[row : row + len(p.weights), col : col + p.x.shape[1]] = p.weights
        row, col = row + len(p.weights), col + p.x.shape[1]
    return x, w, node.params["bias"].astype(np.float64) if "bias" in node.params else None


def test_layers(
    graph: Graph,
    samples: Mapping[str, list[tuple[list[np.ndarray], np.ndarray]]],
    candidate: str,
    alpha: float = ALPHA,
    *,
    tolerated_ulps: float = TOLERATED_ULPS,
    tests: int | None = None,
    spare: Samples | Callable[[], Samples] | None = None,
) -> list[PowerResult]:
    """Test every parameter of every dense and conv layer in `samples` against the spec.

    samples: per layer name, (exact inputs, model pre-activation) per case, pooled here. The threshold counts
    the parameters of those layers (M), so that a clean model fails one call with probability at most `alpha`;
    `tests` gives another M, for a check that splits its layers over several calls. `spare`: more cases of the
    same kind (or what makes them, called once, when first needed), taken by the dense layers whose rows would
    be tested two by two (see SPARE_ROWS; a choice made from the rows X alone).
    """
    nodes = [graph.node(name) for name in samples if pre_activation_name(graph.node(name)) is not None]
    t = threshold(sum(count_tests(n) for n in nodes) if tests is None else tests, alpha)
    made: list[Samples] = []

    def more(name: str) -> list[Case]:
        if not made:
            made.append((spare() if callable(spare) else spare) or {})
        return made[0].get(name, [])

    # One layer at a time: what a layer's test holds (its float64 parameters, rows and scores) goes before the next.
    # Its float64 parameters are the graph's own copy where it keeps one, else made for the layer (Graph.wide_node).
    return [
        _test_layer(
            graph.wide_node(node), samples[node.name], candidate, t, tolerated_ulps, graph.dtype,
            (lambda name=node.name: more(name)) if spare is not None else None,
        )
        for node in nodes
        if samples[node.name]
    ]  # fmt: skip


# Numbers in one [parameters, units] array of scores (float64: 64 MiB). A layer with more is scored in blocks of
# units, so that its test holds a block's scores at a time, not the layer's several times over.
SCORE_BUDGET = 2**23


def _test_layer(
    node: Node,
    cases: Sequence[tuple[list[np.ndarray], np.ndarray]],
    candidate: str,
    t: float,
    tolerated_ulps: float,
    dtype: np.dtype,
    spare: Callable[[], list[Case]] | None = None,
) -> PowerResult:
    """Every parameter of one layer (`node` in float64), over its cases' pooled rows (see `test_layers`); a dense
    layer whose rows would be taken two by two takes the `spare` cases too."""
    per_case = _per_case(node, cases)
    result = PowerResult(node.name, candidate, 0, 0, t, 0, None, 0.0)
    for g, first in enumerate(per_case[0]):
        x = np.concatenate([case[g].x for case in per_case], dtype=np.float64)
        if spare is not None and node.op == "dense" and _paired_rows(x) and (more := spare()):
            per_case = _per_case(node, [*cases, *more])
            x = np.concatenate([case[0].x for case in per_case], dtype=np.float64)
        y = np.concatenate([case[g].y for case in per_case], dtype=np.float64)
        f = build_filter(x, y, first.weights, first.bias, dtype)
        del x, y
        units = len(first.weights)
        # z without the slack and the floor, at its largest, per unit; the slack and the floor only lower z, so
        # they are made for the units whose z exceeds t without them (`flagged`), whose z is kept.
        most, kept = np.zeros(units), []
        step = max(1, SCORE_BUDGET // max(f.x.shape[1], 1))
        for start in range(0, units, step):
            block, _ = z_scores(f, f.residual[:, start : start + step])
            most[start : start + step] = block.max(axis=0, initial=0.0)
            kept.append(block[:, most[start : start + step] > t])
        flagged = np.flatnonzero(most > t)
        z = np.concatenate(kept, axis=1)
        slack, floor = np.zeros(z.shape), np.zeros(z.shape)
        if tolerated_ulps and len(flagged):
            tolerance = np.spacing(np.abs(_spec_columns(first, flagged)).astype(dtype)).astype(np.float64)
            slack = np.abs(f.gain) @ (tolerated_ulps * tolerance)
            floor = change_floor(f, flagged)
            z, _ = z_scores(f, f.residual[:, flagged], slack, floor)
            most[flagged] = z.max(axis=0, initial=0.0)
        result.rows = max(result.rows, f.rows)
        result.tested += int(f.testable.sum()) * units
        result.blind += int(np.count_nonzero(f.testable & (f.reach <= t))) * units
        result.max_abs_z = max(result.max_abs_z, float(most.max(initial=0.0)))
        for finding in _localize(node, first, f, flagged, z, slack, floor, t):
            result.flagged += 1
            if result.worst is None or finding.z > result.worst.z:
                result.worst = finding
    return result


def _per_case(node: Node, cases: Sequence[Case]) -> list[list[_Group]]:
    """Each case's groups of rows, evenly thinned where all of them would hold more than ROW_BUDGET numbers."""
    k = math.prod(node.params["weights"].shape[1:])
    counts = [_row_count(node, inputs) for inputs, _ in cases]
    share = min(1.0, ROW_BUDGET / k / max(sum(counts), 1))
    wide = (node.params["weights"], node.params.get("bias"))
    return [
        _groups(node, inputs, pre, math.ceil(n * share), wide) for (inputs, pre), n in zip(cases, counts, strict=True)
    ]


def _paired_rows(x: np.ndarray) -> bool:
    """Whether a dense layer's pooled rows would be taken two by two (`rows.paired`, on the finite ones)."""
    with np.errstate(all="ignore"):
        return paired(x[np.isfinite(x).all(axis=1)])


def _spec_columns(group: _Group, units: np.ndarray) -> np.ndarray:
    """The spec's parameters of some units as the filter's columns: [k', len(units)], the bias last."""
    columns = group.weights[units].T
    return columns if group.bias is None else np.concatenate([columns, group.bias[units][None]])


def count_tests(node: Node) -> int:
    """Tests made on a layer: one per parameter."""
    return sum(int(node.params[p].size) for p in ("weights", "bias") if p in node.params)


def _row_count(node: Node, inputs: Sequence[np.ndarray]) -> int:
    (x,) = inputs
    if node.op == "dense":
        return math.prod(x.shape[:-1])
    return x.shape[0] * math.prod(node.shape[1:])


# A unit (output) whose residual still stands out after this many changes found in it is not searched further.
MAX_CHANGES_PER_UNIT = 16


def _localize(
    node: Node,
    group: _Group,
    f: Filter,
    flagged: np.ndarray,
    z: np.ndarray,
    slack: np.ndarray,
    floor: np.ndarray,
    t: float,
) -> list[WeightFinding]:
    """The changes that explain each flagged unit: the parameter with the largest z is taken as changed by its
    estimate δ̂, its effect removed from the unit's residual, and the unit tested again (a change seen through
    inputs that are correlated with its own would otherwise be reported once per input). z, slack and floor are
    [k', len(flagged)], the columns of the units in `flagged`."""
    failing = (z > t).any(axis=0)
    units = flagged[failing]
    slack, floor = slack[:, failing], floor[:, failing]
    found: dict[tuple[int, int], tuple[float, float]] = {}  # (i, j) -> (its changes so far, summed; the largest z)
    residual = f.residual[:, units].copy()
    active = np.arange(len(units))  # positions in `units` still to explain
    for _ in range(MAX_CHANGES_PER_UNIT):
        if not len(active):
            break
        scores, delta = z_scores(f, residual[:, active], slack[:, active], floor[:, active])
        best = np.argmax(scores, axis=0)
        top = scores[best, np.arange(len(active))]
        for pos in np.flatnonzero(top > t):
            i, col = int(best[pos]), int(active[pos])
            j = int(units[col])
            # a parameter taken again (several of a unit's parameters changed) adds to its change so far
            total, most = found.get((i, j), (0.0, 0.0))
            found[(i, j)] = (total + float(delta[i, pos]), max(most, float(top[pos])))
            residual[:, col] -= f.x[:, i] * delta[i, pos]
        active = active[top > t]
    return [_finding(node, group, i, j, d, z_) for (i, j), (d, z_) in found.items()]


def _finding(node: Node, group: _Group, i: int, j: int, delta: float, z: float) -> WeightFinding:
    unit = group.first_unit + j
    k = group.weights.shape[1]
    if i == k:  # the column of ones: the bias
        assert group.bias is not None
        spec = float(group.bias[j])
        return WeightFinding(node.name, "bias", (unit,), spec, spec + delta, z)
    spec = float(group.weights[j, i])
    inner = np.unravel_index(i, node.params["weights"].shape[1:])
    return WeightFinding(node.name, "weights", (unit, *map(int, inner)), spec, spec + delta, z)


def collect_samples(
    graph: Graph, runs: Iterable[Mapping[str, np.ndarray]]
) -> dict[str, list[tuple[list[np.ndarray], np.ndarray]]]:
    """`test_layers`' samples from traced runs: per case, the network's feeds and every value the model
    exposed (layer outputs by layer name, pre-activations by `pre_activation_name`). Layers whose inputs or
    pre-activation the model does not expose are left out."""
    samples: dict[str, list[tuple[list[np.ndarray], np.ndarray]]] = {}
    for values in runs:
        for node in graph.nodes:
            pre = pre_activation_name(node)
            if pre is None or pre not in values or any(i not in values for i in node.inputs):
                continue
            samples.setdefault(node.name, []).append(([values[i] for i in node.inputs], values[pre]))
    return samples
