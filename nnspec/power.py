"""Which parameters a model applies: every weight and bias of every dense and conv layer tested against the spec's.

The layer-by-layer step bound is worst-case per dot product (k·u·Σ|w||x|), so on wide layers one weight changed
by x1.001 stays within it. This test looks at each parameter instead. For a layer's linear part n = x Wᵀ + b,
fed R rows X (the exact values the model fed it; for a conv, one row per sample and output position) and
giving the model's own pre-activation Y, the residual D = Y − (X Wᵀ + b), computed in float64, is rounding
noise in a correct model, while a weight applied as w_ji + δ adds δ·x_ri to column j of D (a bias: δ).

Rows are scaled to unit norm (x̌ = x/ρ, Ď = D/ρ; a bias is one more input, the column of ones), and a filter
A, built from X alone, answers for each parameter: ridge regression's A = X̌ (X̌ᵀX̌ + λI)⁻¹, whose gain
G = AᵀX̌ is near the identity, so that column i of A responds to parameter i and little to the others:

    C = Aᵀ Ď,   V = (A∘A)ᵀ (Ď∘Ď),   T = |G| m,   z = (|C| − T) / √V,   δ̂ = C_ij / G_ii

with m the tolerated change of each parameter (one ulp: another exporter may round the same number the other
way) and T the most that all parameters of unit j, each moved by at most that, can add to C_ij (without it,
a float64 file with every weight one ulp up reached z = 33). A parameter fails when z > t, t = √(2 ln(2M/α)),
M the parameters tested in one call, and its estimated change δ̂ moves the rows by more than half an ulp of their
results (`_floor`: below that, a correct runtime's consistent rounding biases live). The changes in a failing
unit are found greedily: its parameter with the largest z is taken as changed by δ̂, that is removed from
the unit's residual, and the unit tested again.

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
infinity or NaN or all zero, and rows made mostly of repeated values (`_repeating`: clamped, saturated or
step outputs, the edge rows), which share runs of partial sums. Measured, before those rules: clean models
failed in 10 of 1000 random networks of tests/test_faults.py (layers of 1 to 128 inputs on 0/1, ±1, relu6
or selu-floor values, 2.3 ulps low on average; and small MatMul or 1x1 conv units 0.1 to 0.2 ulp low or high
over thousands of rows); after them, none. Where rows are merely nearly equal (layers after sigmoids of nearly
constant values) their errors correlate too: a filter that contrasts rows, as each weight's does, cancels
that (z spread 0.6 there), but a plain mean over rows does not (testing a bias by the mean of D_j gave clean
models z up to 12 there), so a bias is tested like any weight, by its own column of A. tests/test_power.py
checks the consequence: over clean models the share of |z| (no tolerance) beyond 2 to 5 stays near Gaussian,
far within 2 exp(−t²/2).

What it needs: rows. z cannot exceed G_ii/‖a_i∘x̌_i‖ (its `reach`, every row's vote agreeing), which grows
about as √R once the rows R outnumber the layer's inputs k; parameters whose reach is at most t are counted as
`blind`: no change of theirs alone could fail. The check's own 82 rows leave a 1024-wide layer blind;
`power_rows` gives the extra rows that reach every parameter of 400- to 1024-wide tanh, relu and gelu layers
(3k). Inputs that are nearly collinear (after sigmoids: all near 0.5) stay blind at any row count: no filter
can tell their parameters apart, and a test of the whole unit is not sound there (see above).

Float64 networks: D then also holds the float64 recomputation's own rounding, noise of the same kind
(symmetric, independent of any fault), so the test holds as it is; it sees changes of 1e-9 relative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .ir import Graph, Node
from .layers.spatial import Window

# False-alarm rate per call (one candidate, every tested parameter): a clean model is reported as changed in
# at most one of a million checks under the assumption above. It costs little: t grows as √(2 ln(2M/α)), so
# going from 1e-3 to 1e-6 raises t by 15% (M = 1e6: 6.5 to 7.5), about a third more rows.
ALPHA = 1e-6
# A weight may differ by one ulp: another exporter may round the same float64 number the other way.
TOLERATED_ULPS = 1.0
# A runtime may round a unit's results with a consistent bias, a fraction of an ulp of each result: measured,
# onnxruntime's float32 Gemm on one input came out 0.19 ulp low on average, a MatMul and Add on 7 inputs
# 0.12 ulp low in one unit. Where a unit sums few terms that is most of its error, and over thousands of rows
# it reads as a change of a parameter; so a change is reported only when it moves the rows by more than half
# an ulp of their results (and of the sum before the bias) in the least-squares sense (see `_floor`).
OUTPUT_BIAS_ULPS = 0.5
# The most numbers (rows x inputs) pooled for one layer or conv group, in float64: 64 MiB. Convolutions have
# a row per output position and sample, far more than the test needs; rows are then taken evenly spaced.
ROW_BUDGET = 2**23
LINEAR_TYPES = ("dense", "conv1d", "conv2d")
# The filter's ridge λ, as a share of the rows' mean energy per input (see `_Filter`). Towards 0 it is least
# squares: no leakage between parameters, but a reach that needs many rows beyond the inputs' count; large
# values approach the matched filter, which lets every one-ulp move of a unit's other parameters into each test.
# On 1024-wide layers a tenth reached further than a hundredth and a ten-thousandth, and kept T within about
# 10 ulps. It chooses which changes are seen best, never the false-alarm bound.
RIDGE = 0.1


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
    max_abs_z: float  # the largest z of the layer's tests (0 when every one is within its tolerance)
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
    test, besides the check's own: enough that each dense or conv layer of k inputs (+1 for a bias; per group)
    sees max(3k, k + 256) rows. Measured (benchmarks/bench_power.py, tests/test_power.py): with k extra rows
    x1.001 and x1.00001 of the largest weight of 600- and 1024-wide tanh, relu and gelu layers are caught and
    located, with k/2 not all; with 2k every weight is within reach, and with 3k the biases too (a bias competes
    with every input's mean after a relu)."""
    samples = 0
    for node in graph.nodes:
        if pre_activation_name(node) is None:
            continue
        k = math.prod(node.params["weights"].shape[1:]) + ("bias" in node.params)
        rows_per_sample = math.prod(node.shape[:-1]) if node.op == "dense" else math.prod(node.shape[1:])
        samples = max(samples, math.ceil(max(3 * k, k + 256) / max(rows_per_sample, 1)))
    return samples


