"""Derived error bounds: a float64 forward pass (the oracle) that carries, for every value, how far
a correct implementation in the network's dtype may be from the exact result (see nnspec.affine).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from .activations import Precision
from .affine import Affine, exact, jacobian_budget
from .ir import Graph
from .layers import LAYERS


@dataclass(frozen=True)
class Trace:
    """Every input and layer output: its float64 value and its error bound for `precision`.

    Arrays have the values' own shapes, [N, *shape]; `ambiguous` marks, for step layers, the
    elements whose input lay within its bound of the step (either output is correct).
    """

    precision: Precision
    values: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    ambiguous: dict[str, np.ndarray]
    loose: tuple[str, ...] = ()  # layers whose bound lost cancellation to the Jacobian memory budget


def propagate(
    graph: Graph,
    feeds: Mapping[str, np.ndarray],
    precision: Precision,
    budget: int | None = None,
    keep: Collection[str] | None = None,
) -> Trace:
    """Run the network in float64 and carry the error bound of `precision` arithmetic alongside.

    `budget`: Jacobian entries kept per value (see nnspec.affine.jacobian_budget); None for the default.
    `keep`: the layers whose values and bounds the trace holds (None: all); the others are dropped as soon as
    no later layer reads them, so that a deep network's trace costs its outputs, not all of its layers.
    """
    if budget is not None:
        with jacobian_budget(budget):
            return propagate(graph, feeds, precision, keep=keep)
    shapes = {name: np.shape(array) for name, array in feeds.items()}
    forms: dict[str, Affine] = {
        name: exact(np.asarray(array, dtype=np.float64).reshape(-1, shapes[name][-1])) for name, array in feeds.items()
    }
    batch = next(iter(shapes.values()))[0]
    values, errors, ambiguous, loose = {}, {}, {}, []
    with np.errstate(all="ignore"):  # inf and NaN are values like any other; the comparison judges them
        for node in graph.nodes:
            # the float64 node lives for this call only where the graph keeps no float64 copy (Graph.wide_node)
            form = LAYERS[node.op].bound(graph.wide_node(node), [forms[i] for i in node.inputs], precision)
            forms[node.name] = form
            shape = (batch, *node.shape)
            if keep is None or node.name in keep:
                values[node.name] = form.value.reshape(shape)
                errors[node.name] = form.bound().reshape(shape)
            if form.loose:
                loose.append(node.name)
            if form.ambiguous is not None:
                ambiguous[node.name] = form.ambiguous.reshape(shape)
            for name in [n for n in forms if _done_with(n, node, graph)]:
                forms.pop(name)
    for name, array in feeds.items():
        values[name], errors[name] = np.asarray(array, dtype=np.float64), np.zeros(shapes[name])
    return Trace(precision, values, errors, ambiguous, tuple(loose))


def _done_with(name: str, current: object, graph: Graph) -> bool:
    """True once no later node reads `name` (its Jacobians can be freed)."""
    later = False
    for node in graph.nodes:
        if later and name in node.inputs:
            return False
        if node is current:
            later = True
    return name != getattr(current, "name", None)
