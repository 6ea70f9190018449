"""The NumPy reference evaluator: built once from a Graph, then called on batches."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import InputDataError
from .feeds import check_feeds
from .ir import Graph
from .layers import LAYERS


class NumpyModel:
    """`model(x)` for one input, `model(a=..., b=...)` for several; one output comes back as an
    array, several as a dict keyed by output name. Arrays are batch-first, in the spec's dtype."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._kernels = [(node, LAYERS[node.op].numpy(node)) for node in graph.nodes]
        outputs = {o.name for o in graph.outputs}
        last_use: dict[str, int] = {}
        for step, node in enumerate(graph.nodes):
            for name in node.inputs:
                last_use[name] = step
        # Values that are no longer needed after step k are dropped, so memory follows the widest layer.
        self._free_after = [
            [name for name, step in last_use.items() if step == k and name not in outputs]
            for k in range(len(graph.nodes))
        ]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.graph.outputs]

    def __call__(self, *args: object, **kwargs: object) -> np.ndarray | dict[str, np.ndarray]:
        if args:
            if len(args) > 1 or kwargs or len(self.graph.inputs) != 1:
                raise InputDataError(
                    f"pass one array positionally only for a single-input model; this one takes "
                    f"{', '.join(self.input_names)} by keyword"
                )
            kwargs = {self.graph.inputs[0].name: args[0]}
        results = self.run(kwargs)
        return results[self.output_names[0]] if len(results) == 1 else results

    def run(self, feeds: Mapping[str, object], *, trace: bool = False) -> dict[str, np.ndarray]:
        """Outputs keyed by name; with `trace`, every layer's output as well."""
        values: dict[str, np.ndarray] = dict(check_feeds(self.graph, feeds))
        # inf and NaN are values like any other here (ONNX computes them too, the harness compares
        # them), so NumPy's floating-point warnings would only be noise on the user's terminal.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for step, (node, kernel) in enumerate(self._kernels):
                values[node.name] = kernel(*(values[name] for name in node.inputs))
                if not trace:
                    for name in self._free_after[step]:
                        values.pop(name, None)
        if trace:
            return {n.name: values[n.name] for n in self.graph.nodes}
        return {name: values[name] for name in self.output_names}
