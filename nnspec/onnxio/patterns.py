"""Activation patterns: each activation's own ONNX lowering, traced, is the pattern that recognises it.

An activation's lowering (nnspec.activations) is run on a recording builder instead of the exporter, with
distinct sentinel values for its numeric parameters; the recorded nodes are the pattern, and a sentinel
matches any scalar constant (or float attribute) there, binding the parameter. So the importer inverts
exactly what the exporter writes, at the model's opset, in float32 and float64 forms alike. The idioms
other exporters write for the same functions (PyTorch's GELU as Div/Erf/Add/Mul, ...) are a few more
lowerings in FOREIGN, traced the same way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import REGISTRY, Activation, ActivationType, Choice
from ..lifting import ACTIVATION_OP, OnnxNode, computed

Lowering = Callable[..., str]
COMMUTATIVE = frozenset({"Add", "Mul", "Sum", "Max", "Min", "Equal"})
# Exactly representable in float32 and in no lowering's constants: a parameter's place in a pattern.
_SENTINELS = tuple(4096.5 + 2 * k for k in range(8))


class _Trace:
    """An OpBuilder that records the nodes a lowering emits (names `%k`) and its constants (`$k`)."""

    def __init__(self, opset: int, dtype: np.dtype) -> None:
        self.opset = opset
        self.dtype = dtype
        self.ops: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {}
        self.consts: dict[str, np.ndarray] = {}

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        name = f"%{len(self.ops)}"
        self.ops[name] = (op_type, tuple(inputs), attrs)
        return name

    def const(self, value: float | np.ndarray, hint: str = "c") -> str:
        name = f"${len(self.consts)}"
        self.consts[name] = np.asarray(value, dtype=self.dtype)
        return name


@dataclass(frozen=True)
class Pattern:
    """One traced form of one activation; `free` maps each sentinel to the parameter it stands for."""

    activation: ActivationType
    fixed: Mapping[str, Any]
    lowering: Lowering
    trace: _Trace
    root: str
    free: Mapping[float, str]

    @property
    def size(self) -> int:
        return len(self.trace.ops)


# PyTorch's exporter (torch/onnx/symbolic_opset9.py and later) writes these as several nodes.
def _gelu_erf_torch(g: Any, x: str, out: str | None) -> str:
    erf = g.op("Erf", [g.op("Div", [x, g.const(math.sqrt(2))])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, g.const(1.0)])]), g.const(0.5)], out)


def _gelu_tanh_torch(g: Any, x: str, out: str | None) -> str:
    cube = g.op("Mul", [x, g.op("Mul", [x, x])])
    inner = g.op("Mul", [g.const(math.sqrt(2 / math.pi)), g.op("Add", [x, g.op("Mul", [g.const(0.044715), cube])])])
    return g.op("Mul", [g.const(0.5), g.op("Mul", [x, g.op("Add", [g.const(1.0), g.op("Tanh", [inner])])])], out)


def _softplus_thresholded(g: Any, x: str, out: str | None) -> str:
    # PyTorch's softplus(beta=1, threshold=20): n above 20, where log(1 + exp(n)) rounds to n in float32
    return g.op("Where", [g.op("Greater", [x, g.const(20.0)]), x, g.op("Softplus", [x])], out)


def _gelu_tanh_pow(g: Any, x: str, out: str | None) -> str:
    cube = g.op("Pow", [x, g.const(3.0)])
    inner = g.op("Mul", [g.const(math.sqrt(2 / math.pi)), g.op("Add", [x, g.op("Mul", [g.const(0.044715), cube])])])
    half_x = g.op("Mul", [g.const(0.5), x])
    return g.op("Mul", [half_x, g.op("Add", [g.const(1.0), g.op("Tanh", [inner])])], out)


def _softsign_composed(g: Any, x: str, out: str | None) -> str:
    return g.op("Div", [x, g.op("Add", [g.op("Abs", [x]), g.const(1.0)])], out)


def _silu_torch(g: Any, x: str, out: str | None) -> str:
    return g.op("Mul", [x, g.op("Sigmoid", [x])], out)


def _hard_swish_torch(g: Any, x: str, out: str | None) -> str:
    return g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)], out)


def _clip_between(low: float, high: float) -> Lowering:
    def lower(g: Any, x: str, out: str | None) -> str:
        return g.op("Clip", [x, g.const(low), g.const(high)], out)

    return lower


def _mish_composed(g: Any, x: str, out: str | None) -> str:
    return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])], out)


def _relu_as_max(g: Any, x: str, out: str | None) -> str:
    return g.op("Max", [x, g.const(0.0)], out)


# activation name -> (parameters fixed by the idiom, the idiom as a lowering)
FOREIGN: dict[str, tuple[tuple[Mapping[str, Any], Lowering], ...]] = {
    "gelu": (
        ({"approximate": "none"}, _gelu_erf_torch),
        ({"approximate": "tanh"}, _gelu_tanh_torch),
        ({"approximate": "tanh"}, _gelu_tanh_pow),
    ),
    "softplus": (({}, _softplus_thresholded),),
    "softsign": (({}, _softsign_composed),),
    "silu": (({}, _silu_torch),),
    "hard_swish": (({}, _hard_swish_torch),),
    "mish": (({}, _mish_composed),),
    "relu6": (({}, _clip_between(0.0, 6.0)),),
    "satlin": (({}, _clip_between(0.0, 1.0)),),
    "satlins": (({}, _clip_between(-1.0, 1.0)),),
    "relu": (({}, _relu_as_max),),
}


def _settings(entry: ActivationType) -> Iterator[tuple[dict[str, Any], dict[float, str]]]:
    """Every combination of choices, with each numeric parameter at a sentinel of its own."""
    numeric = [k for k, v in entry.params.items() if not isinstance(v, Choice)]
    choices = {k: v.values for k, v in entry.params.items() if isinstance(v, Choice)}
    free = {_SENTINELS[i]: k for i, k in enumerate(numeric)}
    for combo in itertools.product(*choices.values()):
        params = dict(zip(choices, combo, strict=True)) | {k: s for s, k in free.items()}
        yield params, free


def _trace(lowering: Lowering, opset: int, dtype: np.dtype, params: Mapping[str, Any]) -> tuple[_Trace, str] | None:
    g = _Trace(opset, dtype)
    try:
        root = lowering(g, "x", None, **params)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return (g, root) if root in g.ops else None  # an identity (linear) emits no node worth matching


def build_patterns(opset: int) -> dict[str, list[Pattern]]:
    """Every activation's patterns at this opset, float32 and float64 forms, by root op type, largest first."""
    found: dict[str, list[Pattern]] = {}
    for entry in REGISTRY.values():
        forms: list[tuple[Mapping[str, Any], Lowering, dict[str, Any], dict[float, str]]] = []
        for params, free in _settings(entry):
            forms.append(({}, entry.onnx, params, free))
        for fixed, lowering in FOREIGN.get(entry.name, ()):
            forms.append((fixed, lambda g, x, out, _low=lowering, **_: _low(g, x, out), dict(fixed), {}))
        for fixed, lowering, params, free in forms:
            for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
                traced = _trace(lowering, opset, dtype, params)
                if traced is None:
                    continue
                g, root = traced
                pattern = Pattern(
                    entry,
                    {**fixed, **{k: v for k, v in params.items() if k not in free.values()}},
                    lowering,
                    g,
                    root,
                    free,
                )
                found.setdefault(g.ops[root][0], []).append(pattern)
    for patterns in found.values():
        patterns.sort(key=lambda p: -p.size)
    return found


