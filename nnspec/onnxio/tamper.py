"""Model edits that stand for a damaged or tampered file, for the tests and benchmarks of the check's power."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def scaled_entry(model: onnx.ModelProto, name: str, index: tuple[int, ...], factor: float, way: str) -> onnx.ModelProto:
    """The model with one entry of initializer `name` multiplied by `factor` (rounded to its dtype): written into
    the initializer (`way="initializer"`), or applied at run time by an inserted Mul by a mask (any other way)."""
    faulty = onnx.ModelProto()
    faulty.CopyFrom(model)
    init = next(i for i in faulty.graph.initializer if i.name == name)
    array = numpy_helper.to_array(init).copy()
    if way == "initializer":
        array[index] = array[index] * array.dtype.type(factor)
        init.CopyFrom(numpy_helper.from_array(array, name))
        return faulty
    mask = np.ones_like(array)
    mask[index] = factor
    faulty.graph.initializer.append(numpy_helper.from_array(mask, f"{name}.mask"))
    for node in faulty.graph.node:
        node.input[:] = [f"{name}.masked" if i == name else i for i in node.input]
    faulty.graph.node.insert(
        0, helper.make_node("Mul", [name, f"{name}.mask"], [f"{name}.masked"], name=f"{name}/mask")
    )
    return faulty


def moved_one_ulp(model: onnx.ModelProto, how: str, seed: int) -> onnx.ModelProto:
    """Every initializer's numbers moved by one ulp: `up` (towards +inf), `away` (from zero), or `random`."""
    moved = onnx.ModelProto()
    moved.CopyFrom(model)
    rng = np.random.default_rng(seed)
    for init in moved.graph.initializer:
        a = numpy_helper.to_array(init)
        if how == "up":
            target = np.full(a.shape, np.inf)
        elif how == "away":
            target = np.where(a >= 0, np.inf, -np.inf)
        else:
            target = np.where(rng.random(a.shape) < 0.5, np.inf, -np.inf)
        init.CopyFrom(numpy_helper.from_array(np.nextafter(a, target.astype(a.dtype)), init.name))
    return moved