@dataclass(frozen=True)
class _Group:
    """One block of a layer's linear part: rows X [R, k] (float64), the model's Y [R, S], the spec's W [S, k]
    and b [S] (or None), and where its S outputs and k inputs sit in the spec's parameters."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    bias: np.ndarray | None
    first_unit: int  # output channel of column 0 (conv groups)


def _groups(node: Node, inputs: Sequence[np.ndarray], pre: np.ndarray | None, limit: int | None) -> list[_Group]:
    """The layer's linear part in rows; `limit` caps the rows (evenly spaced positions, chosen from shapes only)."""
    (x,) = inputs
    weights = node.params["weights"].astype(np.float64)
    bias = node.params["bias"].astype(np.float64) if "bias" in node.params else None
    if node.op == "dense":
        rows = np.asarray(x, dtype=np.float64).reshape(-1, weights.shape[1])
        y = None if pre is None else np.asarray(pre, dtype=np.float64).reshape(-1, weights.shape[0])
        keep = _spaced(len(rows), limit)
        return [_Group(rows[keep], None if y is None else y[keep], weights, bias, 0)]
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
        return part.x, part.weights, part.bias
    x = np.concatenate([p.x for p in parts], axis=1)
    w = np.zeros((sum(len(p.weights) for p in parts), x.shape[1]))
    row = col = 0
    for p in parts:
        w[row : row + len(p.weights), col : col + p.x.shape[1]] = p.weights
        row, col = row + len(p.weights), col + p.x.shape[1]
    return x, w, node.params["bias"].astype(np.float64) if "bias" in node.params else None


def _distinct(x: np.ndarray) -> np.ndarray:
    """Indices of rows that are not equal, up to sign and a power of two, to an earlier row.

    Such rows give exactly proportional sums in any summation order (scaling by a power of two and negation
    commute with rounding), so their errors are not independent: one of them is kept.
    """
    if not len(x):
        return np.arange(0)
    _, exponents = np.frexp(np.abs(x).max(axis=1))
    scaled = np.ldexp(x, -exponents[:, None])
    leading = scaled[np.arange(len(x)), np.argmax(scaled != 0, axis=1)]
    scaled = scaled * np.where(leading < 0, -1.0, 1.0)[:, None] + 0.0  # + 0.0: -0.0 and 0.0 alike
    _, first = np.unique(scaled, axis=0, return_index=True)
    return np.sort(first)


