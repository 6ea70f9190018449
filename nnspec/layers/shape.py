"""Moves of values without arithmetic: `flatten`, `reshape`, `transpose`, and `dropout` (an identity at inference).

Each sample moves on its own: the batch axis (axis 0) never moves or merges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..activations import Precision
from ..affine import Affine, elementwise, unfold
from ..errors import SpecError
from ..fields import spec_error
from ..ir import LayerPlan, Node, Source
from ..lifting import Lifted, ModelView, OnnxNode, Unliftable, computed, int_list
from ..lowering import OpBuilder
from .base import Arguments, Gradients, LayerSpec, LayerType, no_arguments, no_multiply_adds, register


def _dims(shape: Sequence[int]) -> str:
    """`2 x 3 x 4 = 24`, or `4` for a single size."""
    return f"{' x '.join(map(str, shape))} = {math.prod(shape)}" if len(shape) > 1 else str(math.prod(shape))


def _reshaped(node: Node, inputs: Sequence[Affine]) -> tuple[np.ndarray, np.ndarray]:
    """The input's value and error bound as [N, *node.shape] arrays (row-major, as ONNX and NumPy)."""
    value, error = unfold(inputs[0], node.input_shapes[0])
    shape = (value.shape[0], *node.shape)
    return value.reshape(shape), error.reshape(shape)


def _move_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Exact: the error moves with its value. Forms stay as they are when the last axis does."""
    if node.shape[-1] == node.input_shapes[0][-1]:  # the same [rows, last] layout: keep the cancellation
        return inputs[0]
    return elementwise(*_reshaped(node, inputs))


def reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each sample to `shape`, row-major; the batch axis stays."""
    return x.reshape((x.shape[0], *shape))


def _reshape_prepare(node: Node) -> Arguments:
    return {"shape": tuple(node.shape)}


def _reshape_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """A move of values moves their gradients back: dL/d(output) in the input's shape (row-major both ways)."""
    return [upstream.reshape(inputs[0].shape)], {}


# --- flatten -------------------------------------------------------------------------------------


class Flatten(LayerSpec):
    """[N, d1, d2, ...] to [N, d1 * d2 * ...], row-major (ONNX Flatten with axis 1, torch.flatten(x, 1))."""

    type: Literal["flatten"]

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        return LayerPlan(shape=(math.prod(src.shape),))


def flatten_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    return g.op("Flatten", [inputs[0]], out, axis=1)


# --- reshape -------------------------------------------------------------------------------------


