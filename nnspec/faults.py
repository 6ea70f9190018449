"""Random valid networks and injected faults: the measurements behind the derived tolerance.

`random_spec(rng)` draws a valid spec; `inject(graph, kind, rng)` returns the resolved network with
one fault of `kind` (see KINDS), or None when this network offers no place for it. A faulty graph is
exported with nnspec.onnx_export.to_onnx and checked against the original spec, as a broken exporter
or a hand-edited model would be. `effect` tells a fault that changes the outputs on the check's inputs
from an equivalent mutant, which no correct checker can catch on those inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .activations import REGISTRY, Activation, Choice, Precision
from .bounds import Trace, propagate
from .inputs import Case
from .ir import Graph, Node

KINDS = ("weight", "transpose", "activation", "bias", "outputs")

# A weight fault multiplies one weight by 1 + WEIGHT_CHANGE * gamma_k (see `_weight`).
WEIGHT_CHANGE = 1000.0
# A re-parametrized activation has one parameter changed by this relative amount.
PARAM_CHANGE = 0.5

MAX_DEPTH = 5
MAX_WIDTH = 64
WEIGHT_SCALES = (0.05, 3.0)  # the standard deviation of one weight, drawn log-uniformly between these
PARAM_RANGE = 3.0  # activation parameters: uniform in [-3, 3], the functions' own scales, both signs


# --- random valid networks -------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _width(rng: np.random.Generator) -> int:
    """1 to MAX_WIDTH, log-uniform: narrow layers (where one term dominates a sum) as often as wide ones."""
    return min(MAX_WIDTH, int(_log_uniform(rng, 1, MAX_WIDTH + 1)))


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    """A weight source of shape [units, in_features]: inline numbers or an initializer, scale 0.05 to 3."""
    scale = _log_uniform(rng, *WEIGHT_SCALES)
    kind = rng.choice(["inline", "inline", "normal", "uniform", "glorot_uniform", "he_normal", "constant"])
    if kind == "inline":
        return rng.normal(0.0, scale, shape).tolist()
    if kind == "normal":
        return {"init": "normal", "seed": _seed(rng), "mean": 0.0, "std": scale}
    if kind == "uniform":  # the same standard deviation as normal
        return {"init": "uniform", "seed": _seed(rng), "low": -scale * math.sqrt(3), "high": scale * math.sqrt(3)}
    if kind == "constant":
        return {"init": "constant", "value": scale * float(rng.choice([-1.0, 1.0]))}
    return {"init": str(kind), "seed": _seed(rng)}


def _bias_source(rng: np.random.Generator, units: int) -> Any:
    """A bias source, or None (no bias)."""
    kind = rng.choice(["none", "inline", "inline", "normal", "zeros", "constant"])
    scale = _log_uniform(rng, *WEIGHT_SCALES)
    if kind == "none":
        return None
    if kind == "inline":
        return rng.normal(0.0, scale, units).tolist()
    if kind == "normal":
        return {"init": "normal", "seed": _seed(rng), "mean": 0.0, "std": scale}
    if kind == "zeros":
        return {"init": "zeros"}
    return {"init": "constant", "value": scale * float(rng.choice([-1.0, 1.0]))}


def _activation(rng: np.random.Generator) -> str | dict[str, Any]:
    """Any registered activation, by its name or an alias, with its defaults or random valid parameters."""
    entry = REGISTRY[str(rng.choice(sorted(REGISTRY)))]
    name = str(rng.choice([entry.name, *entry.aliases]))
    if not entry.params or rng.random() < 0.3:
        return name
    params: dict[str, Any] = {}
    for key, default in entry.params.items():
        if isinstance(default, Choice):
            params[key] = str(rng.choice(default.values))
        else:
            params[key] = float(rng.uniform(-PARAM_RANGE, PARAM_RANGE))
    return {"name": name, **params}


def random_spec(rng: np.random.Generator) -> dict[str, Any]:
    """A valid spec: 1-5 layers (dense, or an activation alone), widths 1-64, every activation.

    Weights have a per-weight standard deviation from 0.05 to 3 (inline numbers or initializers),
    and a quarter of the dense layers are square; the dtype is float32 or float64; a quarter of the
    inputs are [rows, width] per sample. A third of the networks have a second output, a head of the
    same shape as the last layer reading an earlier value, so that two outputs can be swapped.
    The same generator state gives the same spec (for a given NumPy's Generator streams).
    """
    dtype = str(rng.choice(["float32", "float64"]))
    width = _width(rng)
    rows = [int(rng.choice([2, 3, 5]))] if rng.random() < 0.25 else []
    layers: list[dict[str, Any]] = []
    shapes: dict[str, int] = {"x": width}  # value name -> its last axis
    depth = int(rng.integers(1, MAX_DEPTH + 1))
    for i in range(depth):
        if rng.random() < 0.2:
            layer = {"type": "activation", "name": f"act{i}", "activation": _activation(rng)}
        else:
            units = width if rng.random() < 0.25 else _width(rng)  # square matrices, for transposition
            layer = {
                "type": "dense",
                "name": f"dense{i}",
                "units": units,
                "activation": _activation(rng),
                "weights": _weights(rng, (units, width)),
            }
            bias = _bias_source(rng, units)
            if bias is not None:
                layer["bias"] = bias
            width = units
        layers.append(layer)
        shapes[layer["name"]] = width
    spec: dict[str, Any] = {
        "format": "nnspec/1",
        "name": "random",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [*rows, shapes["x"]]}],
        "layers": layers,
    }
    if rng.random() < 1 / 3:
        last = layers[-1]["name"]
        source = str(rng.choice(list(shapes)[:-1]))
        head: dict[str, Any] = {
            "type": "dense",
            "name": "head",
            "inputs": [source],
            "units": width,
            "activation": _activation(rng),
            "weights": _weights(rng, (width, shapes[source])),
        }
        if shapes[source] == width and rng.random() < 0.3:
            head = {"type": "activation", "name": "head", "inputs": [source], "activation": _activation(rng)}
        layers.append(head)
        spec["outputs"] = [last, "head"] if rng.random() < 0.5 else ["head", last]
    return spec


# --- faults -------------------------------------------------------------------------------------


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a k-term sum."""
    return k * u / (1 - k * u)


def _with_node(graph: Graph, node: Node) -> Graph:
    return replace(graph, nodes=tuple(node if n.name == node.name else n for n in graph.nodes))


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _weight(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """One non-zero weight w of a dense layer becomes w (1 +- 1000 gamma_k), k the layer's terms per sum.

    Why 1000 gamma_k: each side's own rounding of the sum is bounded by gamma_k sum_j |w_j p_j| (+ |b|),
    so the change, 1000 gamma_k |w p|, exceeds both sides' bounds together whenever the changed term
    is more than 1/500 of the row's magnitude, as every term of a row of 500 equal terms is: well
    above the bound for the rows here (at most 65 terms), yet a small fault. Being relative to gamma_k,
    it is equally hard to see in float32 and float64 and in narrow and wide layers; in float32 it is a
    change of 6e-5 (k = 1) to 4e-3 (k = 65), below the flat rtol of 1e-3 common in comparison tools
    for k up to 16. Where the term is small, the error carried in from earlier layers large, or the
    layer's output flattened downstream (a step, a clamp, a dead relu), the outputs move by less
    than the bound: `effect` finds such equivalent mutants.
    """
    nodes = [n for n in graph.nodes if "weights" in n.params and np.any(n.params["weights"])]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    w = node.params["weights"].copy()
    k = w.shape[1] + ("bias" in node.params)
    change = WEIGHT_CHANGE * gamma(k, Precision.of(graph.dtype).u) * float(rng.choice([-1.0, 1.0]))
    flat = int(_pick(rng, np.flatnonzero(w)))
    w.flat[flat] = w.flat[flat] * (1 + change)
    return _with_node(graph, replace(node, params={**node.params, "weights": w}))


def _transpose(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """A square weight matrix W of a dense layer is replaced by W^T (symmetric ones are skipped)."""
    nodes = [
        n
        for n in graph.nodes
        if "weights" in n.params
        and n.params["weights"].shape[0] == n.params["weights"].shape[1]
        and not np.array_equal(n.params["weights"], n.params["weights"].T)
    ]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    w = np.ascontiguousarray(node.params["weights"].T)
    return _with_node(graph, replace(node, params={**node.params, "weights": w}))


def _activation_fault(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """One layer's activation is swapped for another (its defaults), or, in half the layers whose
    activation has a non-zero float parameter (alpha, beta, gamma), that parameter is scaled by 1.5 or 0.5."""
    nodes = [n for n in graph.nodes if n.activation is not None]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    act = node.activation
    assert act is not None
    tunable = [k for k, v in act.params.items() if isinstance(v, float) and v != 0]
    if tunable and rng.random() < 0.5:
        key = _pick(rng, tunable)
        factor = 1 + PARAM_CHANGE * float(rng.choice([-1.0, 1.0]))
        changed = Activation(act.type, {**act.params, key: act.params[key] * factor})
    else:
        other = REGISTRY[_pick(rng, sorted(set(REGISTRY) - {act.name}))]
        changed = Activation(other, other.defaults())
    return _with_node(graph, replace(node, activation=changed))


def _drop_bias(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """A dense layer's non-zero bias is dropped (as an exporter that forgets it would)."""
    nodes = [n for n in graph.nodes if "bias" in n.params and np.any(n.params["bias"])]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    return _with_node(graph, replace(node, params={k: v for k, v in node.params.items() if k != "bias"}))


def _swap_outputs(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """Two outputs of equal shape trade places: the layers computing them trade names, and every
    reader follows its value, so the model is well formed and only its outputs are swapped."""
    pairs = [
        (a.name, b.name) for i, a in enumerate(graph.outputs) for b in graph.outputs[i + 1 :] if a.shape == b.shape
    ]
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    rename = {a: b, b: a}
    nodes = tuple(
        replace(n, name=rename.get(n.name, n.name), inputs=tuple(rename.get(i, i) for i in n.inputs))
        for n in graph.nodes
    )
    return replace(graph, nodes=nodes)


INJECTORS: dict[str, Callable[[Graph, np.random.Generator], Graph | None]] = {
    "weight": _weight,
    "transpose": _transpose,
    "activation": _activation_fault,
    "bias": _drop_bias,
    "outputs": _swap_outputs,
}


def inject(graph: Graph, kind: str, rng: np.random.Generator) -> Graph | None:
    """The graph with one fault of `kind` (one of KINDS), or None where the network has no place for it."""
    if kind not in INJECTORS:
        raise ValueError(f"expected a fault kind ({', '.join(KINDS)}), found {kind!r}")
    return INJECTORS[kind](graph, rng)


def faulted_layer(original: Graph, faulty: Graph) -> str | None:
    """The name of the one layer whose weights or activation differ (None for swapped outputs)."""
    for before, after in zip(original.nodes, faulty.nodes, strict=True):
        if before.name != after.name:
            return None
        if before.activation != after.activation or before.params.keys() != after.params.keys():
            return before.name
        if any(not np.array_equal(before.params[k], after.params[k]) for k in before.params):
            return before.name
    return None


def traces(graph: Graph, cases: Sequence[Case]) -> list[Trace]:
    """The float64 values and error bounds of `graph` on every case, for the network's dtype."""
    precision = Precision.of(graph.dtype)
    return [propagate(graph, case.feeds, precision) for case in cases]


def effect(original: Graph, faulty: Graph, cases: Sequence[Case], before: Sequence[Trace] | None = None) -> float:
    """How far the fault moves the outputs on `cases`, as a multiple of the check's tolerance there
    (the sum of both sides' bounds for the original network).

    Both networks are computed in float64 (nnspec.bounds.propagate), then rounded to the network's
    dtype, the closest any implementation can come: a change below that is no change (a hardlim
    swapped for silu gives -6e-79 where hardlim gives 0; both are 0 in float32). Above 1, the fault
    changes the outputs on these inputs; at most 1, the faulty network is an equivalent mutant there.
    `before` (the original's traces on `cases`) saves recomputing them.
    """
    before = traces(original, cases) if before is None else before
    worst = 0.0
    for expected, after in zip(before, traces(faulty, cases), strict=True):
        for out in original.outputs:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                r, c = (v[out.name].astype(original.dtype).astype(np.float64) for v in (expected.values, after.values))
                diff = np.abs(c - r)
                diff = np.where((r == c) | (np.isnan(r) & np.isnan(c)), 0.0, np.where(np.isnan(diff), np.inf, diff))
                margin = np.where(diff == 0, 0.0, diff / (2 * expected.errors[out.name]))
            # a bound that could not be computed (NaN) does not make a change invisible
            worst = max(worst, float(np.where(np.isnan(margin), np.inf, margin).max(initial=0.0)))
    return worst
