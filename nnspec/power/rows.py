"""Which rows the parameter test may use, and whether it takes them two by two (nnspec.power).

Every rule here looks at the rows X alone, never at the residuals, so the test's false-alarm bound stands
whatever they choose.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def distinct(x: np.ndarray) -> np.ndarray:
    """Indices of rows that are not equal, up to sign and a power of two, to an earlier row.

    Such rows give exactly proportional sums in any summation order (scaling by a power of two and negation
    commute with rounding), so their errors are not independent: one of them is kept.
    """
    if not len(x):
        return np.arange(0)
    _, exponents = np.frexp(np.maximum(x.max(axis=1), -x.min(axis=1)))  # the largest |x| of each row
    # Rows equal up to sign and a power of two give equal fingerprints: each row's sum of products with one probe
    # (the same arithmetic, elementwise then a row sum, on numbers that differ by that factor, which commutes with
    # rounding), scaled back by the same power of two, without its sign. Rows whose fingerprints are equal are then
    # compared in full, so a collision costs time, never a row.
    probe = _probe(x.shape[1])
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


# `repeating` compares each input's values with the ones it holds twice when no input holds more than this many
# (one pass over the rows per value); else it goes through an argsort (measured: 594 x 1024 rows, 3.8 ms).
FEW_VALUES = 8


def repeating(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
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
    same = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != 0)
    first = same.copy()  # where a run of equal non-zero values begins: one entry per value an input holds twice
    first[:, 1:] &= ~same[:, :-1]
    counts = np.count_nonzero(first, axis=1)
    most = int(counts.max(initial=0))
    if not most:
        return np.zeros(len(x), dtype=bool)
    if most <= FEW_VALUES:  # each input holds few values twice (clamps, steps): compare with those alone
        inputs, at = np.nonzero(first)
        held = np.full((len(columns), most), np.nan, dtype=columns.dtype)  # NaN equals nothing
        held[inputs, np.arange(len(inputs)) - np.repeat(np.cumsum(counts) - counts, counts)] = ordered[inputs, at]
        repeated = columns == held[:, :1]
        for j in range(1, most):
            repeated |= columns == held[:, j : j + 1]
    else:  # many: mark them in sorted order and put the marks back in the rows' order
        order = np.argsort(columns, axis=1)
        ordered = np.take_along_axis(columns, order, axis=1)
        same = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != 0)
        marked = np.zeros(ordered.shape, dtype=bool)
        marked[:, 1:] |= same
        marked[:, :-1] |= same
        repeated = np.zeros(ordered.shape, dtype=bool)
        np.put_along_axis(repeated, order, marked, axis=1)
    return 2 * np.count_nonzero(repeated, axis=0) >= np.maximum(np.count_nonzero(x, axis=1), 1)


@lru_cache(maxsize=16)
def _probe(width: int) -> np.ndarray:
    """`distinct`'s probe for rows of `width` inputs: fixed numbers in [0, 1), made once per width."""
    probe = np.random.default_rng(0).random(width)
    probe.flags.writeable = False
    return probe


def keep(keep: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays' rows that `keep` (a mask, or indices in order) names; the arrays themselves where it names all."""
    if len(keep) == len(arrays[0]) and (keep.dtype != bool or keep.all()):
        return arrays
    return tuple(a[keep] for a in arrays)


def paired(x: np.ndarray) -> bool:
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