def _repeating(x: np.ndarray) -> np.ndarray:
    """Rows [R] in which at least half of the non-zero inputs hold a value that the same input holds in another row.

    Such values come from a clamp (a saturated sigmoid or tanh at exactly 1, relu6 at 6, selu at its floor), a
    step (±1) or the edge rows; rows made mostly of them share whole runs of partial sums, so their rounding
    errors are shared too (measured: a dense layer on inputs 81% exactly 0 or 1 came out 2.3 ulps low on
    average, and clean models failed). Zeros are exact in any sum and do not count; a row with a few clamped
    inputs among many others sums differently from every other row and is kept.
    """
    if not x.size:
        return np.zeros(len(x), dtype=bool)
    order = np.argsort(x, axis=0, kind="stable")
    ordered = np.take_along_axis(x, order, axis=0)
    same = (ordered[1:] == ordered[:-1]) & (ordered[1:] != 0)
    marked = np.zeros(x.shape, dtype=bool)
    marked[1:] |= same
    marked[:-1] |= same
    repeated = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(repeated, order, marked, axis=0)
    return 2 * repeated.sum(axis=1) >= np.maximum(np.count_nonzero(x, axis=1), 1)


@dataclass(frozen=True)
class _Filter:
    """The pooled rows of one group, and the filter built from them alone (never from the residuals).

    Rows are scaled to unit norm (x̌ = x / ρ, with the column of ones for a bias), so that rows of every size
    weigh alike. The filter is ridge regression's: A = X̌ (X̌ᵀX̌ + λI)⁻¹, whose column i responds to a change
    of parameter i and little to the others (its gain G = AᵀX̌ = I − λ(X̌ᵀX̌ + λI)⁻¹ is near the identity).
    """

    x: np.ndarray  # [R, k'] scaled rows
    residual: np.ndarray  # [R, S] D / ρ
    rho: np.ndarray  # [R] the rows' norms
    out_ulp: np.ndarray  # [R, S] an ulp of the exact pre-activation plus one of it less the bias (dtype), / ρ
    a: np.ndarray  # [R, k'] the filter
    h: np.ndarray  # [k', k'] (X̌ᵀX̌ + λI)⁻¹
    gain: np.ndarray  # [k', k'] G
    testable: np.ndarray  # [k'] the parameter's input is non-zero in some row
    reach: np.ndarray  # [k'] the largest z a change of that parameter alone can give: G_ii / ‖a_i ∘ x̌_i‖

    @property
    def rows(self) -> int:
        return len(self.x)


def _filter(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, dtype: np.dtype) -> _Filter:
    finite = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    x, y = x[finite], y[finite]
    keep = _distinct(x)
    x, y = x[keep], y[keep]
    fresh = ~_repeating(x)
    x, y = x[fresh], y[fresh]
    if bias is not None:
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
        weights = np.concatenate([weights, bias[:, None]], axis=1)
    rho = np.sqrt(np.einsum("ri,ri->r", x, x))
    x, y, rho = x[rho > 0], y[rho > 0], rho[rho > 0]
    with np.errstate(over="ignore", invalid="ignore"):
        exact = x @ weights.T
        residual = (y - exact) / rho[:, None]
        # the results' roundings: of n, and of the sum before the bias where the bias is added apart (MatMul, Add)
        products = exact if bias is None else exact - bias
        ulps = np.spacing(np.abs(exact).astype(dtype)) + np.spacing(np.abs(products).astype(dtype))
        out_ulp = ulps.astype(np.float64) / rho[:, None]
    ok = np.isfinite(residual).all(axis=1) & np.isfinite(out_ulp).all(axis=1)
    x, residual, rho, out_ulp = x[ok] / rho[ok, None], residual[ok], rho[ok], out_ulp[ok]
    k = x.shape[1]
    gram = x.T @ x
    ridge = RIDGE * max(len(x), 1) / k  # the rows have unit norm: trace(gram) = R
    h = np.linalg.inv(gram + ridge * np.eye(k))
    h = (h + h.T) / 2
    a = x @ h
    gain = np.eye(k) - ridge * h
    testable = np.any(x != 0, axis=0)
    seen = a * x
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.diag(gain) / np.sqrt((seen * seen).sum(axis=0))
    return _Filter(x, residual, rho, out_ulp, a, h, gain, testable, np.where(testable, np.nan_to_num(reach), 0.0))


def _floor(f: _Filter) -> np.ndarray:
    """[k', S]: the change of parameter i that moves unit j's rows by OUTPUT_BIAS_ULPS of their results' ulps U_rj
    (least squares: β Σ_r |x̌_ri| Ǔ_rj / Σ_r x̌_ri²). A change below it is below the results' own resolution, where
    a correct runtime's consistent rounding biases live; it is not reported, however significant."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return OUTPUT_BIAS_ULPS * (np.abs(f.x).T @ f.out_ulp) / (f.x * f.x).sum(axis=0)[:, None]


def _scores(f: _Filter, residual: np.ndarray, slack: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, δ̂) per parameter [k', S] for residual columns [R, S], their slack T = |G| m and floor [k', S].

    z = (|C| − T) / √V with C = Aᵀ Ď and V = (A∘A)ᵀ (Ď∘Ď); δ̂ = C / G_ii; z is 0 where |δ̂| is below the floor.
    """
    c = f.h @ (f.x.T @ residual)
    v = (f.a * f.a).T @ (residual * residual)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.abs(c) - slack) / np.sqrt(v)
        delta = c / np.diag(f.gain)[:, None]
    z = np.where(np.isnan(z), 0.0, z)  # 0 / 0: nothing moved, nothing seen
    return np.where(f.testable[:, None] & ~(np.abs(delta) <= floor), z, 0.0), delta


