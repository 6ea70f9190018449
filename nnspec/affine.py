"""Error bounds as affine forms: every value's error is a sum of rounding sources mapped through
signed Jacobians, so that errors which cancel in the network also cancel in the bound.

A value v computed in floating point differs from the exact v* by  v - v* = sum_s J_s d_s  (to first
order), where each source s is a vector of rounding errors committed at some earlier step with
|d_s| <= e_s elementwise, and J_s is the Jacobian from that step to v. Hence

    |v - v*| <= sum_s |J_s| e_s      (elementwise; |J| the entrywise absolute value).

Carrying the signed J_s keeps the cancellation that a plain interval bound (|W| e at every layer)
throws away; that bound grows like the product of the layers' absolute weight sums, this one like
the norms of the actual linear maps. This is affine arithmetic (Stolfi and de Figueiredo, 1997)
with one noise symbol per rounding. When the Jacobians would outgrow a memory budget, the oldest
sources are condensed into a single elementwise source (|J_s| e_s): always sound, only less tight.

Nonlinearities enter through f'(n) at the oracle's value; what the linearization misses is bounded
and added as a new source: the jump of f' at a kink within the error bound, and |f''| bound / 2
times the bound squared elsewhere.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from .activations import Activation, Precision

# Jacobian entries kept per value before the oldest sources are condensed: 2^24 float64 = 128 MiB.
JACOBIAN_BUDGET = 1 << 24
_BUDGET: ContextVar[int] = ContextVar("jacobian_budget", default=JACOBIAN_BUDGET)


@contextmanager
def jacobian_budget(entries: int) -> Iterator[None]:
    """Within this block, Jacobians beyond `entries` per value are folded (0: every per-row Jacobian is)."""
    token = _BUDGET.set(entries)
    try:
        yield
    finally:
        _BUDGET.reset(token)


@dataclass
class Source:
    """Rounding errors e (shape [rows, d_s]) reaching a value through J.

    J is None (identity), a [d, d_s] matrix shared by all rows, a [rows, d] diagonal, or a full
    [rows, d, d_s] stack.
    """

    e: np.ndarray
    J: np.ndarray | None = None
    diagonal: bool = False
    loose: bool = False  # folded for memory somewhere: its cancellation after that point is lost

    @property
    def size(self) -> int:
        return 0 if self.J is None else int(self.J.size)

    def contribution(self) -> np.ndarray:
        """|J| e: this source's share of the bound, shape [rows, d]."""
        if self.J is None:
            return self.e
        if self.diagonal:
            return np.abs(self.J) * self.e
        if self.J.ndim == 2:  # shared by the rows: a weight matrix (its |W| is the one `linear` made) or a product
            return self.e @ _magnitudes(self.J, keep=False).T
        return np.matmul(np.abs(self.J), self.e[:, :, None])[:, :, 0]  # batched BLAS, not einsum

    @property
    def inputs(self) -> int:
        """d_s, the number of rounding errors in this source."""
        return self.e.shape[-1]

    def folded(self) -> Source:
        """The same bound as an elementwise source: |J| e, with the Jacobian dropped."""
        return Source(self.contribution(), loose=True)

    def matmul(self, w: np.ndarray) -> Source:
        """Through y = x W^T (w: [units, d])."""
        rows, units = self.e.shape[0], w.shape[0]
        if self.J is not None and (self.diagonal or self.J.ndim == 3) and rows * units * self.inputs > _BUDGET.get():
            return self.folded().matmul(w)  # the product would not fit: keep the bound, drop the cancellation
        if self.J is None:
            return Source(self.e, w, loose=self.loose)
        if self.diagonal:
            return Source(self.e, w[None, :, :] * self.J[:, None, :], loose=self.loose)
        if self.J.ndim == 2:
            return Source(self.e, w @ self.J, loose=self.loose)
        return Source(self.e, np.matmul(w, self.J), loose=self.loose)  # broadcast over rows: batched BLAS

    def scale_rows(self, d: np.ndarray) -> Source:
        """Through y = d * x elementwise (d: [rows, d])."""
        if self.J is not None and not self.diagonal and d.size * self.inputs > _BUDGET.get():
            return self.folded().scale_rows(d)
        if self.J is None:
            return Source(self.e, d, diagonal=True, loose=self.loose)
        if self.diagonal:
            return Source(self.e, d * self.J, diagonal=True, loose=self.loose)
        if self.J.ndim == 2:
            return Source(self.e, d[:, :, None] * self.J[None, :, :], loose=self.loose)
        return Source(self.e, d[:, :, None] * self.J, loose=self.loose)

    def row_jacobian(self, m: np.ndarray) -> Source:
        """Through y_r = M_r x_r (m: [rows, d, d], one matrix per row)."""
        if self.J is not None and m.shape[0] * m.shape[1] * self.inputs > _BUDGET.get():
            return self.folded().row_jacobian(m)
        if self.J is None:
            return Source(self.e, m, loose=self.loose)
        if self.diagonal:
            return Source(self.e, m * self.J[:, None, :], loose=self.loose)
        if self.J.ndim == 2:
            return Source(self.e, m @ self.J, loose=self.loose)
        return Source(self.e, m @ self.J, loose=self.loose)


