"""Checking user arrays against a graph's inputs: names, shapes and dtypes, with clear errors."""

from __future__ import annotations

from collections.abc import Mapping

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
    """Arrays keyed by input name, each `[N, *shape]` with one N, cast to the network's dtype.

    Integers and floats of any width are accepted and cast; anything else (objects, strings,
    booleans, complex numbers) is refused.
    """
    infos = graph.inputs if isinstance(graph, Graph) else graph
    dtype = graph.dtype if isinstance(graph, Graph) else np.dtype(dtype)
    out: dict[str, np.ndarray] = {}
    for name, array in check_arrays(infos, feeds).items():
        with np.errstate(over="ignore"):  # an overflow becomes inf, reported below
            cast = np.ascontiguousarray(array, dtype=dtype)
        if not np.isfinite(cast).all() and (too_large := np.isinf(cast) & np.isfinite(array)).any():
            where = [int(i) for i in np.argwhere(too_large)[0]]
            raise InputDataError(
                f"input {name!r}: expected values that fit in {dtype.name}, found {array[tuple(where)]} at index {where}"
            )
        out[name] = cast
    if isinstance(graph, Graph) and out:
        check_batch_memory(graph, next(iter(out.values())).shape[0])
    return out


def check_batch_memory(graph: Graph, batch: int, limits: Limits | None = None) -> None:
    """Refuse a batch whose largest intermediate value would exceed the batch memory limit."""
    limit = (limits or Limits.from_env()).max_batch_bytes
    per_sample, where = graph.largest_value
    if batch * per_sample > limit:
        raise InputDataError(
            f"expected a batch whose values fit in {human_bytes(limit)} (NNSPEC_MAX_BATCH_BYTES), found {batch} "
            f"samples, which need {human_bytes(batch * per_sample)} for {where!r} alone; split the batch"
        )
