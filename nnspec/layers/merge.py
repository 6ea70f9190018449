"""Merges of two or more sources, named in `inputs`: `add`, `multiply` (element-wise) and `concat`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from ..activations import Precision
from ..affine import Affine, Source, elementwise, unfold
from ..errors import SpecError
from ..ir import LayerPlan, Node
from ..ir import Source as Input
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed, rank_of
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, no_arguments, no_multiply_adds, register


def _listing(sources: Sequence[Input]) -> str:
    """`h1 [8], h2 [4]`: every source with its per-sample shape."""
    return ", ".join(f"{s.name} {list(s.shape)}" for s in sources)


class Merge(LayerSpec):
    """Fields and rules shared by the merges: two or more sources, in the order `inputs` names them."""

    arity: ClassVar[tuple[int, int | None]] = (2, None)


class ElementwiseMerge(Merge):
    """A merge of sources of one shape, element by element; the output has that shape."""

    def plan(self, sources: Sequence[Input]) -> LayerPlan:
        if len({s.shape for s in sources}) > 1:
            raise SpecError(f"expected inputs of one shape, found {_listing(sources)}", ("inputs",))
        return LayerPlan(shape=sources[0].shape)


class Add(ElementwiseMerge):
    """The element-wise sum of its sources (a skip or residual connection)."""

    type: Literal["add"]


class Multiply(ElementwiseMerge):
    """The element-wise product of its sources (a gate)."""

    type: Literal["multiply"]


def batch_axis_error(axis: int, shape: tuple[int, ...], field: str) -> SpecError | None:
    """The error for an axis outside the value [N, *shape] or on its batch (axis 0), else None."""
    rank = len(shape) + 1
    valid = f"from 1 to {rank - 1} or from {-(rank - 1)} to -1" if rank > 2 else "1 or -1"
    where = f"of a value [N, {', '.join(map(str, shape))}]"
    if axis in (0, -rank):
        return SpecError(f"expected an axis {valid} {where}, found {axis}, the batch (no layer may merge it)", (field,))
    if not -rank <= axis < rank:
        return SpecError(f"expected an axis {valid} {where} (the batch is axis 0), found {axis}", (field,))
    return None


class Concat(Merge):
    """Its sources joined along one axis, in the order `inputs` names them; the other axes must agree."""

    type: Literal["concat"]
    axis: int = -1

    def plan(self, sources: Sequence[Input]) -> LayerPlan:
        if len({len(s.shape) for s in sources}) > 1:
            raise SpecError(f"expected inputs of one rank, found {_listing(sources)}", ("inputs",))
        if (error := batch_axis_error(self.axis, sources[0].shape, "axis")) is not None:
            raise error
        axis = self.axis % (len(sources[0].shape) + 1)
        others = {s.shape[: axis - 1] + s.shape[axis:] for s in sources}
        if len(others) > 1:
            raise SpecError(
                f"expected inputs whose shapes agree except along axis {axis} (the batch is axis 0), "
                f"found {_listing(sources)}",
                ("inputs",),
            )
        first = sources[0].shape
        shape = (*first[: axis - 1], sum(s.shape[axis - 1] for s in sources), *first[axis:])
        return LayerPlan(shape=shape, attrs={"axis": axis})


# --- add -----------------------------------------------------------------------------------------


def add(*xs: np.ndarray) -> np.ndarray:
    return functools.reduce(np.add, xs)


def _chain(op_type: str) -> Callable[[Node, OpBuilder, Sequence[str], str], str]:
    """A left fold of a binary ONNX operator over the inputs, its last node writing `out`."""

    def lower(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
        acc = inputs[0]
        for k, x in enumerate(inputs[1:], start=2):
            acc = g.op(op_type, [acc, x], out if k == len(inputs) else None)
        return out

    return lower


def add_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Every input's sources (a sum's Jacobian is the identity), plus the n - 1 additions' own rounding.

    A sum of n computed values is within gamma_{n-1} sum |x_i| of their exact sum in any order (Higham
    3.1), and |x_i| <= |x_i*| + e_i. Additions that underflow are exact, so no subnormal term.
    """
    k = len(inputs) - 1
    gamma = k * precision.u / (1 - k * precision.u)
    value = functools.reduce(np.add, (x.value for x in inputs))
    magnitude = functools.reduce(np.add, (np.abs(x.value) + x.bound() for x in inputs))
    sources = [s for x in inputs for s in x.sources]
    return Affine(value, [*sources, Source(gamma * magnitude)]).condensed()