@dataclass
class _State:
    x: str | None
    params: dict[str, float]
    nodes: tuple[OnnxNode, ...]


def _same_attr(want: Any, have: Any, free: Mapping[float, str], state: _State) -> bool:
    if isinstance(want, float) and want in free:
        return _bind(free[want], float(have), state) if isinstance(have, (int, float)) else False
    if isinstance(want, float) or isinstance(have, float):
        return isinstance(have, (int, float)) and np.float32(want) == np.float32(have)
    if isinstance(want, (list, tuple)):
        return list(want) == list(have) if isinstance(have, (list, tuple)) else False
    return want == have


def _bind(param: str, value: float, state: _State) -> bool:
    if param in state.params:
        return state.params[param] == value
    state.params[param] = value
    return True


def _match_value(p: Pattern, want: str, have: str, view: Any, state: _State) -> _State | None:
    if want == "x":
        if state.x is None:
            if not computed(view, [have]):
                return None
            return _State(have, dict(state.params), state.nodes)
        return state if state.x == have else None
    if want in p.trace.consts:
        array = view.const(have)
        if array is None or array.size != 1 or not np.issubdtype(array.dtype, np.floating):
            return None
        expected = p.trace.consts[want]
        value = float(array.reshape(()))
        sentinel = float(expected.reshape(()))
        if sentinel in p.free:
            new = _State(state.x, dict(state.params), state.nodes)
            return new if _bind(p.free[sentinel], value, new) else None
        return state if np.asarray(expected, dtype=array.dtype).reshape(()) == array.reshape(()) else None
    return _match_node(p, want, have, view, state)


