"""Derived error bounds: a float64 forward pass that carries, for every value, how far a correct
implementation in the network's dtype may be from the exact result.

The model (see README, "The derived bound"): inputs and weights are exact in the network's dtype; a
dense layer summing k products is off by at most gamma_k (|W| |p| + |b|) plus what its input already
carried, times |W|; an activation multiplies the incoming bound by its Lipschitz constant and adds
its own few-ulp error; a step function is ambiguous where its input is within its bound of the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .activations import Precision
from .ir import Graph
from .layers import LAYERS


@dataclass(frozen=True)
class Trace:
    """Every input and layer output: its float64 value and its error bound for `precision`."""

    precision: Precision
    values: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]
    ambiguous: dict[str, np.ndarray]  # step layers: elements where either output is correct


def propagate(graph: Graph, feeds: Mapping[str, np.ndarray], precision: Precision) -> Trace:
    """Run the network in float64 (the oracle) and carry the error bound of `precision` arithmetic."""
    wide = graph.widened()
    values = {name: np.asarray(array, dtype=np.float64) for name, array in feeds.items()}
    errors = {name: np.zeros_like(array) for name, array in values.items()}
    ambiguous: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):  # inf and NaN are values like any other; the comparison judges them
        for node in wide.nodes:
            rule = LAYERS[node.op].bound
            out, bound = rule(node, [values[i] for i in node.inputs], [errors[i] for i in node.inputs], precision)
            values[node.name], errors[node.name] = out, bound.err
            if bound.ambiguous is not None:
                ambiguous[node.name] = bound.ambiguous
    return Trace(precision, values, errors, ambiguous)