class Reshape(LayerSpec):
    """Each sample to `shape` (the batch excluded; one size may be -1, inferred), row-major."""

    type: Literal["reshape"]
    shape: list[int] = Field(min_length=1, description="per-sample sizes, without the batch; one may be -1")

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        size, wanted = math.prod(src.shape), self.shape
        for j, d in enumerate(wanted):
            if d == 0 or d < -1:
                raise SpecError(f"expected a positive size or -1 (inferred), found {d}", ("shape", j))
        if wanted.count(-1) > 1:
            raise SpecError(
                f"expected at most one -1 (inferred size), found {wanted.count(-1)} in {wanted}", ("shape",)
            )
        known = math.prod(d for d in wanted if d != -1)
        given = f"the input {src.name!r} {list(src.shape)}: {_dims(src.shape)}"
        if -1 in wanted:
            if size % known:
                raise SpecError(
                    f"expected sizes whose product divides the input's size ({given}), found {wanted}, "
                    f"whose other sizes multiply to {_dims([d for d in wanted if d != -1])}",
                    ("shape",),
                )
            wanted = [size // known if d == -1 else d for d in wanted]
        elif known != size:
            raise SpecError(
                f"expected sizes that multiply to the input's size ({given}), found {wanted}: {_dims(wanted)}",
                ("shape",),
            )
        return LayerPlan(shape=tuple(wanted), attrs={"shape": wanted})


def reshape_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    # NOTE: 0 copies the input's batch size (allowzero = 0), so the model keeps a symbolic batch.
    shape = g.op("Constant", [], value_ints=[0, *node.shape])
    return g.op("Reshape", [inputs[0], shape], out)


# --- transpose -----------------------------------------------------------------------------------


class Transpose(LayerSpec):
    """Permutes the axes of each sample: `perm` lists every axis, the batch (axis 0) first and in place."""

    type: Literal["transpose"]
    perm: list[int] = Field(description="a permutation of the axes 0..rank-1, batch included; perm[0] must be 0")

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        rank = len(src.shape) + 1
        value = f"[N, {', '.join(map(str, src.shape))}]"
        perm = [p % rank if -rank <= p < rank else p for p in self.perm]
        if len(perm) != rank or sorted(perm) != list(range(rank)):
            raise SpecError(
                f"expected a permutation of the axes 0 to {rank - 1} of {src.describe()}'s value {value} "
                f"(the batch is axis 0), found {self.perm}",
                ("perm",),
            )
        if perm[0] != 0:
            raise SpecError(
                f"expected 0 first (the batch, which no layer may move), found {self.perm[0]}, which moves "
                f"axis {perm[0]} of {value} to the batch's place",
                ("perm", 0),
            )
        return LayerPlan(shape=tuple(src.shape[p - 1] for p in perm[1:]), attrs={"perm": perm})


def transpose(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(perm))


def transpose_prepare(node: Node) -> Arguments:
    return {"perm": tuple(node.attrs["perm"])}


def transpose_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """The inverse permutation carries dL/d(output) back to the input's axes."""
    return [np.ascontiguousarray(upstream.transpose(np.argsort(node.attrs["perm"])))], {}


def transpose_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    return g.op("Transpose", [inputs[0]], out, perm=node.attrs["perm"])


def transpose_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Exact: the error moves with its value."""
    perm = node.attrs["perm"]
    if perm == sorted(perm):
        return inputs[0]
    value, error = unfold(inputs[0], node.input_shapes[0])
    return elementwise(value.transpose(perm), error.transpose(perm))


# --- dropout -------------------------------------------------------------------------------------


class Dropout(LayerSpec):
    """The identity at inference; `rate` (the share dropped in training) is kept so that specs from training load."""

    type: Literal["dropout"]
    rate: float = Field(description="the share of units dropped in training, in [0, 1); unused at inference")

    @field_validator("rate")
    @classmethod
    def _in_range(cls, rate: float) -> float:
        if not 0 <= rate < 1:
            raise spec_error(f"expected a rate in [0, 1) (the share of units dropped in training), found {rate:g}")
        return rate

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        (src,) = sources
        return LayerPlan(shape=src.shape, attrs={"rate": self.rate})


def dropout(x: np.ndarray) -> np.ndarray:
    """The identity: nothing is dropped at inference."""
    return x


def dropout_lowering(node: Node, g: OpBuilder, inputs: Sequence[str], out: str) -> str:
    return inputs[0]  # no node: later layers read the source's tensor (the exporter resolves the alias)


def dropout_vjp(node: Node, inputs: Sequence[np.ndarray], output: np.ndarray, upstream: np.ndarray) -> Gradients:
    """The identity (as at inference: nnspec trains the network the spec describes, which drops nothing)."""
    return [upstream], {}


def dropout_bound(node: Node, inputs: Sequence[Affine], precision: Precision) -> Affine:
    """Exact: the input's form, unchanged."""
    return inputs[0]


# --- examples ------------------------------------------------------------------------------------


def _dense(name: str, units: int, activation: str, seed: int) -> dict[str, Any]:
    return {
        "type": "dense",
        "name": name,
        "units": units,
        "activation": activation,
        "weights": {"init": "glorot_uniform", "seed": seed},
        "bias": {"init": "uniform", "low": -0.5, "high": 0.5, "seed": seed + 100},
    }


FLATTEN_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "flatten_rows",
        "inputs": [{"name": "x", "shape": [3, 4]}],
        "layers": [
            _dense("rows", 2, "tanh", 1),
            {"type": "flatten", "name": "flat"},
            _dense("out", 2, "linear", 2),
        ],
    },
)

RESHAPE_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "reshape_to_rows",
        "inputs": [{"name": "x", "shape": [6]}],
        "layers": [
            {"type": "reshape", "name": "grid", "shape": [2, 3]},
            _dense("rows", 4, "relu", 3),
            {"type": "reshape", "name": "flat", "shape": [-1]},
            _dense("out", 2, "linear", 4),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "reshape_leading",
        "inputs": [{"name": "x", "shape": [6, 2]}],
        "layers": [
            {"type": "reshape", "name": "split", "shape": [2, -1, 2]},
            _dense("rows", 3, "tanh", 5),
        ],
    },
)

TRANSPOSE_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "transpose_features_last",
        "inputs": [{"name": "x", "shape": [3, 4]}],
        "layers": [
            {"type": "transpose", "name": "swapped", "perm": [0, 2, 1]},
            _dense("rows", 2, "sigmoid", 6),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "transpose_three_axes",
        "inputs": [{"name": "x", "shape": [2, 3, 4]}],
        "layers": [
            _dense("rows", 3, "tanh", 7),
            {"type": "transpose", "name": "moved", "perm": [0, -1, 1, 2]},
            _dense("out", 2, "linear", 8),
        ],
    },
)

DROPOUT_EXAMPLES = (
    {
        "format": "nnspec/1",
        "name": "dropout_between",
        "description": "Dropout as written in training code: the identity at inference.",
        "inputs": [{"name": "x", "shape": [4]}],
        "layers": [
            _dense("hidden", 5, "relu", 9),
            {"type": "dropout", "name": "drop", "rate": 0.5},
            _dense("out", 2, "linear", 10),
        ],
    },
    {
        "format": "nnspec/1",
        "name": "dropout_last",
        "inputs": [{"name": "x", "shape": [3]}],
        "layers": [_dense("hidden", 2, "tanh", 11), {"type": "dropout", "name": "drop", "rate": 0.1}],
    },
)


