"""Which parameters a model applies: every weight and bias of every dense and conv layer tested against the spec's.

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
results (`_floor`: below that, a correct runtime's consistent rounding biases live). The changes in a failing
unit are found greedily: its parameter with the largest z is taken as changed by δ̂, that is removed from
the unit's residual, and the unit tested again.

The filter. For the weights, ridge regression with an instrument: A = Ã (X̌ᵀÃ + λI)⁻¹ = (ÃX̌ᵀ + λI)⁻¹ Ã, with
Ã = sign(X̌)·√|X̌| elementwise and both X̌ and Ã stripped of the rows' common direction 1̌ (`_weights_filter`).
The push-through identity lets it be computed over rows (R×R) when the rows are fewer than the inputs, so a
1024-wide layer needs a few hundred rows, not thousands: least squares (λ → 0) needs R > k before it sees
anything, while the matched filter (λ → ∞) lets every other parameter's tolerated move into each test; λ at
the mean eigenvalue sits between. The instrument's square root gives each row's vote a more even weight than
X̌ itself (the reach below is Σa x̌ / √Σa²x̌², largest for even |a|), about 15% more z for the same rows.
Without the common direction, a rounding error that all rows share (nearly equal rows sum alike) and the bias
add nothing to any weight's test. The bias's filter (`_common_filter`) is what ridge regression on the inputs
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
about as √R (0.55 √R on the benchmark's tanh, relu and gelu layers); parameters whose reach is at most t are
counted as `blind`: no change of theirs alone could fail. The check's own 82 rows leave a 1024-wide layer
blind; `power_rows` adds POWER_ROWS per layer, whatever its width. Inputs that are nearly collinear (deep
sigmoid layers: all near 0.5, spread 0.12) stay blind: their common part is most of each input, and the
filter sees only the rest.

Float32 arithmetic for C and V: `_scores` computes both in float32 (half the work) and takes |C| at its
smallest and V at its largest within the products' rigorous error bounds, so z is never above its float64
value.

Float64 networks: D then also holds the float64 recomputation's own rounding, noise of the same kind
(symmetric, independent of any fault), so the test holds as it is; it sees changes of 1e-9 relative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

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
# The filter's ridge λ, as a share of the mean eigenvalue of X̌ᵀÃ over its min(R, k') non-zero ones (see
# `_Filter`). Towards 0 it is instrumental least squares: no leakage between parameters, but with fewer rows than
# inputs no filter at all; large values approach the matched filter Ã, which lets every one-ulp move of a unit's
# other parameters into each test (its slack T). Measured on 600- and 1024-wide layers with 466 rows
# (benchmarks/bench_power.py's networks): 1 caught x1.00001 of the largest weight in 9 of 11 layers, a tenth in 8,
# the matched filter in 7. It chooses which changes are seen best, never the false-alarm bound.
RIDGE = 1.0
# The bias filter's λ, on the same scale. Smaller than RIDGE: the bias's filter must contrast rows (a plain mean
# over rows takes in the rounding error that nearly equal rows share: clean sigmoid layers reached z = 12 that
# way), and the smaller λ, the more it does. With 1, clean narrow sigmoid layers reached z = 6.7 (no ulp tolerance).
COMMON_RIDGE = 0.1
# Rows of the extra batch each dense or conv layer gets. z cannot exceed a parameter's reach, about 0.55 √R once
# the change dominates the rounding noise (√R/√3 for normal inputs with Ã = X̌, more with the √ instrument), so
# t = 7.5 needs 190 rows at the very least; 512 give reach 10 to 13 on the benchmark's tanh, relu and gelu layers,
# where x1.001 and x1.00001 of the largest weight of 1024-wide layers then stand at z = 9 to 17. Independent of
# the width: the filter works in row space when the rows are fewer than the inputs, and its cost grows with R.
POWER_ROWS = 512


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
    has a row per output position, so one sample is often enough)."""
    samples = 0
    for node in graph.nodes:
        if pre_activation_name(node) is None:
            continue
        rows_per_sample = math.prod(node.shape[:-1]) if node.op == "dense" else math.prod(node.shape[1:])
        samples = max(samples, math.ceil(POWER_ROWS / max(rows_per_sample, 1)))
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
    # Rows equal up to sign and a power of two give equal fingerprints: each row's sum of products with one probe
    # (the same arithmetic, elementwise then a row sum, on numbers that differ by that factor, which commutes with
    # rounding), scaled back by the same power of two, without its sign. Rows whose fingerprints are equal are then
    # compared in full, so a collision costs time, never a row.
    probe = np.random.default_rng(0).random(x.shape[1])
    fingerprint = np.abs(np.ldexp((x * probe).sum(axis=1), -exponents))
    _, first, group = np.unique(fingerprint, return_index=True, return_inverse=True)
    counts = np.bincount(group)
    kept = [first[counts == 1]]
    for g in np.flatnonzero(counts > 1):
        members = np.flatnonzero(group == g)
        scaled = np.ldexp(x[members], -exponents[members, None])
        leading = scaled[np.arange(len(members)), np.argmax(scaled != 0, axis=1)]
        scaled = scaled * np.where(leading < 0, -1.0, 1.0)[:, None] + 0.0  # + 0.0: -0.0 and 0.0 alike
        kept.append(members[np.unique(scaled, axis=0, return_index=True)[1]])
    return np.sort(np.concatenate(kept))