@dataclass
class Affine:
    """A value (float64, the oracle) and the sources of its error; arrays are [rows, d]."""

    value: np.ndarray
    sources: list[Source] = field(default_factory=list)
    ambiguous: np.ndarray | None = None  # step outputs where either side is correct
    # For the output of a sum of products (dense, conv): the magnitude of its terms, sum |w| (|x| + e) + |b|.
    # A layer that a runtime may fold into that sum (batch norm into the conv before it) needs it: folding
    # rounds the products' weights, an error relative to the terms, not to the (cancelling) sum.
    terms: np.ndarray | None = None

    @property
    def loose(self) -> bool:
        """True when some of this value's error was folded into an elementwise bound for memory."""
        return any(s.loose for s in self.sources)

    def bound(self) -> np.ndarray:
        total = np.zeros_like(self.value)
        for source in self.sources:
            total += source.contribution()
        # An infinite error through a zero slope (0 x inf) is NaN: no bound, not a small one.
        return np.where(np.isnan(total), np.inf, total)

    def condensed(self, budget: int | None = None) -> Affine:
        """The same bound with the oldest sources folded into one elementwise source, within budget."""
        budget = _BUDGET.get() if budget is None else budget
        sources = list(self.sources)
        if sum(s.size for s in sources) <= budget:
            return self
        folded, lossy = np.zeros_like(self.value), False
        while sources and sum(s.size for s in sources) > budget:
            oldest = sources.pop(0)
            folded += oldest.contribution()
            lossy |= oldest.loose or oldest.J is not None
        return Affine(self.value, [Source(folded, loose=lossy), *sources], self.ambiguous, self.terms)


def exact(value: np.ndarray) -> Affine:
    """A value known exactly (a network input: both sides see the same numbers)."""
    return Affine(np.asarray(value, dtype=np.float64))


def linear(x: Affine, w: np.ndarray, b: np.ndarray | None, p: Precision) -> Affine:
    """n = x W^T + b in floating point.

    Its own rounding: a sum of k rounded terms is within gamma_k = k u / (1 - k u) of exact,
    relative to the sum of the terms' magnitudes, whatever the order of summation and with or
    without fused multiply-adds (Higham, Accuracy and Stability of Numerical Algorithms, 3.1).
    The smallest subnormal per term covers underflow.
    """
    k = w.shape[1] + (b is not None)
    gamma = k * p.u / (1 - k * p.u)
    abs_w_t = _magnitudes(w).T
    magnitude = (np.abs(x.value) + x.bound()) @ abs_w_t
    n = x.value @ w.T
    if b is not None:
        magnitude += np.abs(b)
        n += b
    own = _overflowing(gamma * magnitude + k * p.tiny * (magnitude > 0), magnitude, gamma, p)
    return Affine(n, [*(s.matmul(w) for s in x.sources), Source(own)], terms=magnitude).condensed()