def add_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """A sum passes dL/d(sum) to every term unchanged."""
    return [upstream for _ in inputs], {}


# --- multiply ------------------------------------------------------------------------------------


def multiply(*xs: np.ndarray) -> np.ndarray:
    return functools.reduce(np.multiply, xs)


def _product(x: Affine, y: Affine, precision: Precision) -> Affine:
    """x y: x's sources through y, y's through x, then e_x e_y and the product's own rounding."""
    e_x, e_y = x.bound(), y.bound()
    value = x.value * y.value
    # NOTE: "+ tiny": a product that underflows is off by up to the subnormal spacing, not u |x y|.
    own = e_x * e_y + precision.u * (np.abs(x.value) + e_x) * (np.abs(y.value) + e_y) + precision.tiny
    carried = [s.scale_rows(y.value) for s in x.sources] + [s.scale_rows(x.value) for s in y.sources]
    return Affine(value, [*carried, Source(own)]).condensed()


def multiply_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Products folded left, as both backends compute them: ((x1 x2) x3) ..."""
    return functools.reduce(lambda acc, x: _product(acc, x, precision), inputs)


def multiply_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """dL/dx_i = dL/dy times the product of the other factors (formed directly, so a zero factor is no problem)."""
    others = [functools.reduce(np.multiply, [x for j, x in enumerate(inputs) if j != i]) for i in range(len(inputs))]
    return [upstream * rest for rest in others], {}


# --- concat --------------------------------------------------------------------------------------


def concat(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def concat_prepare(node: Node) -> Arguments:
    return {"axis": node.attrs["axis"]}


def concat_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    return g.op("Concat", list(inputs), out, axis=node.attrs["axis"])


def concat_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Exact: values and error bounds are joined as they are (folded to elementwise bounds)."""
    parts = [unfold(x, shape) for x, shape in zip(inputs, node.input_shapes, strict=True)]
    axis = node.attrs["axis"]
    return elementwise(np.concatenate([v for v, _ in parts], axis), np.concatenate([e for _, e in parts], axis))


def concat_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """dL/d(output) cut back into each input's part along the joined axis."""
    sizes = [x.shape[node.attrs["axis"]] for x in inputs]
    return list(np.split(upstream, np.cumsum(sizes)[:-1], axis=node.attrs["axis"])), {}


def concat_formula(node: Node) -> str:
    rank = len(node.shape) + 1
    axis = node.attrs["axis"]
    return f"concat({', '.join(node.inputs)}; axis={-1 if axis == rank - 1 else axis})"


# --- examples ------------------------------------------------------------------------------------


def _dense(name: str, units: int, activation: str, seed: int, inputs: list[str] | None = None) -> dict[str, Any]:
    layer = {"type": "dense", "name": name, "units": units, "activation": activation}
    layer |= {"weights": {"init": "glorot_uniform", "seed": seed}, "bias": {"init": "normal", "seed": seed + 100}}
    return layer | ({"inputs": inputs} if inputs is not None else {})


ADD_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "add_skip",
        "description": "A residual block: h2 reads h1, and the sum reads both.",
        "inputs": [{"name": "x", "shape": [4]}],
        "layers": [
            _dense("h1", 6, "relu", 1),
            _dense("h2", 6, "tanh", 2),
            {"type": "add", "name": "skip", "inputs": ["h1", "h2"]},
            _dense("out", 2, "linear", 3),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "add_three",
        "inputs": [{"name": "a", "shape": [2, 3]}, {"name": "b", "shape": [2, 3]}],
        "layers": [
            _dense("c", 3, "sigmoid", 4, ["a"]),
            {"type": "add", "name": "total", "inputs": ["a", "b", "c"]},
        ],
    },
)