def test_layers(
    graph: Graph,
    samples: Mapping[str, list[tuple[list[np.ndarray], np.ndarray]]],
    candidate: str,
    alpha: float = ALPHA,
    *,
    tolerated_ulps: float = TOLERATED_ULPS,
    tests: int | None = None,
) -> list[PowerResult]:
    """Test every parameter of every dense and conv layer in `samples` against the spec.

    samples: per layer name, (exact inputs, model pre-activation) per case, pooled here. The threshold counts
    the parameters of those layers (M), so that a clean model fails one call with probability at most `alpha`;
    `tests` gives another M, for a check that splits its layers over several calls.
    """
    nodes = [graph.node(name) for name in samples if pre_activation_name(graph.node(name)) is not None]
    t = threshold(sum(count_tests(n) for n in nodes) if tests is None else tests, alpha)
    results = []
    for node in nodes:
        cases = samples[node.name]
        if not cases:
            continue
        k = math.prod(node.params["weights"].shape[1:])
        counts = [_row_count(node, inputs) for inputs, _ in cases]
        share = min(1.0, ROW_BUDGET / k / max(sum(counts), 1))
        per_case = [
            _groups(node, inputs, pre, math.ceil(n * share)) for (inputs, pre), n in zip(cases, counts, strict=True)
        ]
        result = PowerResult(node.name, candidate, 0, 0, t, 0, None, 0.0)
        for g, first in enumerate(per_case[0]):
            x = np.concatenate([case[g].x for case in per_case])
            y = np.concatenate([case[g].y for case in per_case])
            f = _filter(x, y, first.weights, first.bias, graph.dtype)
            spec = first.weights.T if first.bias is None else np.concatenate([first.weights.T, first.bias[None]])
            tolerance = tolerated_ulps * np.spacing(np.abs(spec).astype(graph.dtype)).astype(np.float64)
            slack = np.abs(f.gain) @ tolerance
            floor = _floor(f) if tolerated_ulps else np.zeros_like(tolerance)
            z, _ = _scores(f, f.residual, slack, floor)
            units = spec.shape[1]
            result.rows = max(result.rows, f.rows)
            result.tested += int(f.testable.sum()) * units
            result.blind += int(np.count_nonzero(f.testable & (f.reach <= t))) * units
            result.max_abs_z = max(result.max_abs_z, float(z.max(initial=0.0)))
            for finding in _localize(node, first, f, z, slack, floor, spec, t):
                result.flagged += 1
                if result.worst is None or finding.z > result.worst.z:
                    result.worst = finding
        results.append(result)
    return results


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
    f: _Filter,
    z: np.ndarray,
    slack: np.ndarray,
    floor: np.ndarray,
    spec: np.ndarray,
    t: float,
) -> list[WeightFinding]:
    """The changes that explain each flagged unit: the parameter with the largest z is taken as changed by its
    estimate δ̂, its effect removed from the unit's residual, and the unit tested again (a change seen through
    inputs that are correlated with its own would otherwise be reported once per input)."""
    units = np.flatnonzero((z > t).any(axis=0))
    found: dict[tuple[int, int], tuple[float, float]] = {}  # (i, j) -> (its changes so far, summed; the largest z)
    residual = f.residual[:, units].copy()
    active = np.arange(len(units))  # positions in `units` still to explain
    for _ in range(MAX_CHANGES_PER_UNIT):
        if not len(active):
            break
        cols = units[active]
        scores, delta = _scores(f, residual[:, active], slack[:, cols], floor[:, cols])
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
    return [_finding(node, group, i, j, float(spec[i, j]), d, z_) for (i, j), (d, z_) in found.items()]


def _finding(node: Node, group: _Group, i: int, j: int, spec: float, delta: float, z: float) -> WeightFinding:
    unit = group.first_unit + j
    k = group.weights.shape[1]
    if i == k:  # the column of ones: the bias
        return WeightFinding(node.name, "bias", (unit,), spec, spec + delta, z)
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
