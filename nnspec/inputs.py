"""The input side of the cross-check: seeded batches that reach every activation's regions, and repeat runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import NNSpecError
from .feeds import check_feeds, id_ranges
from .ir import Graph, TensorInfo
from .limits import Limits
from .weights import _normal, _uniform01

# Default batch sizes: 1 (the edge case runtimes special-case), an odd size (catches code that assumes
# even or vector-aligned batches), and 64 (a typical serving batch, large enough to take blocked paths).
DEFAULT_BATCH_SIZES = (1, 7, 64)
# Row i of a random batch is N(0, 1) times ROW_SCALES[i % 4]. At 2, sigmoid and tanh are neither linear
# nor flat and relu-like functions see both signs; 0.1 stays in their near-linear middle; 8 and 30
# saturate them (tanh(8) = 1 - 2e-7; at 30 sigmoid rounds to 1 in float32, tanh in float64 too) and
# spread softmax inputs far apart. Row 0 is at 2, so a batch of one is the typical case.
ROW_SCALES = (2.0, 0.1, 8.0, 30.0)
# The edge batch: rows of 0 (exactly on hardlim's step wherever a step reads an input, and wherever a
# bias-free layer reads one), +-1, +-1e3 (where a naive exp overflows even in float64), then rows that
# cycle through all five, so every position sees every value.
EDGE_VALUES = (0.0, 1.0, -1.0, 1e3, -1e3)
EDGE_LABEL = "edges: 0, +-1, +-1e3"
# An integer input (ids) read by no layer has no table to draw from: small ids, which any dtype holds.
UNREAD_IDS = 10


@dataclass(frozen=True)
class Case:
    """One batch of inputs, with a label that says where it came from."""

    label: str
    feeds: dict[str, np.ndarray]
    edges: bool = False  # the edge batch (0, ±1, ±1e3 by design): for the bounds, not for the parameter test


def random_cases(
    graph: Graph,
    seed: int = 0,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    edges: bool = True,
    single: bool = False,
    part: int = 0,
) -> list[Case]:
    """Seeded batches `[batch, *shape]` for every input: one per batch size, then the edges.

    Float inputs hold N(0, 1) numbers in the graph's dtype, scaled by row; integer inputs (ids) hold ids
    drawn uniformly from [0, input_dim) of the layers that read them (the smallest, if several do).

    The numbers come from PCG64's raw stream (see `nnspec.weights._normal`), so a seed means the same
    arrays under every NumPy release. With `single`, the normal numbers are made in float32 arithmetic
    (`_normal(..., np.float32)`, 5x faster) from the same stream: for the parameter test's extra rows, which no report
    shows. `part` > 0 draws other batches of the same sizes, each part from streams of its own (the parameter
    test's spare rows). Batches are capped so that the graph's largest per-sample value
    times the batch fits `NNSPEC_MAX_BATCH_BYTES`; sizes that the cap makes equal are run once.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise NNSpecError(f"expected an integer seed in [0, 2**63) for the random inputs, found {seed!r}")
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise NNSpecError(f"expected batch sizes of at least 1, found {list(batch_sizes)}")
    largest = max_batch(graph)
    cases = []
    for batch in dict.fromkeys(min(b, largest) for b in batch_sizes):
        scales = np.resize(np.array(ROW_SCALES), batch)
        feeds = {}
        for j, info in enumerate(graph.inputs):
            count = batch * math.prod(info.shape)
            if _is_integer(info):  # ids drawn uniformly from the valid ones, by the same raw stream
                ids = np.floor(_uniform01(_stream(seed, batch, j, part), count) * _id_count(graph, info))
                ids = ids.astype(np.int64)
                feeds[info.name] = ids.reshape(batch, *info.shape).astype(info.dtype)
                continue
            rows = _normal(_stream(seed, batch, j, part), count, np.float32 if single else np.float64)
            rows = rows.reshape(batch, -1) * scales[:, None]
            feeds[info.name] = rows.reshape(batch, *info.shape).astype(graph.dtype)
        low, high = scales.min(), scales.max()
        spread = f"scale {low:g}" if low == high else f"scales {low:g}..{high:g}"
        cases.append(Case(f"batch {batch}, {spread}", feeds))
    if edges:
        cases.append(edge_case(graph, largest))
    return cases


def _stream(seed: int, batch: int, input_index: int, part: int = 0) -> int:
    """One PCG64 seed per (seed, batch size, input, part), never one a weight initializer uses (below 2**63).

    Keyed by the batch size, not its position, so "batch 7" holds the same numbers whatever other
    sizes are asked for. A batch is below 2**32 samples: the memory cap allows at most 2**28; a spec has
    fewer than 2**24 inputs and a check draws fewer than 2**8 parts (part 0: the seeds as before parts).
    """
    return (1 << 127) | (seed << 64) | (batch << 32) | (part << 24) | input_index


def edge_case(graph: Graph, largest: int | None = None) -> Case:
    """Rows of 0, 1, -1, 1e3, -1e3 for every float input, then rows cycling through them, shifted one per row.

    Integer inputs (ids) take the same pattern over 0, the last id, 1, the last but one and the middle one
    of the layers' range, so that both ends of every table are read. Ten rows, or the first `largest`
    (default: what `NNSPEC_MAX_BATCH_BYTES` allows) if fewer.
    """
    n = len(EDGE_VALUES)
    batch = min(2 * n, max_batch(graph) if largest is None else largest)
    feeds, labels = {}, []
    for info in graph.inputs:
        if _is_integer(info):
            last = _id_count(graph, info) - 1
            values = np.array([0, last, min(1, last), max(last - 1, 0), last // 2], dtype=np.int64)
            labels.append(f"ids {', '.join(map(str, values))} of {info.name!r}")
        else:
            values = np.array(EDGE_VALUES)
        width = math.prod(info.shape)
        constant = np.repeat(values[:, None], width, axis=1)
        cycling = values[(np.arange(n)[:, None] + np.arange(width)[None, :]) % n]
        rows = np.concatenate([constant, cycling])[:batch]
        feeds[info.name] = rows.reshape(batch, *info.shape).astype(info.dtype or graph.dtype)
    if len(labels) < len(graph.inputs):
        labels.insert(0, EDGE_LABEL.removeprefix("edges: "))
    label = "edges: " + "; ".join(labels)
    if batch < 2 * n:
        label += f" (first {batch} of {2 * n} rows: memory limit)"
    return Case(label, feeds, edges=True)


def _is_integer(info: TensorInfo) -> bool:
    return info.dtype is not None and info.dtype.startswith("int")


def _id_count(graph: Graph, info: TensorInfo) -> int:
    """How many ids an integer input may hold, from 0: the smallest table that reads it."""
    valid = id_ranges(graph).get(info.name)
    return valid.size if valid is not None else UNREAD_IDS


def max_batch(graph: Graph, limits: Limits | None = None) -> int:
    """The largest batch whose largest per-sample value fits `NNSPEC_MAX_BATCH_BYTES` (at least 1)."""
    per_sample, _ = graph.largest_value
    return max(1, (limits or Limits.from_env()).max_batch_bytes // per_sample)


def random_origin(seed: int, graph: Graph | None = None) -> str:
    """Where `random_cases` numbers come from, for a report's `inputs` line."""
    scales = "/".join(f"{s:g}" for s in sorted(ROW_SCALES))
    ids = [i.name for i in graph.inputs if i.dtype] if graph is not None else []
    return (
        f"seeded random, N(0, 1) x {scales} by row, seed {seed}; edge values {', '.join(f'{v:g}' for v in EDGE_VALUES)}"
        + (f"; ids of {', '.join(map(repr, ids))} uniform over each table, both ends in the edge batch" if ids else "")
    )


def given_cases(graph: Graph, feeds: Mapping[str, object], label: str = "given inputs") -> list[Case]:
    """The user's arrays as one case, checked and cast to the graph's dtype (InputDataError otherwise)."""
    return [Case(label, check_feeds(graph, feeds))]


def non_finite_notes(feeds: Mapping[str, np.ndarray]) -> list[str]:
    """A note per input that holds NaN or infinity: outputs they reach compare as NaN == NaN, checking nothing."""
    notes = []
    for name, array in feeds.items():
        bad = ~np.isfinite(array)
        if bad.any():
            first = [int(i) for i in np.argwhere(bad)[0]]
            notes.append(
                f"input {name!r} holds {int(bad.sum())} non-finite value(s) (NaN or infinity; the first, "
                f"{array[tuple(first)]}, at {first}): outputs they reach are NaN or infinite on both sides, where "
                "agreement checks nothing"
            )
    return notes


RunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def repeat_differs(
    run: RunFn, feeds: Mapping[str, np.ndarray], first: Mapping[str, np.ndarray] | None = None
) -> list[str]:
    """Names of the outputs whose two runs on the same `feeds` are not bitwise identical.

    NaN equals NaN whatever its payload; anything else must match bit for bit, so 0.0 against -0.0
    (a reduction summed in another order) counts. An output that only one run returns differs.
    `first`, the results of a run already made on these feeds, saves running a third time.
    """
    # NOTE: the first results are copied: a runner that hands back a reused buffer would otherwise
    # compare its second result with itself.
    first = {name: np.array(value, copy=True) for name, value in (run(feeds) if first is None else first).items()}
    second = dict(run(feeds))
    return [name for name in dict.fromkeys([*first, *second]) if not _same_bits(first.get(name), second.get(name))]


def _same_bits(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return False
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f" or a.dtype.itemsize not in (2, 4, 8):
        return a.tobytes() == b.tobytes()
    bits = np.dtype(f"u{a.dtype.itemsize}")
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.array_equal(np.where(both_nan, 0, a.view(bits)), np.where(both_nan, 0, b.view(bits))))
