"""Checking user arrays against a graph's inputs: names, shapes, dtypes and ids, with clear errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import InputDataError, suggest
from .ir import Graph, TensorInfo
from .limits import Limits, human_bytes


def as_feeds(infos: tuple[TensorInfo, ...], given: object) -> Mapping[str, object]:
    """Arrays keyed by input name, from a mapping, or from one array for a single-input model."""
    if isinstance(given, Mapping):
        return given
    names = ", ".join(i.name for i in infos)
    if isinstance(given, np.ndarray | list | tuple) or np.isscalar(given):
        if len(infos) == 1:
            return {infos[0].name: given}
        raise InputDataError(
            f"expected arrays keyed by input name (this model has {len(infos)} inputs: {names}), "
            f"found one {type(given).__name__}"
        )
    raise InputDataError(
        f"expected arrays keyed by input name ({names})"
        + (" or one array" if len(infos) == 1 else "")
        + f", found {type(given).__name__}"
    )


def check_arrays(infos: tuple[TensorInfo, ...], given: Mapping[str, object] | object) -> dict[str, np.ndarray]:
    """The arrays keyed by input name (or one array, for a single-input model), each `[N, *shape]` with
    one N and real numbers; not yet cast."""
    feeds = as_feeds(infos, given)
    expected = [i.name for i in infos]
    for info in infos:
        if info.name not in feeds:
            given = ", ".join(map(repr, feeds)) or "nothing"
            strays = [key for key in feeds if key not in expected]
            hint = suggest(strays[0], [info.name]) if len(strays) == 1 else ""
            raise InputDataError(
                f"expected an array for input {info.name!r} (shape {['N', *info.shape]}), found none; "
                f"given: {given}{hint}"
            )
    for key in feeds:
        if key not in expected:
            raise InputDataError(
                f"expected arrays for the model's inputs only ({', '.join(expected)}), found also {key!r}"
            )
    out: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for info in infos:
        array = np.asarray(feeds[info.name])
        if array.dtype.kind not in "iuf":
            found = "Python objects" if array.dtype.hasobject else f"dtype {array.dtype}"
            raise InputDataError(f"input {info.name!r}: expected real numbers (int or float), found {found}")
        want = ["N", *info.shape]
        if array.ndim != len(want) or tuple(array.shape[1:]) != info.shape:
            extra = " (the batch dimension N comes first)" if tuple(array.shape) == info.shape else ""
            raise InputDataError(f"input {info.name!r}: expected shape {want}, found {list(array.shape)}{extra}")
        if array.shape[0] < 1:
            raise InputDataError(f"input {info.name!r}: expected at least one sample, found an empty batch")
        if batch is not None and array.shape[0] != batch[1]:
            raise InputDataError(
                f"input {info.name!r}: expected {batch[1]} samples, as {batch[0]!r} has, found {array.shape[0]}"
            )
        batch = (info.name, array.shape[0])
        out[info.name] = array
    return out


def check_feeds(
    graph: Graph | tuple[TensorInfo, ...], feeds: Mapping[str, object] | object, dtype: np.dtype | None = None
) -> dict[str, np.ndarray]:
    """Arrays keyed by input name, each `[N, *shape]` with one N, each cast to its input's dtype.

    Float inputs: integers and floats of any width are accepted and cast to the network's dtype.
    Integer inputs (ids): integers of any width, and floats that are whole numbers (JSON and CSV files
    hold floats), are cast to the input's int64 or int32; a fraction, NaN or infinity is refused, and so
    is an id outside [0, input_dim) of a layer that reads it (with the graph known). Anything else
    (objects, strings, booleans, complex numbers) is refused.
    """
    if isinstance(graph, Graph):
        return FeedCheck(graph)(feeds)
    return _cast(graph, check_arrays(graph, feeds), np.dtype(dtype), {})


class FeedCheck:
    """`check_feeds` for one graph, with what depends only on the graph worked out once: its inputs, the ids
    each integer input may hold, the widest value per sample, and the batch memory limit, which is read
    (`NNSPEC_MAX_BATCH_BYTES`) when the check is built, not per call. Called with feeds, it returns them
    checked and cast, as `check_feeds` does."""

    def __init__(self, graph: Graph, limits: Limits | None = None) -> None:
        self.infos = graph.inputs
        self.dtype = graph.dtype
        self.ranges = id_ranges(graph)
        self.per_sample, self.widest = graph.largest_value
        self.limit = (limits or Limits.from_env()).max_batch_bytes
        # One float input: an ndarray already of its dtype, shape and layout is used as it is, no copy, as
        # the general path would use it; that path's one value check (finite numbers that overflow in the
        # cast) cannot fail without a cast, so what is left per call is a few comparisons.
        first = self.infos[0] if len(self.infos) == 1 else None
        self._fast_name = first.name if first is not None and not _is_integer(first) else None
        self._fast_shape = first.shape if first is not None else ()

    def __call__(self, feeds: Mapping[str, object] | object) -> dict[str, np.ndarray]:
        name = self._fast_name
        if name is not None:
            array = feeds.get(name) if type(feeds) is dict and len(feeds) == 1 else feeds
            if (
                type(array) is np.ndarray
                and array.dtype == self.dtype
                and array.ndim == len(self._fast_shape) + 1
                and array.shape[1:] == self._fast_shape
                and 0 < array.shape[0] * self.per_sample <= self.limit
                and array.flags.c_contiguous
            ):
                return {name: array}
        out = _cast(self.infos, check_arrays(self.infos, feeds), self.dtype, self.ranges)
        if out:
            self.check_batch(next(iter(out.values())).shape[0])
        return out

    def check_batch(self, batch: int) -> None:
        """Refuse a batch whose largest intermediate value would exceed the batch memory limit."""
        if batch * self.per_sample > self.limit:
            raise InputDataError(
                f"expected a batch whose values fit in {human_bytes(self.limit)} (NNSPEC_MAX_BATCH_BYTES), found "
                f"{batch} samples, which need {human_bytes(batch * self.per_sample)} for {self.widest!r} alone; "
                "split the batch"
            )


def _is_integer(info: TensorInfo) -> bool:
    return info.dtype is not None and info.dtype.startswith("int")


def _cast(
    infos: tuple[TensorInfo, ...], arrays: dict[str, np.ndarray], dtype: np.dtype, ranges: Mapping[str, IdRange]
) -> dict[str, np.ndarray]:
    """Checked arrays (from `check_arrays`) cast to their inputs' dtypes: ids checked, floats checked to fit."""
    kinds = {info.name: info for info in infos}
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        info = kinds[name]
        if _is_integer(info):
            out[name] = _as_ids(info, array, ranges.get(name))
            continue
        with np.errstate(over="ignore"):  # an overflow becomes inf, reported below
            cast = np.ascontiguousarray(array, dtype=dtype)
        recast = cast.dtype != array.dtype  # only a cast can make inf of a finite number: without one, skip the scan
        if recast and not np.isfinite(cast).all() and (too_large := np.isinf(cast) & np.isfinite(array)).any():
            where = [int(i) for i in np.argwhere(too_large)[0]]
            raise InputDataError(
                f"input {name!r}: expected values that fit in {dtype.name}, found {array[tuple(where)]} at index {where}"
            )
        out[name] = cast
    return out