def _repeating(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows [R] in which at least half of the non-zero inputs hold a value that the same input holds in another row.

    Such values come from a clamp (a saturated sigmoid or tanh at exactly 1, relu6 at 6, selu at its floor), a
    step (±1) or the edge rows; rows made mostly of them share whole runs of partial sums, so their rounding
    errors are shared too (measured: a dense layer on inputs 81% exactly 0 or 1 came out 2.3 ulps low on
    average, and clean models failed). Zeros are exact in any sum and do not count; a row with a few clamped
    inputs among many others sums differently from every other row and is kept.
    """
    if not x.size:
        return np.zeros(len(x), dtype=bool)
    columns = np.ascontiguousarray(x.T, dtype=dtype)  # each input's values in a row (exact: they are the dtype's)
    ordered = np.sort(columns, axis=1)
    twice = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != 0)
    held = np.flatnonzero(twice.any(axis=1))  # the inputs that hold some value twice
    repeated = np.zeros((len(held), len(x)), dtype=bool)
    for n, i in enumerate(held):
        repeated[n] = np.isin(columns[i], ordered[i, 1:][twice[i]])
    return 2 * repeated.sum(axis=0) >= np.maximum(np.count_nonzero(x, axis=1), 1)


@dataclass
class _Filter:
    """The pooled rows of one group, and the filter built from them alone (never from the residuals).

    Rows are scaled to unit norm (x̌ = x / ρ, with the column of ones for a bias), so that rows of every size
    weigh alike. The filter is A = Ã (X̌ᵀÃ + λI)⁻¹ = (ÃX̌ᵀ + λI)⁻¹ Ã with Ã = sign(X̌)·√|X̌| (elementwise): ridge
    regression with Ã as its instrument, whose column i responds to a change of parameter i and little to the
    others (its gain G = AᵀX̌ = I − λ(X̌ᵀÃ + λI)⁻ᵀ is near the identity). It is computed in the smaller of the
    two spaces: over parameters (k'×k') when the rows outnumber them, else over rows (R×R).
    """

    x: np.ndarray  # [R, k'] scaled rows
    residual: np.ndarray  # [R, S] D / ρ
    rho: np.ndarray  # [R] the rows' norms
    exact: tuple[np.ndarray, ...]  # the spec's pre-activation X Wᵀ + b [R, S] (float64) of each row's rows
    weights: np.ndarray  # [S, k] the spec's (float64)
    bias: np.ndarray | None  # [S]
    dtype: np.dtype
    a: np.ndarray  # [R, k'] the filter
    diagonal: np.ndarray  # [k'] G_ii
    testable: np.ndarray  # [k'] the parameter's input is non-zero in some row
    reach: np.ndarray  # [k'] the largest z a change of that parameter alone can give: G_ii / ‖a_i ∘ x̌_i‖
    known_gain: np.ndarray | None = None  # [k', k'] G, where it came for free

    @property
    def rows(self) -> int:
        return len(self.x)

    @cached_property
    def single(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A in float32 for `_scores`: its columns scaled by powers of two (Â = A·s), Â∘Â, and s."""
        scaled, scale = _scaled32(self.a)
        return scaled, scaled * scaled, scale

    def gain(self) -> np.ndarray:
        """G = AᵀX̌ [k', k'], for the slack of the units that need one (R·k'² multiply-adds: made on demand)."""
        if self.known_gain is None:
            self.known_gain = self.a.T @ self.x
        return self.known_gain


def _filter(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, dtype: np.dtype) -> _Filter:
    x, y = _rows(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1), x, y)
    x, y = _rows(_distinct(x), x, y)
    x, y = _rows(~_repeating(x, dtype), x, y)
    with np.errstate(over="ignore", invalid="ignore"):
        products = x @ weights.T
        exact = products if bias is None else products + bias
        residual = y - exact
        # rows whose results the dtype holds (their ulps, for `_floor`, exist), of n and of the sum before the bias
        largest = np.finfo(dtype).max
        ok = np.isfinite(residual).all(axis=1) & (np.abs(exact) <= largest).all(axis=1)
        ok &= (np.abs(products) <= largest).all(axis=1)
    x, residual, exact = _rows(ok, x, residual, exact)
    parts: tuple[np.ndarray, ...] = (exact,)
    ones = 1.0
    if _paired(x):  # rows taken two by two, their differences the rows: inputs' common parts and the bias cancel
        first, second = slice(0, len(x) - 1, 2), slice(1, len(x), 2)
        x, residual, parts, ones = (
            x[first] - x[second],
            residual[first] - residual[second],
            (exact[first], exact[second]),
            0.0,
        )
    if bias is not None:
        x = np.concatenate([x, np.full((len(x), 1), ones)], axis=1)
    rho = np.sqrt(np.einsum("ri,ri->r", x, x))
    kept = rho > 0
    x, residual, rho, *kept_parts = _rows(kept, x, residual, rho, *parts)
    parts = tuple(kept_parts)
    inverse = (1 / rho)[:, None]
    x, residual = x * inverse, residual * inverse
    rows, k = x.shape
    if not rows:
        zero = np.zeros(k)
        return _Filter(x, residual, rho, parts, weights, bias, dtype, x, zero, zero > 0, zero, np.zeros((k, k)))
    a, gain = _weights_filter(x[:, : k - (bias is not None)], 1 / rho)
    if bias is not None:
        common = _common_filter(x[:, :-1], 1 / rho) if ones else np.zeros(rows)
        a = np.concatenate([a, common[:, None]], axis=1)
        if gain is not None:  # the weights' filters are orthogonal to 1/ρ: their column for the bias is 0
            gain = np.concatenate([np.concatenate([gain, np.zeros((len(gain), 1))], axis=1), (common @ x)[None]])
    testable = np.any(x != 0, axis=0)
    seen = a * x
    diagonal = seen.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = diagonal / np.sqrt((seen * seen).sum(axis=0))
    reach = np.where(testable, np.nan_to_num(reach), 0.0)
    return _Filter(x, residual, rho, parts, weights, bias, dtype, a, diagonal, testable, reach, gain)