MULTIPLY_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "multiply_gate",
        "description": "A gated unit: a sigmoid gate times a linear value.",
        "inputs": [{"name": "x", "shape": [3]}],
        "layers": [
            _dense("gate", 4, "sigmoid", 5, ["x"]),
            _dense("value", 4, "linear", 6, ["x"]),
            {"type": "multiply", "name": "gated", "inputs": ["gate", "value"]},
            _dense("out", 2, "linear", 7),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "multiply_three",
        "inputs": [{"name": "a", "shape": [2, 3]}, {"name": "b", "shape": [2, 3]}],
        "layers": [
            _dense("c", 3, "tanh", 8, ["b"]),
            {"type": "multiply", "name": "product", "inputs": ["a", "b", "c"]},
        ],
    },
)

CONCAT_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "concat_features",
        "inputs": [{"name": "a", "shape": [3]}, {"name": "b", "shape": [2]}],
        "layers": [
            _dense("left", 4, "relu", 9, ["a"]),
            {"type": "concat", "name": "joined", "inputs": ["left", "b"]},
            _dense("out", 2, "linear", 10),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "concat_rows",
        "inputs": [{"name": "a", "shape": [2, 3]}, {"name": "b", "shape": [4, 3]}],
        "layers": [
            {"type": "concat", "name": "stacked", "inputs": ["b", "a"], "axis": 1},
            _dense("rows", 2, "tanh", 11),
        ],
    },
)


def _lift_elementwise(ops: tuple[str, ...], kind: str) -> Callable[[OnnxNode, ModelView], Lifted | None]:
    def lift(node: OnnxNode, view: ModelView) -> Lifted | None:
        if node.op not in ops or len(node.inputs) < 2 or not computed(view, node.inputs):
            return None
        shapes = {view.shape(i) for i in node.inputs}
        if len(shapes) > 1 and None not in shapes:
            raise Unliftable(
                f"its inputs are broadcast ({', '.join(str(list(s or [])) for s in shapes)}); the "
                f"format's {kind} takes sources of one shape"
            )
        return Lifted(kind, {}, {}, tuple(node.inputs), (node,), node.outputs[0])

    return lift


def concat_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Concat of computed values along any axis but the batch's."""
    if node.op != "Concat" or not computed(view, node.inputs):
        return None
    axis = int(node.attrs["axis"])
    rank = rank_of(view, node.inputs[0])
    if axis == 0 or (rank is not None and axis == -rank):
        raise Unliftable("it joins along the batch axis")
    fields = {} if axis == -1 or (rank is not None and axis == rank - 1) else {"axis": axis}
    return Lifted("concat", fields, {}, tuple(node.inputs), (node,), node.outputs[0])


register(
    LayerType(
        "add",
        Add,
        _chain("Add"),
        add_bound,
        lambda n: " + ".join(n.inputs),
        Add.__doc__ or "",
        ADD_EXAMPLES,
        lift=_lift_elementwise(("Add", "Sum"), "add"),
        vjp=add_vjp,
        multiply_adds=no_multiply_adds,
        kernel=add,
        prepare=no_arguments,
    )
)
register(
    LayerType(
        "multiply",
        Multiply,
        _chain("Mul"),
        multiply_bound,
        lambda n: " ⊙ ".join(n.inputs),
        Multiply.__doc__ or "",
        MULTIPLY_EXAMPLES,
        lift=_lift_elementwise(("Mul",), "multiply"),
        vjp=multiply_vjp,
        multiply_adds=no_multiply_adds,
        kernel=multiply,
        prepare=no_arguments,
    )
)
register(
    LayerType(
        "concat",
        Concat,
        concat_lowering,
        concat_bound,
        concat_formula,
        Concat.__doc__ or "",
        CONCAT_EXAMPLES,
        lift=concat_lift,
        vjp=concat_vjp,
        multiply_adds=no_multiply_adds,
        kernel=concat,
        prepare=concat_prepare,
    )
)