_MAGNITUDES: dict[int, tuple[weakref.ref[np.ndarray], np.ndarray]] = {}
_MAGNITUDES_KEPT = 64  # weight matrices whose |W| is remembered: a check bounds every layer on every batch


def _magnitudes(w: np.ndarray, keep: bool = True) -> np.ndarray:
    """|w|, remembered (with `keep`) while the same array lives: an entry goes with its array, so a layer's
    float64 weights made for one pass (nnspec.ir.Graph.wide_node) take their |W| with them."""
    kept = _MAGNITUDES.get(id(w))
    if kept is not None and kept[0]() is w:
        return kept[1]
    magnitudes = np.abs(w)
    if keep:
        if len(_MAGNITUDES) >= _MAGNITUDES_KEPT:
            _MAGNITUDES.pop(next(iter(_MAGNITUDES)))
        key = id(w)
        _MAGNITUDES[key] = (weakref.ref(w, lambda ref: _forget(key, ref)), magnitudes)
    return magnitudes


def _forget(key: int, ref: weakref.ref[np.ndarray]) -> None:
    """Drop the |W| of an array that is gone (unless its id already names a newer array's)."""
    kept = _MAGNITUDES.get(key)
    if kept is not None and kept[0] is ref:
        del _MAGNITUDES[key]


def _overflowing(own: np.ndarray, magnitude: np.ndarray, gamma: float, p: Precision) -> np.ndarray:
    """A sum's own error, infinite where its terms or partial sums may overflow: a correct implementation
    may then return inf or NaN (inf - inf), whatever the exact sum."""
    return np.where(magnitude * (1 + gamma) >= p.max, np.inf, own)


def _stored_parameters(act: Activation, n: np.ndarray, a: np.ndarray, p: Precision) -> np.ndarray | float:
    """|f(n; parameters as stored) - f(n; parameters as written)|, at the oracle's n.

    Both sides compute with the activation's parameters rounded to the network's dtype (ONNX float
    attributes are float32; NumPy casts a Python float to the array's dtype), the oracle with the
    spec's numbers: leaky_relu's default alpha = 0.01 is 0.0099999998 in float32, one more rounding
    of the result that the function's own ulps do not include. Zero in float64, where they are exact.
    """
    stored = {k: float(p.dtype.type(v)) if isinstance(v, float) else v for k, v in act.params.items()}
    if stored == dict(act.params):
        return 0.0
    moved = np.abs(Activation(act.type, stored)(n) - a)
    return np.where(np.isnan(moved), 0.0, moved)  # inf - inf: the value itself is inf either way