def _rows(keep: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays' rows that `keep` (a mask, or indices in order) names; the arrays themselves where it names all."""
    if len(keep) == len(arrays[0]) and (keep.dtype != bool or keep.all()):
        return arrays
    return tuple(a[keep] for a in arrays)


def _paired(x: np.ndarray) -> bool:
    """Whether a layer's rows are better tested two by two (a choice made from X alone, so the bound stands).

    A change δ of weight i adds δ·x̌_ri to (scaled) row r, and V counts all of it, the input's common part μ_i
    too, while the filter sees only the rest: reach about √R·σ_i/√(μ_i² + σ_i²), μ_i and σ_i the mean and spread
    of x̌_i over the rows. The difference of two rows has no common part, and its rounding error is that of two
    independent rows, symmetric: reach about √(R/2). So rows are paired when most inputs have |μ_i| > σ_i:
    after a sigmoid (0.5 ± 0.12 deep in a stack), softplus; not after tanh, relu or gelu. Measured on a deep
    softplus layer: reach median 9.3 paired, 8.3 not (x̌'s μ/σ 1.14; on x unscaled, 0.16: the rows of large
    scale dominate it). The bias cancels in a difference: paired layers' biases are not tested.
    """
    squares = np.einsum("ri,ri->r", x, x)
    held = squares > 0
    if np.count_nonzero(held) < 4 or not x.shape[1]:
        return False
    weight = np.zeros(len(x))
    weight[held] = 1 / np.sqrt(squares[held])  # the rows as the filter sees them, x / ‖x‖
    mean = weight @ x / np.count_nonzero(held)
    spread = np.sqrt(np.maximum((weight * weight) @ (x * x) / np.count_nonzero(held) - mean * mean, 0.0))
    return bool(np.median(np.abs(mean) > spread) > 0.5)


def _weights_filter(x: np.ndarray, common: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(A, G = AᵀX̌ where it comes for free, else None) for the weights of rows x [R, k], every column of A
    orthogonal to `common` (the scaled column of ones, 1/ρ): a rounding error shared by every row, or a change of
    the bias, then adds nothing to any weight's test. The instrument Ã = sign(X̌)·√|X̌| and X̌ both have that
    direction removed (X̌ − u uᵀX̌ =: X̃); A = Ã (X̃ᵀÃ + λI)⁻¹ = (ÃX̃ᵀ + λI)⁻¹ Ã, in the smaller space. As
    Ãᵀu = 0, X̃ᵀÃ = X̌ᵀÃ and ÃX̃ᵀ = ÃX̌ᵀ(I − u uᵀ): X̃ itself is never made."""
    u = common / np.linalg.norm(common)
    instrument = np.copysign(np.sqrt(np.abs(x)), x)
    instrument -= np.outer(u, u @ instrument)
    rows, k = x.shape
    # λ: RIDGE times the mean of X̃ᵀÃ's non-zero eigenvalues (at most min(R - 1, k) of them: u is gone)
    ridge = RIDGE * float(np.einsum("ri,ri->", instrument, x)) / max(min(rows - 1, k), 1)
    if not ridge > 0:  # nothing left once the common direction is gone (every row alike): nothing to test
        return np.zeros_like(x), np.zeros((k, k))
    try:
        if rows > k:
            moment = x.T @ instrument
            moment[np.diag_indices(k)] += ridge
            h = np.linalg.inv(moment)
            gain = -ridge * h.T
            gain[np.diag_indices(k)] += 1.0
            return instrument @ h, gain
        moment = instrument @ x.T
        moment -= np.outer(moment @ u, u)
        moment[np.diag_indices(rows)] += ridge
        return np.linalg.solve(moment, instrument), None
    except np.linalg.LinAlgError:  # X̌ᵀÃ has an eigenvalue of exactly −λ: no filter, and no flag
        return np.zeros_like(x), np.zeros((k, k))


def _common_filter(x: np.ndarray, common: np.ndarray) -> np.ndarray:
    """The bias's filter: the part of the column of ones (scaled: 1/ρ) that ridge regression on the weights'
    inputs leaves unexplained, λ(X̌X̌ᵀ + λI)⁻¹ 1̌, a contrast between rows where the inputs cannot tell a bias
    from a weight."""
    rows, k = x.shape
    ridge = COMMON_RIDGE * float(np.einsum("ri,ri->", x, x)) / max(min(rows, k), 1)
    if not ridge > 0:  # no input is ever non-zero: the bias alone moves the unit
        return common
    if rows > k:
        return common - x @ np.linalg.solve(x.T @ x + ridge * np.eye(k), x.T @ common)
    return ridge * np.linalg.solve(x @ x.T + ridge * np.eye(rows), common)


def _floor(f: _Filter, units: np.ndarray) -> np.ndarray:
    """[k', len(units)]: the change of parameter i that moves unit j's rows by OUTPUT_BIAS_ULPS of their results'
    ulps U_rj (least squares: β Σ_r |x_ri| Ǔ_rj / Σ_r x_ri², Ǔ = U / ρ), U_rj an ulp (in the dtype) of the exact
    pre-activation plus one of it less the bias (where the bias is added apart: MatMul, Add). A change below it is
    below the results' own resolution, where a correct runtime's consistent rounding biases live; it is not
    reported, however significant. For a weight, x is its input less its common part (the rows' 1/ρ direction),
    the only part its filter sees: a rounding pattern that follows an input whose values barely vary (all in
    one binade, say) would otherwise read as a large change of its weight.

    A bias is another matter: every filter for it responds to an offset that all rows share, and a correct
    runtime's sums can carry one (measured: 2.4 ulps over 112 inputs of repeated, clamped values). Its floor is what k' roundings can add when each is at most half an ulp of the terms'
    magnitude Σ|w x| + |b| (which bounds every partial sum): so no offset a correct runtime's sum can carry is
    reported, and a bias is reported only where it moves every row by more than rounding could, in total.
    Made only for the units that have a parameter beyond the threshold."""
    ulps = np.zeros((f.rows, len(units)))
    for part in f.exact:  # a paired row's error is that of both its rows
        exact = part[:, units]
        ulps += np.spacing(np.abs(exact).astype(f.dtype))
        ulps += np.spacing(np.abs(exact if f.bias is None else exact - f.bias[units]).astype(f.dtype))
    common = 1 / f.rho
    common /= np.linalg.norm(common)
    seen = f.x - np.outer(common, common @ f.x)
    if f.bias is not None:
        seen[:, -1] = f.x[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = OUTPUT_BIAS_ULPS * (np.abs(seen).T @ (ulps / f.rho[:, None])) / (seen * seen).sum(axis=0)[:, None]
    if f.bias is not None:
        inputs = np.abs(f.x[:, :-1]) * f.rho[:, None]
        magnitude = inputs @ np.abs(f.weights[units]).T + np.abs(f.bias[units])
        most = f.x.shape[1] * np.spacing(magnitude.astype(f.dtype)).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ones = np.abs(f.x[:, -1])
            floor[-1] = OUTPUT_BIAS_ULPS * (ones @ (most / f.rho[:, None])) / (ones @ ones)
    return floor


def _scores(
    f: _Filter, residual: np.ndarray, slack: np.ndarray | None = None, floor: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(z, δ̂) per parameter [k', S] for residual columns [R, S], their slack T = |G| m and floor [k', S].

    z = (|C| − T) / √V with C = Aᵀ Ď and V = (A∘A)ᵀ (Ď∘Ď); δ̂ = C / G_ii; z is 0 where |δ̂| is below the floor.
    Without slack and floor (T = 0, no floor: z at its largest), δ̂ is not made (None).
    """
    a, squares, a_scale = f.single
    d, d_scale = _scaled32(residual)
    # In float32, columns scaled by powers of two (exact) to a largest magnitude in [1/2, 1). Each sum of R terms
    # is then within γ = (R + 8)u of its float64 value relative to the sum of the terms' magnitudes (Higham 3.1;
    # the 8 covers rounding A, Ď, the squares and the products), plus R·2⁻¹²⁵ for underflow. V is taken at its
    # largest and |C| at its smallest within those bounds (Σ|a ď| ≤ √(R·V) by Cauchy-Schwarz), so z is never
    # above its float64 value: half the work of float64, and no false alarm more.
    rows = len(residual)
    gamma = (rows + 8) * 2.0**-24 / (1 - (rows + 8) * 2.0**-24)
    tiny = rows * 2.0**-125
    c = (a.T @ d).astype(np.float64)
    root = np.sqrt((squares.T @ (d * d)).astype(np.float64) + tiny)
    root *= 1 / math.sqrt(1 - gamma)  # √V
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.abs(c)
        z -= gamma * math.sqrt(rows) * root + tiny
        if slack is not None:
            scale = np.outer(a_scale, d_scale)
            z -= slack * scale
        z /= root
    z[np.isnan(z) | ~f.testable[:, None]] = 0.0  # 0 / 0: nothing moved, nothing seen
    if slack is None and floor is None:
        return z, None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = c / np.outer(a_scale, d_scale) / f.diagonal[:, None]
    if floor is not None:
        z[np.abs(delta) <= floor] = 0.0
    return z, delta


def _scaled32(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m·s as float32, s): each column [R, n] scaled by a power of two to a largest magnitude in [1/2, 1)."""
    _, exponent = np.frexp(np.abs(m).max(axis=0, initial=0.0))
    scale = np.ldexp(1.0, -exponent)
    return (m * scale).astype(np.float32), scale


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
            # The slack and the floor only lower z: they are made for the units whose z exceeds t without them.
            slack, floor = np.zeros(spec.shape), np.zeros(spec.shape)
            z, _ = _scores(f, f.residual)
            flagged = np.flatnonzero((z > t).any(axis=0))
            if tolerated_ulps and len(flagged):
                tolerance = np.spacing(np.abs(spec[:, flagged]).astype(graph.dtype)).astype(np.float64)
                slack[:, flagged] = np.abs(f.gain()) @ (tolerated_ulps * tolerance)
                floor[:, flagged] = _floor(f, flagged)
                z[:, flagged], _ = _scores(f, f.residual[:, flagged], slack[:, flagged], floor[:, flagged])
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
