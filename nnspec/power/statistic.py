"""The parameter test's filter and scores (nnspec.power): A from the rows alone, then z per parameter.

The method is in the package docstring (nnspec/power/__init__.py); each constant has its reason here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .rows import distinct, keep, paired, repeating

# A runtime may round a unit's results with a consistent bias, a fraction of an ulp of each result: measured,
# onnxruntime's float32 Gemm on one input came out 0.19 ulp low on average, a MatMul and Add on 7 inputs
# 0.12 ulp low in one unit. Where a unit sums few terms that is most of its error, and over thousands of rows
# it reads as a change of a parameter; so a change is reported only when it moves the rows by more than half
# an ulp of their results (and of the sum before the bias) in the least-squares sense (see `change_floor`).
OUTPUT_BIAS_ULPS = 0.5

# The filter's ridge λ, as a share of the mean eigenvalue of X̌ᵀÃ over its min(R, k') non-zero ones (see
# `Filter`). Towards 0 it is instrumental least squares: no leakage between parameters, but with fewer rows than
# inputs no filter at all; large values approach the matched filter Ã, which lets every one-ulp move of a unit's
# other parameters into each test (its slack T). Measured on 600- and 1024-wide layers with 466 rows
# (benchmarks/bench_power.py's networks): 1 caught x1.00001 of the largest weight in 9 of 11 layers, a tenth in 8,
# the matched filter in 7. It chooses which changes are seen best, never the false-alarm bound.
RIDGE = 1.0

# The bias filter's λ, on the same scale. Smaller than RIDGE: the bias's filter must contrast rows (a plain mean
# over rows takes in the rounding error that nearly equal rows share: clean sigmoid layers reached z = 12 that
# way), and the smaller λ, the more it does. With 1, clean narrow sigmoid layers reached z = 6.7 (no ulp tolerance).
COMMON_RIDGE = 0.1


@dataclass
class Filter:
    """The pooled rows of one group, and the filter built from them alone (never from the residuals).

    Rows are scaled to unit norm (x̌ = x / ρ, with the column of ones for a bias), so that rows of every size
    weigh alike. The filter is A = Ã (X̌ᵀÃ + λI)⁻¹ = (ÃX̌ᵀ + λI)⁻¹ Ã with Ã = sign(X̌)·√|X̌| (elementwise): ridge
    regression with Ã as its instrument, whose column i responds to a change of parameter i and little to the
    others (its gain G = AᵀX̌, in exact arithmetic I − λ(X̌ᵀÃ + λI)⁻ᵀ, is near the identity). It is computed in the smaller of the
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

    @property
    def rows(self) -> int:
        return len(self.x)

    @cached_property
    def single(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A in float32 for `z_scores`: its columns scaled by powers of two (Â = A·s), Â∘Â, and s."""
        scaled, scale = _scaled32(self.a)
        return scaled, scaled * scaled, scale

    @cached_property
    def gain(self) -> np.ndarray:
        """G = AᵀX̌ [k', k'] of the A made (in float64), for the slack of the units that need one (R·k'²
        multiply-adds: made on demand)."""
        return self.a.T.astype(np.float64) @ self.x


def build_filter(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray | None, dtype: np.dtype) -> Filter:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = keep(np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1), x, y)
    x, y = keep(distinct(x), x, y)
    x, y = keep(~repeating(x, dtype), x, y)
    with np.errstate(over="ignore", invalid="ignore"):
        products = x @ weights.T
        # rows whose results the dtype holds (their ulps, for `change_floor`, exist), of n and of the sum before the bias
        largest = np.finfo(dtype).max
        ok = _within(products, largest)
        exact = products
        if bias is not None:
            exact += bias  # in place: the products alone are not needed again
            ok &= _within(exact, largest)
        residual = y - exact  # finite where y is (checked above) and n within the float32 range
        if dtype == np.float64:  # two float64 numbers within the largest may differ by more than it
            ok &= np.isfinite(residual).all(axis=1)
    x, residual, exact = keep(ok, x, residual, exact)
    parts: tuple[np.ndarray, ...] = (exact,)
    ones, owned = 1.0, False  # owned: x is an array made here (not the caller's), to be scaled in place
    if paired(x):  # rows taken two by two, their differences the rows: inputs' common parts and the bias cancel
        first, second = slice(0, len(x) - 1, 2), slice(1, len(x), 2)
        x, residual, parts, ones = (
            x[first] - x[second],
            residual[first] - residual[second],
            (exact[first], exact[second]),
            0.0,
        )
        owned = True
    if bias is not None:
        x, owned = np.concatenate([x, np.full((len(x), 1), ones)], axis=1), True
    rho = np.sqrt(np.einsum("ri,ri->r", x, x))
    kept = rho > 0
    x, residual, rho, *kept_parts = keep(kept, x, residual, rho, *parts)
    parts = tuple(kept_parts)
    inverse = (1 / rho)[:, None]
    x = np.multiply(x, inverse, out=x if owned else None)
    residual = np.multiply(residual, inverse, out=residual)
    rows, k = x.shape
    if not rows:
        zero = np.zeros(k)
        return Filter(x, residual, rho, parts, weights, bias, dtype, x, zero, zero > 0, zero)
    a = _weights_filter(x[:, : k - (bias is not None)], 1 / rho)
    if bias is not None:
        common = _common_filter(x[:, :-1], 1 / rho) if ones else np.zeros(rows)
        a = np.concatenate([a, common[:, None].astype(a.dtype)], axis=1)
    testable = np.any(x != 0, axis=0)
    seen = a * x
    diagonal = seen.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = diagonal / np.sqrt(np.square(seen, out=seen).sum(axis=0))
    reach = np.where(testable, np.nan_to_num(reach), 0.0)
    return Filter(x, residual, rho, parts, weights, bias, dtype, a, diagonal, testable, reach)


def _within(values: np.ndarray, largest: float) -> np.ndarray:
    """Rows [R] whose values are all within ±largest (and not NaN)."""
    return (values.max(axis=1, initial=-np.inf) <= largest) & (values.min(axis=1, initial=np.inf) >= -largest)


def _weights_filter(x: np.ndarray, common: np.ndarray) -> np.ndarray:
    """A (float32) for the weights of rows x [R, k], every column of A
    orthogonal to `common` (the scaled column of ones, 1/ρ): a rounding error shared by every row, or a change of
    the bias, then adds nothing to any weight's test. The instrument Ã = sign(X̌)·√|X̌| and X̌ both have that
    direction removed (X̌ − u uᵀX̌ =: X̃); A = Ã (X̃ᵀÃ + λI)⁻¹ = (ÃX̃ᵀ + λI)⁻¹ Ã, in the smaller space. As
    Ãᵀu = 0, X̃ᵀÃ = X̌ᵀÃ and ÃX̃ᵀ = ÃX̌ᵀ(I − u uᵀ): X̃ itself is never made."""
    # Made in float32 (the products take half the time; measured on relu 256 x 5, the parameter test 66 -> 52 ms):
    # A need not be exact, only made from X alone, and the gain, the diagonal and the scores all use the A made.
    u = (common / np.linalg.norm(common)).astype(np.float32)
    single = x.astype(np.float32)
    instrument = np.abs(single)
    np.sqrt(instrument, out=instrument)
    np.copysign(instrument, single, out=instrument)
    instrument -= np.outer(u, u @ instrument)
    rows, k = x.shape
    # λ: RIDGE times the mean of X̃ᵀÃ's non-zero eigenvalues (at most min(R - 1, k) of them: u is gone)
    ridge = RIDGE * float(np.einsum("ri,ri->", instrument, single, dtype=np.float64)) / max(min(rows - 1, k), 1)
    if not ridge > 0:  # nothing left once the common direction is gone (every row alike): nothing to test
        return np.zeros_like(single)
    try:
        if rows > k:
            moment = (single.T @ instrument).astype(np.float64)
            moment[np.diag_indices(k)] += ridge
            return instrument @ np.linalg.inv(moment).astype(np.float32)
        moment = (instrument @ single.T).astype(np.float64)
        moment -= np.outer(moment @ u, u)
        moment[np.diag_indices(rows)] += ridge
        # the inverse, then one matrix product: 4x faster than a solve with k right-hand sides (594 x 1024: 12 vs
        # 48 ms), and as good here (the ridge keeps the condition number near R)
        return np.linalg.inv(moment).astype(np.float32) @ instrument
    except np.linalg.LinAlgError:  # X̌ᵀÃ has an eigenvalue of exactly −λ: no filter, and no flag
        return np.zeros_like(single)


def _common_filter(x: np.ndarray, common: np.ndarray) -> np.ndarray:
    """The bias's filter: the part of the column of ones (scaled: 1/ρ) that ridge regression on the weights'
    inputs leaves unexplained, λ(X̌X̌ᵀ + λI)⁻¹ 1̌, a contrast between rows where the inputs cannot tell a bias
    from a weight."""
    rows, k = x.shape
    ridge = COMMON_RIDGE * float(np.einsum("ri,ri->", x, x)) / max(min(rows, k), 1)
    if not ridge > 0:  # no input is ever non-zero: the bias alone moves the unit
        return common
    if rows > k:
        single = x.astype(np.float32)
        gram = (single.T @ single).astype(np.float64)
        return common - x @ np.linalg.solve(gram + ridge * np.eye(k), x.T @ common)
    single = x.astype(np.float32)  # as for the weights' filter: made from X alone, it need not be exact
    gram = (single @ single.T).astype(np.float64)
    gram[np.diag_indices(rows)] += ridge
    return ridge * np.linalg.solve(gram, common)


def change_floor(f: Filter, units: np.ndarray) -> np.ndarray:
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


def z_scores(
    f: Filter, residual: np.ndarray, slack: np.ndarray | None = None, floor: np.ndarray | None = None
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
    c = a.T @ d
    root = np.add(squares.T @ np.square(d, out=d), tiny, dtype=np.float64)
    np.sqrt(root, out=root)
    root *= 1 / math.sqrt(1 - gamma)  # √V
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.abs(c, dtype=np.float64)
        z -= tiny
        if slack is not None:
            scale = np.outer(a_scale, d_scale)
            z -= slack * scale
        z /= root
        z -= gamma * math.sqrt(rows)  # (|C| − γ√R·√V − tiny − T) / √V
    unseen = np.isnan(z)  # 0 / 0: nothing moved, nothing seen
    unseen |= ~f.testable[:, None]
    z[unseen] = 0.0
    if slack is None and floor is None:
        return z, None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = c.astype(np.float64) / np.outer(a_scale, d_scale) / f.diagonal[:, None]
    if floor is not None:
        z[np.abs(delta) <= floor] = 0.0
    return z, delta


def _scaled32(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m·s as float32, s): each column [R, n] scaled by a power of two to a largest magnitude in [1/2, 1)."""
    _, exponent = np.frexp(np.maximum(m.max(axis=0, initial=0.0), -m.min(axis=0, initial=0.0)))
    scale = np.ldexp(1.0, -exponent)
    scaled = np.empty(m.shape, dtype=np.float32)
    np.multiply(m, scale, out=scaled, casting="same_kind")  # in float64, rounded once to float32
    return scaled, scale
