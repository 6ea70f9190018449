"""A spec summarized for review: what each layer computes, in the seed's notation, and from which numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .fields import FileRef, Init, Inline, WeightSource
from .ir import Graph
from .layers import LAYERS
from .spec import Spec


def describe_source(source: WeightSource | None) -> str:
    """Where a parameter's numbers come from: `inline`, `file w.npz['W'] (sha256 pinned)`, `he_normal(seed=3)`."""
    if isinstance(source, Inline):
        return "inline"
    if isinstance(source, FileRef):
        where = source.file if source.key is None else f"{source.file}[{source.key!r}]"
        return f"file {where}" + (" (sha256 pinned)" if source.sha256 else "")
    if isinstance(source, Init):
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in source.params.items())
        return f"{source.init}({args})" if args else source.init
    return "-"


def _stats(array: np.ndarray) -> dict[str, float | None]:
    if array.size == 0:
        return {"min": None, "max": None, "mean_abs": None}
    wide = array.astype(np.float64)
    return {"min": float(wide.min()), "max": float(wide.max()), "mean_abs": float(np.abs(wide).mean())}


def summarize(spec: Spec, graph: Graph) -> dict[str, Any]:
    """The network as data: per layer its formula, output shape, parameters and their sources and ranges, and
    its multiply-adds per sample (LayerType.multiply_adds)."""
    layers = []
    for node in graph.nodes:
        layer = spec.layers[node.index]
        params = {
            key: {"shape": list(array.shape), "source": describe_source(getattr(layer, key, None)), **_stats(array)}
            for key, array in node.params.items()
        }
        layers.append(
            {
                "index": node.index,
                "path": f"layers[{node.index}]",
                "name": node.name,
                "type": node.op,
                "computes": LAYERS[node.op].formula(node),
                "shape": ["N", *node.shape],
                "parameters": sum(int(a.size) for a in node.params.values()),
                "multiply_adds": LAYERS[node.op].multiply_adds(node),
                "params": params,
            }
        )
    return {
        "model": graph.name,
        "format": spec.format,
        "dtype": graph.dtype.name,
        "description": graph.description,
        "inputs": [{"name": i.name, "shape": ["N", *i.shape]} for i in graph.inputs],
        "layers": layers,
        "outputs": [o.name for o in graph.outputs],
        "parameters": graph.parameter_count,
        "weight_bytes": graph.parameter_count * graph.dtype.itemsize,
        "multiply_adds": sum(layer["multiply_adds"] for layer in layers),  # per sample
        "tolerance": {name: {"rtol": r, "atol": a} for name, (r, a) in graph.tolerances.items()},
        "sha256": graph.fingerprint,
    }
