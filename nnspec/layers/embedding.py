"""`embedding`: a lookup, row `ids` of a table of shape [input_dim, output_dim]; integer ids in, vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..activations import Precision
from ..affine import Affine
from ..fields import WeightField
from ..ir import LayerPlan, Node, ParamPlan, Source
from ..lifting import Lifted, ModelView, OnnxNode, computed
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, no_multiply_adds, register


class Embedding(LayerSpec):
    """Looks up one row of `weights` per integer id: ids [N, *s] give vectors [N, *s, output_dim].

    Reads only integer inputs (`"dtype": "int64"` or `"int32"`); an id outside [0, input_dim) is refused
    before anything runs, naming the input, the position and the value. Its layer declares
    `attrs["input_dim"]`, which `nnspec.feeds` checks ids against and `nnspec.inputs` draws ids from.
    """

    type: Literal["embedding"]
    input_dim: int = Field(ge=1, description="the number of ids: valid ids are 0 .. input_dim - 1")
    output_dim: int = Field(ge=1, description="the length of each id's vector")
    weights: WeightField = Field(description="the table, shape [input_dim, output_dim]; row i is id i's vector")

    integer_inputs: ClassVar[bool] = True

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        why = f"one row of {self.output_dim} numbers per id, input_dim = {self.input_dim}"
        params = {"weights": ParamPlan((self.input_dim, self.output_dim), self.weights, why)}
        return LayerPlan(shape=(*src.shape, self.output_dim), params=params, attrs={"input_dim": self.input_dim})


def embedding(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Row `id` of the table for every id: [N, *s] -> [N, *s, output_dim]."""
    return table[ids]  # ids were checked against [0, input_dim) by nnspec.feeds


def prepare(node: Node) -> Arguments:
    return {"table": node.params["weights"]}


def onnx_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    table = g.const(node.params["weights"], f"{node.name}.weights")
    return g.op("Gather", [table, inputs[0]], out, axis=0)


def vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """Each id's row of the table gathers dL/dy from every place the id was read; ids carry no gradient."""
    (ids,) = inputs
    table = node.params["weights"]
    grads = np.zeros_like(table)
    np.add.at(grads, ids.reshape(-1).astype(np.int64), upstream.reshape(-1, table.shape[1]))
    return [None], {"weights": grads}


def error_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Exact: both sides copy the same stored numbers. The ids arrive as float64 values; they are whole."""
    (ids,) = inputs
    rows = node.params["weights"][ids.value.reshape(-1).astype(np.int64)]
    return Affine(rows)


def formula(node: Node) -> str:
    return f"E[{node.inputs[0]}]"


EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "embedding_tokens",
        "inputs": [{"name": "tokens", "shape": [6], "dtype": "int64"}],
        "layers": [
            {
                "type": "embedding",
                "name": "embed",
                "input_dim": 12,
                "output_dim": 4,
                "weights": {"init": "normal", "seed": 1, "std": 1.0},
            },
            {
                "type": "dense",
                "name": "per_token",
                "units": 3,
                "activation": "relu",
                "weights": {"init": "glorot_uniform", "seed": 2},
                "bias": {"init": "normal", "seed": 3},
            },
        ],
    },
    {
        "format": "nnspec/1",
        "name": "embedding_grid_int32",
        "dtype": "float64",
        "inputs": [{"name": "ids", "shape": [2, 3], "dtype": "int32"}],
        "layers": [
            {
                "type": "embedding",
                "name": "lookup",
                "input_dim": 5,
                "output_dim": 2,
                "weights": [[0.5, -1.0], [2.0, 0.0], [0.25, 3.0], [-4.0, 1.5], [1.0, 1.0]],
            }
        ],
    },
)


def lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Gather of rows (axis 0) of a constant 2-D table by computed ids."""
    if node.op != "Gather" or int(node.attrs.get("axis", 0)) != 0:
        return None
    table, ids = node.inputs
    weights = view.const(table)
    if weights is None or weights.ndim != 2 or not computed(view, [ids]):
        return None
    fields = {"input_dim": int(weights.shape[0]), "output_dim": int(weights.shape[1])}
    return Lifted("embedding", fields, {"weights": weights}, (ids,), (node,), node.outputs[0])


register(
    LayerType(
        "embedding",
        Embedding,
        onnx_lowering,
        error_bound,
        formula,
        doc=Embedding.__doc__ or "",
        examples=EXAMPLES,
        lift=lift,
        vjp=vjp,
        multiply_adds=no_multiply_adds,
        kernel=embedding,
        prepare=prepare,
    )
)
