"""A model file against a fresh export of its spec: every initializer to the bit, and every node.

For models nnspec compiled (same nnspec version, any opset it writes), the file should be the export of
its spec exactly; any difference is a finding of its own, exact and cheap, and says what differs, down to
the weight: `layer 'l1', weights[12, 345]: the model holds 0.52343, the spec says 0.52291 (x1.001)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import Graph

# How many differing nodes a report lists before it counts the rest: enough to see what was inserted.
NODES_LISTED = 5


def file_differences(
    model: onnx.ModelProto,
    fresh: onnx.ModelProto,
    graph: Graph,
    held: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]] = ({}, {}),
) -> list[dict[str, Any]]:
    """Each way `model` differs from `fresh` (the spec's export at the model's opset), as data. `held` has
    the numbers of initializers that each stores apart (external data, an export's arrays), by name."""
    found = list(_initializers(model, fresh, graph, held))
    found += _nodes(model, fresh)
    return found


def _params(graph: Graph) -> dict[str, tuple[str, str, bool]]:
    """Initializer name -> (layer, parameter, stored transposed), for every parameter of the spec."""
    names = {}
    for node in graph.nodes:
        for key in node.params:
            names[f"{node.name}.{key}"] = (node.name, key, False)
            names[f"{node.name}.{key}_t"] = (node.name, key, True)
    return names


def _initializers(
    model: onnx.ModelProto,
    fresh: onnx.ModelProto,
    graph: Graph,
    arrays: tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]],
) -> Iterator[dict[str, Any]]:
    held = {t.name: t for t in model.graph.initializer}
    params = _params(graph)
    for tensor in fresh.graph.initializer:
        expected = arrays[1][tensor.name] if tensor.name in arrays[1] else numpy_helper.to_array(tensor)
        where = params.get(tensor.name)
        what = f"layer {where[0]!r}, {where[1]}" if where else f"constant {tensor.name!r}"
        if tensor.name not in held:
            yield {"kind": "initializer", "name": tensor.name, "message": f"{what}: the model has no {tensor.name!r}"}
            continue
        try:
            found = arrays[0].get(tensor.name)
            found = numpy_helper.to_array(held[tensor.name]) if found is None else found
        except Exception as exc:  # noqa: BLE001 - a damaged tensor is a difference like any other
            yield {"kind": "initializer", "name": tensor.name, "message": f"{what}: unreadable ({exc})"}
            continue
        if found.dtype != expected.dtype or found.shape != expected.shape:
            yield {
                "kind": "initializer",
                "name": tensor.name,
                "message": f"{what}: the model holds {found.dtype} {list(found.shape)}, the spec's export "
                f"{expected.dtype} {list(expected.shape)}",
            }
            continue
        differ = _bitwise_differ(found, expected)
        if not differ.any():
            continue
        yield _weight_difference(tensor.name, where, what, found, expected, differ)
    extra = sorted(set(held) - {t.name for t in fresh.graph.initializer})
    if extra:
        listed = ", ".join(map(repr, extra[:NODES_LISTED])) + (
            f" and {len(extra) - NODES_LISTED} more" if len(extra) > NODES_LISTED else ""
        )
        yield {
            "kind": "initializer",
            "name": extra[0],
            "message": f"the model holds initializers the spec's export has not: {listed}",
        }


def _bitwise_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: not the same bits (so -0.0 differs from 0.0, and NaN equals its own bits)."""
    if a.dtype.kind in "fc" and a.dtype.itemsize in (2, 4, 8):
        view = np.dtype(f"u{a.dtype.itemsize}")
        return np.ascontiguousarray(a).view(view) != np.ascontiguousarray(b).view(view)
    return a != b


def _weight_difference(
    name: str,
    where: tuple[str, str, bool] | None,
    what: str,
    found: np.ndarray,
    expected: np.ndarray,
    differ: np.ndarray,
) -> dict[str, Any]:
    with np.errstate(all="ignore"):
        f, e = found.astype(np.float64), expected.astype(np.float64)
        change = np.where(differ, np.abs(f - e) / np.maximum(np.abs(e), np.finfo(np.float64).tiny), 0.0)
        change = np.where(np.isnan(change), np.inf, change)
    flat = int(np.argmax(change))
    index = [int(i) for i in np.unravel_index(flat, found.shape)] if found.ndim else []
    if where is not None and where[2]:
        index = index[::-1]  # stored transposed (`<layer>.weights_t`): the spec's layout is the other way round
    model_value, spec_value = float(f.flat[flat]), float(e.flat[flat])
    ratio = model_value / spec_value if spec_value else None
    count = int(differ.sum())
    at = f"[{', '.join(map(str, index))}]" if index else ""
    times = f" (x{ratio:.6g})" if ratio is not None and np.isfinite(ratio) else ""
    more = f"; {count - 1} more of its {found.size} numbers differ" if count > 1 else ""
    return {
        "kind": "weight",
        "name": name,
        "layer": where[0] if where else None,
        "param": where[1] if where else None,
        "index": index,
        "model": model_value,
        "spec": spec_value,
        "ratio": ratio,
        "count": count,
        "message": f"{what}{at}: the model holds {model_value:.8g}, the spec says {spec_value:.8g}{times}{more}",
    }


def _signature(node: onnx.NodeProto) -> str:
    attrs = {a.name: _plain(helper.get_attribute_value(a)) for a in node.attribute}
    inputs, outputs = ", ".join(node.input), ", ".join(node.output)
    listed = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
    return f"{node.op_type} {node.name!r} ({inputs}) -> {outputs}" + (f" [{listed}]" if listed else "")


def _plain(value: Any) -> Any:
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value).tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _nodes(model: onnx.ModelProto, fresh: onnx.ModelProto) -> list[dict[str, Any]]:
    have = [_signature(n) for n in model.graph.node]
    want = [_signature(n) for n in fresh.graph.node]
    if have == want:
        return []
    lines = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=want, b=have, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            lines += [f"the spec's export has {s}, the model has not" for s in want[i1:i2]]
        if tag in ("replace", "insert"):
            lines += [f"the model has {s}, the spec's export has not" for s in have[j1:j2]]
    listed = lines[:NODES_LISTED]
    if len(lines) > NODES_LISTED:
        listed.append(f"... and {len(lines) - NODES_LISTED} more node difference(s)")
    return [{"kind": "node", "name": "", "message": line} for line in listed]