def activate(n: Affine, act: Activation, p: Precision) -> Affine:
    """a = f(n), carrying n's sources through f and adding f's own error and what f' misses."""
    model = act.type.error
    params = dict(act.params)
    a = act(n.value)
    e_n = n.bound()
    # NOTE: "+ tiny": below the smallest normal number one ulp is the subnormal spacing, not u |a|,
    # so a result that underflows (sigmoid(-95) in float32) is off by up to that much per ulp.
    own = model.ulps * (p.u * (np.abs(a) + model.floor(**params) + model.per_n * np.abs(n.value)) + p.tiny)
    # NOTE: a row function's (softmax's) second-order term depends on the whole row's error, not
    # the element's own: a step that flips one input of a log_softmax moves every output of the row.
    spread = e_n if model.kind in ("elementwise", "step") else e_n.max(axis=-1, keepdims=True)
    remainder = 0.5 * model.curvature(**params) * spread**2 + _stored_parameters(act, n.value, a, p)
    if model.kind == "step":
        ambiguous = (np.abs(n.value) <= e_n) & (e_n > 0)  # an exactly known input is never ambiguous
        return Affine(a, [Source(np.where(ambiguous, model.jump, 0.0))], ambiguous)
    if model.kind == "elementwise":
        assert model.derivative is not None
        slope = model.derivative(n.value, **params)
        for position, jump in model.kinks(**params):
            remainder = remainder + np.where(np.abs(n.value - position) <= e_n, jump * e_n, 0.0)
        carried = [s.scale_rows(slope) for s in n.sources]
    else:
        k = n.value.shape[-1]
        s = np.exp(n.value - n.value.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        if model.kind == "softmax":
            jac = s[:, :, None] * (np.eye(k)[None] - s[:, None, :])  # diag(s) - s s^T
            # a_i = e_i / sum_j e_j, e_j = exp(d_j), d_j = n_j - max n. Rounding d_j costs u |d_j| in
            # the argument, which exp turns into a relative error of that size (70 u for d = -70, far
            # above exp's own ulps). The sum's terms carry (ulps + |d_j|) u each, and |d_j| e_j <= 1/e,
            # so the sum is within (ulps + k / e) u + gamma_{k-1} of exact (it is >= 1); with the
            # division, a_i is within (2 ulps + |d_i| + k (1 + 1/e) + 1) u, and underflow adds tiny's.
            d = np.abs(n.value - n.value.max(axis=-1, keepdims=True))
            relative = 2 * model.ulps + d + k * (1 + 1 / math.e) + 1
            own = relative * p.u * np.abs(a) + (k + 2) * p.tiny
        else:
            jac = np.eye(k)[None] - s[:, None, :]  # I - 1 s^T
            own = model.ulps * p.u * (np.abs(a) + np.abs(n.value).max(axis=-1, keepdims=True) + k)
        carried = [src.row_jacobian(jac) for src in n.sources]
    return Affine(a, [*carried, Source(own + remainder)]).condensed()


# --- layers whose maps mix more than the last axis (convolutions, pools, norms, reshapes) -------------
#
# Forms are [rows, last axis] everywhere, which suits dense layers (their map acts on the last axis). A map
# over other axes would need Jacobians over the whole per-sample value (a convolution over a [16, 32, 32]
# value: 2^28 entries per row), so such layers fold their input's sources into one elementwise bound and
# start their output from one elementwise source: always sound, without cancellation across the layer.
# The layer-by-layer check keeps them sharp: each is checked from the exact values the model fed it.


def unfold(x: Affine, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """x's value and error bound as [N, *shape] arrays (its Jacobians folded: sound, without cancellation)."""
    return x.value.reshape((-1, *shape)), x.bound().reshape((-1, *shape))


def elementwise(value: np.ndarray, error: np.ndarray, terms: np.ndarray | None = None) -> Affine:
    """An affine form of [N, *shape] arrays: the value, and its error bound as one elementwise source."""
    last = value.shape[-1] if value.ndim > 1 else 1
    flat = (lambda a: a.reshape(-1, last)) if value.ndim > 1 else (lambda a: a.reshape(-1, 1))
    return Affine(flat(value), [Source(flat(error))], terms=None if terms is None else flat(terms))


def sum_of_products(
    x: np.ndarray,
    e: np.ndarray,
    apply: Callable[[np.ndarray, bool], np.ndarray],
    k: int,
    bias: np.ndarray | None,
    p: Precision,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y = A(x) + b, each output a sum of k rounded terms (k counts the bias), for a linear map A.

    `apply(a, absolute)` applies A to a, or |A| (the map with its weights' magnitudes) when `absolute`.
    Returns the value, its error bound and the terms' magnitude: the input's error through |A|, plus
    gamma_k times the terms' magnitude |A|(|x| + e) + |b| (Higham 3.1, any summation order, with or
    without fused multiply-adds), plus k smallest subnormals where anything is summed (underflow).
    """
    gamma = k * p.u / (1 - k * p.u)
    value = apply(x, False)
    carried = apply(e, True)
    magnitude = apply(np.abs(x) + e, True)
    if bias is not None:
        value = value + bias
        magnitude = magnitude + np.abs(bias)
    own = _overflowing(gamma * magnitude + k * p.tiny * (magnitude > 0), magnitude, gamma, p)
    return value, carried + own, magnitude
