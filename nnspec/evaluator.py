"""The NumPy reference evaluator: built once from a Graph, then called on batches."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np

from .errors import InputDataError
from .feeds import FeedCheck
from .ir import Graph
from .layers import LAYERS
from .limits import Limits

T = TypeVar("T")


def _quiet(function: Callable[..., T]) -> Callable[..., T]:
    """`function` with NumPy's floating-point warnings off: inf and NaN are values like any other here (ONNX
    computes them too, the harness compares them), so the warnings would only be noise on the user's terminal.

    NumPy 2's errstate as a decorator costs 0.3 us a call against 0.75 us for a `with` block (no errstate object
    per call) and keeps its state per call, so threads may share a model. NumPy 1's keeps it on the one errstate
    object, which threads would overwrite: there each call gets its own."""
    if int(np.__version__.split(".")[0]) >= 2:
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")(function)

    @functools.wraps(function)
    def quiet(*args: object, **kwargs: object) -> T:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return function(*args, **kwargs)

    return quiet


# One layer's work: its name, its kernel, the values it reads, and the values no later layer reads.
Step = tuple[str, Callable[..., np.ndarray], tuple[str, ...], tuple[str, ...]]


class NumpyModel:
    """`model(x)` for one input, `model(a=..., b=...)` for several; one output comes back as an
    array, several as a dict keyed by output name. Arrays are batch-first, in the spec's dtype.

    Everything that depends only on the graph is worked out here, once: the kernels, the input checks'
    tables, and the batch memory limit (`limits`, or `NNSPEC_MAX_BATCH_BYTES` as set when the model is
    built; a later change to the environment applies to models built after it)."""

    def __init__(self, graph: Graph, limits: Limits | None = None) -> None:
        self.graph = graph
        self._check = FeedCheck(graph, limits)
        self._inputs = tuple(i.name for i in graph.inputs)
        self._outputs = tuple(o.name for o in graph.outputs)
        outputs = set(self._outputs)
        last_use: dict[str, int] = {}
        for step, node in enumerate(graph.nodes):
            for name in node.inputs:
                last_use[name] = step
        # Values that are no longer needed after step k are dropped, so memory follows the widest layer.
        free_after = [
            tuple(name for name, step in last_use.items() if step == k and name not in outputs)
            for k in range(len(graph.nodes))
        ]
        kernels = [LAYERS[node.op].numpy(node) for node in graph.nodes]
        self._steps: list[Step] = [
            (node.name, kernel, tuple(node.inputs), free)
            for node, kernel, free in zip(graph.nodes, kernels, free_after, strict=True)
        ]
        self._trace_steps: list[Step] = [(name, kernel, inputs, ()) for name, kernel, inputs, _ in self._steps]

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def __call__(self, *args: object, **kwargs: object) -> np.ndarray | dict[str, np.ndarray]:
        if args:
            if len(args) > 1 or kwargs or len(self._inputs) != 1:
                raise InputDataError(
                    f"pass one array positionally only for a single-input model; this one takes "
                    f"{', '.join(self._inputs)} by keyword"
                )
            (given,) = args
            # An array is checked as itself; anything else as the one input's value, so that the error
            # names the input.
            feeds: object = given if type(given) is np.ndarray else {self._inputs[0]: given}
        else:
            feeds = kwargs
        values = self._forward(self._check(feeds), self._steps)
        if len(self._outputs) == 1:
            return values[self._outputs[0]]
        return {name: values[name] for name in self._outputs}

    def run(self, feeds: Mapping[str, object], *, trace: bool = False) -> dict[str, np.ndarray]:
        """Outputs keyed by name; with `trace`, every layer's output as well."""
        values = self._forward(self._check(feeds), self._trace_steps if trace else self._steps)
        if trace:
            return {name: values[name] for name, *_ in self._steps}
        return {name: values[name] for name in self._outputs}

    @_quiet
    def _forward(self, values: dict[str, np.ndarray], steps: list[Step]) -> dict[str, np.ndarray]:
        """Each layer in turn on the checked inputs; `values` gains every output and loses what is no longer read."""
        for name, kernel, inputs, free in steps:
            if len(inputs) == 1:
                values[name] = kernel(values[inputs[0]])
            else:
                values[name] = kernel(*[values[source] for source in inputs])
            for done in free:
                del values[done]
        return values
