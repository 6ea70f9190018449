"""What every layer type provides, and the registry that holds them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..activations import Precision
from ..affine import Affine
from ..fields import Name, StrictModel
from ..ir import LayerPlan, Node, Source
from ..lifting import Lift
from ..lowering import OpBuilder

Kernel = Callable[..., np.ndarray]
# A node's prepared arguments: what its type's kernel takes after the input arrays, by parameter name, in the
# kernel's order. Values are arrays (parameters as the kernel reads them), numbers, strings, tuples, None,
# functions (an activation, or a functools.partial of one with its parameters) and frozen dataclasses (a Window):
# what `nnspec compile --emit numpy` can write into a generated module (arrays into its .npz).
Arguments = dict[str, Any]
# (node with float64 parameters, its inputs, its output, dL/d(output)) -> (dL/d(each input), dL/d(each learned
# parameter)); an input that carries no gradient (integer ids) gets None. Arrays are float64, batch first.
Gradients = tuple[list[np.ndarray | None], dict[str, np.ndarray]]
Vjp = Callable[[Node, Sequence[np.ndarray], np.ndarray, np.ndarray], Gradients]


class LayerSpec(StrictModel):
    """Fields shared by every layer: its type tag, an optional name, and optional explicit sources."""

    type: str
    name: Name | None = None
    inputs: list[Name] | None = None

    # How many sources the layer reads: (fewest, most), None for no upper limit (merges take two or more).
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    integer_inputs: ClassVar[bool] = False  # reads integer sources (ids), and only those

    def plan(self, sources: Sequence[Source]) -> LayerPlan:
        """The output shape and the parameters this layer needs, given its sources' shapes."""
        raise NotImplementedError


@dataclass(frozen=True)
class LayerType:
    """One layer type: every part the rest of nnspec asks of it, in one place.

    Registry-wide tests (tests/test_layers.py) run every part on every `examples` spec: it validates,
    both forms agree within the derived bound (end to end and layer by layer), the ONNX model passes
    `check_model(full_check=True)`, and changing one of the layer's parameters in the ONNX model fails
    the check. tests/test_emit.py writes every example as a generated NumPy module (its kernel's source copied,
    its prepared arguments as literals and arrays) that must give the evaluator's results bit for bit.
    """

    name: str
    spec: type[LayerSpec]
    # (node, builder, input tensor names, output name) -> the tensor holding the output; parameters become
    # initializers named `<layer>.<parameter>` (e.g. `c1.weights`), so that reports and tools can find them
    onnx: Callable[[Node, OpBuilder, Sequence[str], str], str]
    # (float64 node, its inputs as affine error forms, the arithmetic) -> its output's affine form
    bound: Callable[[Node, Sequence[Affine], Precision], Affine]
    # what the layer computes, in the seed's notation, for people reviewing a spec: `tanh(W x + b)`
    formula: Callable[[Node], str]
    doc: str = ""
    # Small whole specs (JSON objects) that use this type, for the registry-wide tests and the docs.
    examples: tuple[dict[str, Any], ...] = ()
    # Checks of a node's loaded parameters (numbers from files are seen only once loaded): raises SpecError.
    loaded: Callable[[Node], None] | None = None
    # Recognises the type's ONNX pattern (its own lowering, and other exporters' idioms for the same layer)
    # at a node, for `nnspec import`: see nnspec.lifting. None: the importer never produces this type.
    lift: Lift | None = None
    # The vector-Jacobian product that `nnspec train` backpropagates through (see nnspec.train). None: training
    # refuses a network that needs a gradient through this type, naming the layer.
    vjp: Vjp | None = None
    # Parameters that training leaves as the spec gives them (the vjp returns no gradient for them).
    frozen: tuple[str, ...] = ()
    # Multiply-adds per sample, for `nnspec show`: one per weight use (dense, conv) or per scaled element (norms);
    # elementwise functions, lookups, pools, merges and reshapes do none (`no_multiply_adds`). Every type says.
    multiply_adds: Callable[[Node], int] = field(kw_only=True)
    # The NumPy kernel: a module-level function, (input arrays..., prepared arguments...) -> the output, batch
    # first; a merge takes its inputs as *xs and its arguments by keyword. No closure and no lambda, so that
    # `nnspec compile --emit numpy` copies its source (with the helpers it calls) into the generated module,
    # which then runs the very code the evaluator runs (nnspec.emit).
    kernel: Kernel = field(kw_only=True)
    # node -> the kernel's arguments after its inputs (see Arguments), worked out once per node
    prepare: Callable[[Node], Arguments] = field(kw_only=True)
    # node -> its kernel with those arguments bound, built once per node and called per batch by the evaluator:
    # `kernel` bound to `prepare(node)` unless given (a test gives one to fault the evaluator alone).
    numpy: Callable[[Node], Kernel] = field(default=None, kw_only=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.numpy is None or isinstance(self.numpy, Bound):  # derived: rebuilt from this entry's own parts
            object.__setattr__(self, "numpy", Bound(self.kernel, self.prepare))


@functools.cache
def takes_varargs(kernel: Kernel) -> bool:
    """Whether the kernel takes its inputs as *xs (a merge), its prepared arguments then by keyword."""
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in inspect.signature(kernel).parameters.values())


def bind(kernel: Kernel, arguments: Arguments) -> Kernel:
    """The kernel with a node's prepared arguments bound, as the evaluator calls it: x -> kernel(x, *arguments),
    or for a merge *xs -> kernel(*xs, **arguments)."""
    if not arguments:
        return kernel
    if takes_varargs(kernel):
        return functools.partial(kernel, **arguments)
    values = tuple(arguments.values())
    return lambda x: kernel(x, *values)


@dataclass(frozen=True)
class Bound:
    """node -> `kernel` bound to `prepare(node)`: a layer type's `numpy` part, derived from its kernel."""

    kernel: Kernel
    prepare: Callable[[Node], Arguments]

    def __call__(self, node: Node) -> Kernel:
        return bind(self.kernel, self.prepare(node))


def no_multiply_adds(node: Node) -> int:
    """A layer whose work is elementwise functions, lookups, comparisons, sums or moves: no multiply-adds."""
    return 0


def no_arguments(node: Node) -> Arguments:
    """A kernel that takes nothing but its inputs."""
    return {}


LAYERS: dict[str, LayerType] = {}


def register(entry: LayerType) -> LayerType:
    """Add a layer type; refuses a duplicate tag."""
    if entry.name in LAYERS:
        raise ValueError(f"layer type {entry.name!r} is already registered")
    LAYERS[entry.name] = entry
    return entry