def flatten_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Flatten(axis=1): everything after the batch axis in one."""
    if node.op != "Flatten" or not computed(view, node.inputs):
        return None
    if int(node.attrs.get("axis", 1)) != 1:
        raise Unliftable(f"axis={node.attrs['axis']} (the format flattens everything after the batch axis)")
    return Lifted("flatten", {}, {}, node.inputs, (node,), node.outputs[0])


def reshape_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Reshape to a constant shape that keeps the batch axis (0, -1 or the batch size the model fixes);
    a Squeeze or Unsqueeze of known axes is a reshape as well."""
    if node.op not in ("Reshape", "Squeeze", "Unsqueeze") or not computed(view, node.inputs[:1]):
        return None
    before, after = view.shape(node.inputs[0]), view.shape(node.outputs[0])
    if node.op == "Reshape":
        target = view.const(node.inputs[1])
        if target is None:
            raise Unliftable("its shape is computed, not a constant")
        dims = int_list(target.reshape(-1))
        if node.attrs.get("allowzero", 0) and 0 in dims:
            raise Unliftable(f"allowzero=1 with a 0 in shape {dims} (an empty axis)")
        if not dims or dims[0] not in (0, -1, *(before[:1] if before else [])):
            raise Unliftable(f"shape {dims} does not keep the batch axis first")
        per_sample = [before[k] if d == 0 and before and k < len(before) else d for k, d in enumerate(dims)][1:]
        if any(d is None for d in per_sample) or not per_sample:
            raise Unliftable(f"shape {dims}: its sizes depend on the input's, which are unknown here")
        if dims[0] == -1 and -1 in per_sample:
            raise Unliftable(f"shape {dims} leaves two sizes to infer")
        shape = per_sample
    else:
        if after is None or any(d is None for d in after[1:]):
            raise Unliftable("the shapes around it are unknown")
        axes = [a % len(after if node.op == "Unsqueeze" else before or after) for a in int_list(node.attrs["axes"])]
        if 0 in axes:
            raise Unliftable("it changes the batch axis")
        shape = list(after[1:])
    return Lifted("reshape", {"shape": shape}, {}, node.inputs[:1], (node,), node.outputs[0])


def transpose_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Transpose that keeps the batch axis first."""
    if node.op != "Transpose" or not computed(view, node.inputs):
        return None
    perm = int_list(node.attrs.get("perm") or [])
    if not perm:
        rank = len(view.shape(node.inputs[0]) or ())
        perm = list(range(rank))[::-1]
    if perm[0] != 0:
        raise Unliftable(f"perm {perm} moves the batch axis")
    return Lifted("transpose", {"perm": perm}, {}, node.inputs, (node,), node.outputs[0])


def dropout_lift(node: OnnxNode, view: ModelView) -> Lifted | None:
    """Dropout at inference: an identity that records its rate."""
    if node.op != "Dropout" or not computed(view, node.inputs[:1]):
        return None
    training = view.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    if len(node.inputs) > 2 and node.inputs[2] and (training is None or bool(training.reshape(()))):
        raise Unliftable("training mode (it drops values); the format holds inference only")
    if len([o for o in node.outputs if o]) > 1 and view.consumers(node.outputs[1]):
        raise Unliftable("its mask output is read")
    ratio = view.const(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    rate = float(ratio.reshape(())) if ratio is not None else float(node.attrs.get("ratio", 0.5))
    return Lifted("dropout", {"rate": float(str(np.float32(rate)))}, {}, node.inputs[:1], (node,), node.outputs[0])


register(
    LayerType(
        "flatten",
        Flatten,
        flatten_lowering,
        _move_bound,
        lambda n: f"flatten({n.inputs[0]})",
        Flatten.__doc__ or "",
        FLATTEN_EXAMPLES,
        lift=flatten_lift,
        vjp=_reshape_vjp,
        multiply_adds=no_multiply_adds,
        kernel=reshape,
        prepare=_reshape_prepare,
    )
)
register(
    LayerType(
        "reshape",
        Reshape,
        reshape_lowering,
        _move_bound,
        lambda n: f"reshape({n.inputs[0]}; {list(n.shape)})",
        Reshape.__doc__ or "",
        RESHAPE_EXAMPLES,
        lift=reshape_lift,
        vjp=_reshape_vjp,
        multiply_adds=no_multiply_adds,
        kernel=reshape,
        prepare=_reshape_prepare,
    )
)
register(
    LayerType(
        "transpose",
        Transpose,
        transpose_lowering,
        transpose_bound,
        lambda n: f"transpose({n.inputs[0]}; {n.attrs['perm']})",
        Transpose.__doc__ or "",
        TRANSPOSE_EXAMPLES,
        lift=transpose_lift,
        vjp=transpose_vjp,
        multiply_adds=no_multiply_adds,
        kernel=transpose,
        prepare=transpose_prepare,
    )
)
register(
    LayerType(
        "dropout",
        Dropout,
        dropout_lowering,
        dropout_bound,
        lambda n: f"dropout({n.inputs[0]}; {n.attrs['rate']:g}, identity at inference)",
        Dropout.__doc__ or "",
        DROPOUT_EXAMPLES,
        lift=dropout_lift,
        vjp=dropout_vjp,
        multiply_adds=no_multiply_adds,
        kernel=dropout,
        prepare=no_arguments,
    )
)