def _match_node(p: Pattern, want: str, have: str, view: Any, state: _State) -> _State | None:
    node = view.producer(have)
    op_type, inputs, attrs = p.trace.ops[want]
    if node is None or node.op != op_type or len(node.inputs) != len(inputs) or len(node.outputs) != 1:
        return None
    if any(n is node for n in state.nodes):
        return state
    state = _State(state.x, dict(state.params), (*state.nodes, node))
    for key, value in attrs.items():
        if key not in node.attrs or not _same_attr(value, node.attrs[key], p.free, state):
            return None
    orders = [inputs] if op_type not in COMMUTATIVE or len(inputs) != 2 else [inputs, inputs[::-1]]
    for order in orders:
        attempt: _State | None = state
        for w, h in zip(order, node.inputs, strict=True):
            attempt = _match_value(p, w, h, view, attempt) if attempt is not None else None
        if attempt is not None:
            return attempt
    return None


def _tidy(value: float, dtype: np.dtype, default: Any = None) -> float:
    """A parameter as the activation's default where it is that number in the model (float attributes are
    float32), else, in float32 models, as its shortest decimal (0.2, not 0.20000000298)."""
    if (
        isinstance(default, float)
        and np.float32(default) == np.float32(value)
        and (dtype == np.float32 or default == value or np.float32(default) == value)
    ):
        return default
    return float(str(np.float32(value))) if dtype == np.float32 else float(value)


def match_at(patterns: Sequence[Pattern], end: OnnxNode, view: Any) -> tuple[Activation, OnnxNode] | None:
    """The largest activation pattern that ends at `end`: the activation and the node that replaces it."""
    for p in patterns:
        state = _match_node(p, p.root, end.outputs[0], view, _State(None, {}, ()))
        if state is None or state.x is None:
            continue
        inner = {o for n in state.nodes if n is not end for o in n.outputs}
        if any(view.consumers_outside(value, state.nodes) for value in inner):
            continue
        defaults = p.activation.defaults()
        params = {**p.fixed, **{k: _tidy(v, view.dtype, defaults.get(k)) for k, v in state.params.items()}}
        activation = Activation(p.activation, {k: params[k] for k in p.activation.params})
        if not _confirmed(p, activation, state, view):
            continue
        node = OnnxNode(
            ACTIVATION_OP, end.name, (state.x,), end.outputs, {"activation": activation, "nodes": state.nodes}
        )
        return activation, node
    return None


def _confirmed(p: Pattern, activation: Activation, state: _State, view: Any) -> bool:
    """The lowering traced with the bound parameters matches the same nodes exactly (no sentinel left)."""
    if not p.free:
        return True
    params = {k: v for k, v in activation.params.items()}
    traced = _trace(p.lowering, p.trace.opset, p.trace.dtype, params)
    if traced is None:
        return False
    g, root = traced
    exact = Pattern(p.activation, p.fixed, p.lowering, g, root, {})
    again = _match_node(exact, root, state.nodes[0].outputs[0], view, _State(None, {}, ()))
    return again is not None and again.x == state.x