@dataclass(frozen=True)
class IdRange:
    """The ids an integer input may hold: [0, size), the smallest `input_dim` of the layers that read it."""

    size: int
    layer: str
    index: int  # the layer's position in the spec's `layers`


def id_ranges(graph: Graph) -> dict[str, IdRange]:
    """For each integer input that layers read, the valid ids: an id valid for the smallest table is valid for all."""
    integer = {i.name for i in graph.inputs if _is_integer(i)}
    ranges: dict[str, IdRange] = {}
    for node in graph.nodes:
        size = node.attrs.get("input_dim")
        for name in node.inputs:
            if name in integer and size is not None and (name not in ranges or size < ranges[name].size):
                ranges[name] = IdRange(int(size), node.name, node.index)
    return ranges


def _as_ids(info: TensorInfo, array: np.ndarray, valid: IdRange | None) -> np.ndarray:
    """An integer input's array as its dtype, after checking that it holds whole numbers in range."""
    assert info.dtype is not None
    if array.dtype.kind == "f":
        fraction = ~np.isfinite(array) | (array != np.round(array))
        if fraction.any():
            where = [int(i) for i in np.argwhere(fraction)[0]]
            raise InputDataError(
                f"input {info.name!r}: expected integer ids ({info.dtype}), found {array[tuple(where)]} at {where}"
            )
    if valid is not None:
        low, high, why = 0, valid.size, f" for layer {valid.layer!r} (layers[{valid.index}])"
        span = f"ids in [0, {valid.size})"
    else:  # read by no layer: any id its dtype holds
        limits = np.iinfo(np.dtype(info.dtype))
        low, high, why, span = int(limits.min), int(limits.max) + 1, "", f"ids that fit in {info.dtype}"
    outside = (array < low) | (array >= high)
    if outside.any():
        where = [int(i) for i in np.argwhere(outside)[0]]
        found = array[tuple(where)]
        shown = int(found) if array.dtype.kind == "f" else found
        raise InputDataError(f"input {info.name!r}: expected {span}{why}, found {shown} at {where}")
    return np.ascontiguousarray(array, dtype=np.dtype(info.dtype))
