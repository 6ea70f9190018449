"""Checking user arrays against a graph's inputs: names, shapes and dtypes, with clear errors."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import InputDataError, suggest
from .ir import Graph, TensorInfo


def check_feeds(graph: Graph | tuple[TensorInfo, ...], feeds: Mapping[str, object], dtype: np.dtype | None = None) -> dict[str, np.ndarray]:
    """Arrays keyed by input name, each `[N, *shape]` with one N, cast to the network's dtype.

    Integers and floats of any width are accepted and cast; anything else (objects, strings,
    booleans, complex numbers) is refused.
    """
    infos = graph.inputs if isinstance(graph, Graph) else graph
    dtype = graph.dtype if isinstance(graph, Graph) else np.dtype(dtype)
    expected = [i.name for i in infos]
    for key in feeds:
        if key not in expected:
            raise InputDataError(
                f"unknown input {key!r}{suggest(key, expected)}; the model's inputs: {', '.join(expected)}"
            )
    out: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for info in infos:
        if info.name not in feeds:
            raise InputDataError(f"missing input {info.name!r} (shape {['N', *info.shape]})")
        array = np.asarray(feeds[info.name])
        if array.dtype.kind not in "iuf":
            raise InputDataError(
                f"input {info.name!r}: expected real numbers (int or float), found dtype {array.dtype}"
            )
        want = ["N", *info.shape]
        if array.ndim != len(want) or tuple(array.shape[1:]) != info.shape:
            extra = " (the batch dimension N comes first)" if tuple(array.shape) == info.shape else ""
            raise InputDataError(f"input {info.name!r}: expected shape {want}, found {list(array.shape)}{extra}")
        if array.shape[0] < 1:
            raise InputDataError(f"input {info.name!r}: expected at least one sample, found an empty batch")
        if batch is not None and array.shape[0] != batch[1]:
            raise InputDataError(
                f"input {info.name!r} has {array.shape[0]} samples but {batch[0]!r} has {batch[1]}; batch sizes must match"
            )
        batch = (info.name, array.shape[0])
        cast = np.ascontiguousarray(array, dtype=dtype)
        if not np.isfinite(cast).all() and np.isfinite(array).all():
            raise InputDataError(f"input {info.name!r}: values too large for {dtype.name}")
        out[info.name] = cast
    return out
