"""Random valid networks and injected faults: the measurements behind the derived tolerance.

`random_spec(rng)` draws a valid spec, half of them chains of dense and activation layers, half graph
networks of every other layer type; `inject(graph, kind, rng)` returns the resolved network with
one fault of `kind` (see KINDS), or None when this network offers no place for it. A faulty graph is
exported with nnspec.onnxio.export.to_onnx and checked against the original spec, as a broken exporter
or a hand-edited model would be. `effect` tells a fault that changes the outputs on the check's inputs
from an equivalent mutant, which no correct checker can catch on those inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydantic import ValidationError

from .activations import REGISTRY, Activation, Choice, Precision
from .bounds import Trace, propagate
from .errors import NNSpecError
from .inputs import Case
from .ir import Graph, Node, Shape, Source
from .layers import LAYERS
from .layers.norm import stored_epsilon_error

# The first five are the original measurement's (their seeds and draws are unchanged); the last four
# reach the layer types beyond dense and activation.
KINDS = ("weight", "transpose", "activation", "bias", "outputs", "param", "attribute", "wiring", "flip")

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


WEIGHT_KINDS = ("inline", "inline", "normal", "uniform", "glorot_uniform", "he_normal", "constant")


def _weights(rng: np.random.Generator, shape: tuple[int, ...], kinds: Sequence[str] = WEIGHT_KINDS) -> Any:
    """A weight source of `shape`: inline numbers or an initializer, scale 0.05 to 3."""
    scale = _log_uniform(rng, *WEIGHT_SCALES)
    kind = rng.choice(list(kinds))
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
    """A valid spec: a chain of dense and activation layers (`_chain_spec`), or, for GRAPH_SHARE of the
    seeds, a graph network of the other layer types (`_graph_spec`, model name "random_graph").

    Which one is decided on a stream jumped far ahead of `rng`'s own (PCG64's `jumped`), which leaves
    `rng` where it was: a seed that draws a chain draws the very chain it drew before graph networks
    existed. A graph network is drawn from that jumped stream; `rng` then moves one step, so that a loop
    over one generator never draws the same network twice. The same generator state gives the same spec
    (for a given NumPy's Generator streams).
    """
    side = _side_stream(rng)
    if side.random() >= GRAPH_SHARE:
        return _chain_spec(rng)
    rng.random()
    return _graph_spec(side)


def _side_stream(rng: np.random.Generator) -> np.random.Generator:
    """A generator independent of `rng`'s stream, derived from its state without advancing it."""
    jumped = getattr(rng.bit_generator, "jumped", None)
    if jumped is None:  # a bit generator without jumps (SFC64): derive a seed, advancing rng once
        return np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    return np.random.Generator(jumped())


def _chain_spec(rng: np.random.Generator) -> dict[str, Any]:
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


# --- random graph networks --------------------------------------------------------------------------

GRAPH_SHARE = 0.5  # of random_spec's networks
FAMILIES = ("image", "signal", "features", "tokens")
FAMILY_SHARES = (0.3, 0.25, 0.25, 0.2)
# onnxruntime's CPU provider has no float64 kernel for Conv, AveragePool, GlobalAveragePool or
# GlobalMaxPool (a float64 model with one cannot be loaded): float64 networks never hold these types.
FLOAT32_ONLY = frozenset({"conv1d", "conv2d", "avg_pool1d", "avg_pool2d", "global_avg_pool", "global_max_pool"})
GRAPH_DEPTH = 6  # layers drawn before the head (a merge adds its branch too)
GRAPH_UNITS = 16  # the widest dense layer
MAX_FILTERS = 6
MAX_VALUE = 512  # numbers per sample in any value: keeps a check of a graph network near 20-30 ms
INLINE_LIMIT = 64  # a parameter with more numbers comes from an initializer
ATTEMPTS = 20  # draws of one layer's fields, each checked by its type's own plan, before a step gives up
EPSILONS = (1e-5, 1e-3, 0.1, 1e-8)  # PyTorch's and Keras's defaults, a large one and a tiny one
SHORT = {
    "conv1d": "conv",
    "conv2d": "conv",
    "max_pool1d": "maxpool",
    "max_pool2d": "maxpool",
    "avg_pool1d": "avgpool",
    "avg_pool2d": "avgpool",
    "global_avg_pool": "gap",
    "global_max_pool": "gmp",
    "batch_norm": "bn",
    "layer_norm": "ln",
    "embedding": "embed",
    "add": "add",
    "multiply": "mul",
    "concat": "cat",
    "flatten": "flat",
    "reshape": "reshape",
    "transpose": "perm",
    "dropout": "drop",
    "dense": "dense",
    "activation": "act",
}

Draw = Callable[[Shape], Any]  # a parameter's source, drawn for the shape its layer's plan gives
Fields = tuple[dict[str, Any], dict[str, Draw]]  # a layer's fields, and how to draw each of its parameters


def _tensor(rng: np.random.Generator, shape: Shape) -> Any:
    """A weight source of any shape, as `_weights` draws them; inline only up to INLINE_LIMIT numbers."""
    return _weights(rng, shape, WEIGHT_KINDS if math.prod(shape) <= INLINE_LIMIT else WEIGHT_KINDS[2:])


def _signed(rng: np.random.Generator, shape: Shape) -> Any:
    """A per-channel source of either sign (a mean, a scale, an offset), scale 0.05 to 3, or zeros."""
    scale = _log_uniform(rng, *WEIGHT_SCALES)
    kind = rng.choice(["inline", "inline", "normal", "zeros", "constant"])
    if kind == "inline":
        return rng.normal(0.0, scale, shape).tolist()
    if kind == "normal":
        return {"init": "normal", "seed": _seed(rng), "mean": 0.0, "std": scale}
    if kind == "zeros":
        return {"init": "zeros"}
    return {"init": "constant", "value": scale * float(rng.choice([-1.0, 1.0]))}


def _positive(rng: np.random.Generator, shape: Shape) -> Any:
    """Variances from 0.05 to 4 (inline, uniform, ones or a constant): variance + epsilon is never near 0."""
    kind = rng.choice(["inline", "inline", "uniform", "ones", "constant"])
    if kind == "inline":
        return rng.uniform(0.05, 4.0, shape).tolist()
    if kind == "uniform":
        low = float(rng.uniform(0.05, 1.0))
        return {"init": "uniform", "seed": _seed(rng), "low": low, "high": low + float(rng.uniform(0.0, 3.0))}
    if kind == "ones":
        return {"init": "ones"}
    return {"init": "constant", "value": float(rng.uniform(0.05, 4.0))}


def _per_axis(rng: np.random.Generator, rank: int, low: int, high: int) -> int | list[int]:
    """One integer in [low, high] for every spatial axis, or one per axis."""
    if rng.random() < 0.5:
        return int(rng.integers(low, high + 1))
    return [int(v) for v in rng.integers(low, high + 1, rank)]


def _padding(rng: np.random.Generator, rank: int, most: int) -> str | int | list[int] | None:
    """None (the default, "valid"), a name, one number, one per axis, or the begins then the ends."""
    kind = rng.choice(["default", "valid", "same", "same", "number", "per_axis", "pads"])
    if kind == "default":
        return None
    if kind in ("valid", "same"):
        return str(kind)
    if kind == "number":
        return int(rng.integers(0, most + 1))
    return [int(v) for v in rng.integers(0, most + 1, rank if kind == "per_axis" else 2 * rank)]


def _conv(rng: np.random.Generator, shape: Shape, filters: int | None = None, same: bool = False) -> Fields:
    """conv1d or conv2d over [C, *spatial]: random kernel, strides, dilation, padding and groups. With
    `same` (padding "same", stride 1) the spatial shape is kept, for a branch to merge."""
    channels, rank = shape[0], len(shape) - 1
    divisors = [g for g in range(1, channels + 1) if channels % g == 0 and (filters is None or filters % g == 0)]
    groups = 1 if rng.random() < 0.6 else int(rng.choice(divisors))
    if filters is None:
        filters = groups * int(rng.integers(1, max(1, MAX_FILTERS // groups) + 1))
    layer: dict[str, Any] = {"type": f"conv{rank}d", "filters": filters, "kernel_size": _per_axis(rng, rank, 1, 4)}
    if groups > 1:
        layer["groups"] = groups
    if not same and rng.random() < 0.4:
        layer["strides"] = _per_axis(rng, rank, 1, 3)
    if rng.random() < 0.3:
        layer["dilation"] = _per_axis(rng, rank, 1, 2)
    padding = "same" if same else _padding(rng, rank, 3)
    if padding is not None:
        layer["padding"] = padding
    if rng.random() < 0.7:
        layer["activation"] = _activation(rng)
    params: dict[str, Draw] = {"weights": lambda s: _tensor(rng, s)}
    if rng.random() < 0.6:
        params["bias"] = lambda s: _bias_source(rng, s[0])
    return layer, params


def _pool(rng: np.random.Generator, shape: Shape, kind: str) -> Fields:
    """A max or average pool over [C, *spatial]: random window, strides, padding, ceil_mode, count_include_pad."""
    rank = len(shape) - 1
    layer: dict[str, Any] = {"type": f"{kind}_pool{rank}d", "pool_size": _per_axis(rng, rank, 1, 3)}
    if rng.random() < 0.5:
        layer["strides"] = _per_axis(rng, rank, 1, 3)
    padding = _padding(rng, rank, 2)
    if padding is not None:
        layer["padding"] = padding
    if rng.random() < 0.3:
        layer["ceil_mode"] = True
    if kind == "avg" and rng.random() < 0.6:
        layer["count_include_pad"] = bool(rng.random() < 0.6)
    return layer, {}


def _dense(rng: np.random.Generator, shape: Shape, units: int | None = None) -> Fields:
    """A dense layer over the last axis, a quarter of them square (for the transpose fault)."""
    if units is None:
        units = shape[-1] if rng.random() < 0.25 else min(GRAPH_UNITS, int(_log_uniform(rng, 1, GRAPH_UNITS + 1)))
    layer = {"type": "dense", "units": units, "activation": _activation(rng)}
    return layer, {"weights": lambda s: _tensor(rng, s), "bias": lambda s: _bias_source(rng, s[0])}


def _norm(rng: np.random.Generator, layer_type: str) -> Fields:
    """batch_norm (mean, variance; scale and offset sometimes) or layer_norm (scale, offset sometimes)."""
    params: dict[str, Draw] = {}
    if layer_type == "batch_norm":
        params = {"mean": lambda s: _signed(rng, s), "variance": lambda s: _positive(rng, s)}
    for key in ("scale", "offset"):
        if rng.random() < 0.6:
            params[key] = lambda s: _signed(rng, s)
    layer: dict[str, Any] = {"type": layer_type}
    if rng.random() < 0.5:
        layer["epsilon"] = float(rng.choice(EPSILONS))
    return layer, params


def _reshape(rng: np.random.Generator, shape: Shape) -> Fields:
    """To [-1], [a, -1] or [a, b, -1], a and b dividing the size."""
    size, sizes = math.prod(shape), []
    for _ in range(int(rng.integers(0, 3))):
        rest = size // math.prod(sizes)
        sizes.append(int(rng.choice([d for d in range(1, rest + 1) if rest % d == 0])))
    return {"type": "reshape", "shape": [*sizes, -1]}, {}


def _permute(rng: np.random.Generator, shape: Shape) -> Fields:
    return {"type": "transpose", "perm": [0, *(int(p) + 1 for p in rng.permutation(len(shape)))]}, {}


@dataclass
class _Network:
    """A graph network being drawn: its inputs, its layers so far and every value's per-sample shape."""

    rng: np.random.Generator
    dtype: str
    inputs: list[dict[str, Any]]
    layers: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i in self.inputs:
            self.values[i["name"]] = Source(i["name"], tuple(i["shape"]), "input", i.get("dtype"))

    @property
    def last(self) -> str:
        """The value a layer reads unless told otherwise: the previous layer, or the first input."""
        return self.layers[-1]["name"] if self.layers else self.inputs[0]["name"]

    @property
    def shape(self) -> Shape:
        return self.values[self.last].shape

    def allows(self, layer_type: str) -> bool:
        return self.dtype == "float32" or layer_type not in FLOAT32_ONLY

    def floats(self, where: Callable[[Shape], bool]) -> list[str]:
        """The float values (network inputs and layers) whose per-sample shape satisfies `where`."""
        return [name for name, s in self.values.items() if not s.integer and where(s.shape)]

    def add(self, fields: Fields, reads: Sequence[str] | None = None) -> str | None:
        """Append the layer reading `reads` (default: the last value) if its type's own plan accepts it and
        its value holds at most MAX_VALUE numbers; its parameters are then drawn for the shapes the plan gives
        (a draw of None leaves the parameter out). The new layer's name, or None (nothing added)."""
        layer, params = fields
        name = f"{SHORT[layer['type']]}{len(self.layers)}"
        reads = [self.last] if reads is None else list(reads)
        body: dict[str, Any] = {"type": layer["type"], "name": name}
        if reads != [self.last]:
            body["inputs"] = reads
        body |= {k: v for k, v in layer.items() if k != "type"}
        try:
            spec = LAYERS[layer["type"]].spec.model_validate(body | {key: {"init": "ones"} for key in params})
            plan = spec.plan([self.values[r] for r in reads])
        except (ValidationError, NNSpecError):
            return None
        if math.prod(plan.shape) > MAX_VALUE:
            return None
        for key, draw in params.items():
            if (source := draw(plan.params[key].shape)) is not None:
                body[key] = source
        self.layers.append(body)
        self.values[name] = Source(name, plan.shape, "layer")
        return name

    def attempt(self, draw: Callable[[], Fields], reads: Sequence[str] | None = None) -> str | None:
        """Up to ATTEMPTS draws of one layer's fields; the first that its type accepts is added."""
        for _ in range(ATTEMPTS):
            if (name := self.add(draw(), reads)) is not None:
                return name
        return None


def _step(net: _Network, family: str) -> None:
    """One layer (or a branch and its merge) that fits the last value's rank; an activation if none fits."""
    rng, shape = net.rng, net.shape
    rank = len(shape)
    spatial = rank in (2, 3)
    conv = spatial and net.allows("conv1d") and (family in ("image", "signal") or rank == 2)
    menu: dict[str, tuple[float, Callable[[], str | None]]] = {
        "conv": (3.0 if conv else 0.0, lambda: net.attempt(lambda: _conv(rng, shape))),
        "max_pool": (1.0 if spatial else 0.0, lambda: net.attempt(lambda: _pool(rng, shape, "max"))),
        "avg_pool": (
            1.2 if spatial and net.allows("avg_pool1d") else 0.0,
            lambda: net.attempt(lambda: _pool(rng, shape, "avg")),
        ),
        "dense": (3.0 if rank == 1 else 0.6, lambda: net.add(_dense(rng, shape))),
        "batch_norm": (1.0, lambda: net.add(_norm(rng, "batch_norm"))),
        "layer_norm": (0.7, lambda: net.add(_norm(rng, "layer_norm"))),
        "activation": (0.7, lambda: net.add(({"type": "activation", "activation": _activation(rng)}, {}))),
        "dropout": (0.4, lambda: net.add(({"type": "dropout", "rate": float(rng.choice([0.0, 0.1, 0.5]))}, {}))),
        "merge": (1.5, lambda: _merge(net)),
        "transpose": (0.4 if rank > 1 else 0.0, lambda: net.add(_permute(rng, shape))),
        "reshape": (0.3, lambda: net.attempt(lambda: _reshape(rng, shape))),
    }
    weights = np.array([w for w, _ in menu.values()])
    _, build = list(menu.values())[int(rng.choice(len(menu), p=weights / weights.sum()))]
    if build() is None:
        net.add(({"type": "activation", "activation": _activation(rng)}, {}))


def _merge(net: _Network, source: str | None = None) -> str | None:
    """add or multiply of the last value and a branch of its shape, or a concat with a branch that
    agrees on the other axes; the branch reads `source` if given (a second network input)."""
    rng = net.rng
    kind = str(rng.choice(["add", "add", "multiply", "concat"]))
    current = net.last
    found = _branch(net, kind, source)
    if found is None:
        return None
    branch, axis = found
    reads = [current, branch] if rng.random() < 0.5 else [branch, current]
    if kind == "add" and rng.random() < 0.2:  # a third term: any value of this shape, the merged ones too
        reads.append(str(rng.choice(net.floats(lambda s: s == net.values[current].shape))))
    layer: dict[str, Any] = {"type": kind}
    if kind == "concat":
        rank = len(net.values[current].shape) + 1
        layer["axis"] = axis if rng.random() < 0.5 else axis % rank - rank  # either sign of the same axis
    return net.add((layer, {}), reads)


def _branch(net: _Network, kind: str, source: str | None) -> tuple[str, int] | None:
    """A value to merge with the last one, and the axis a concat joins them on: an earlier value of the same
    shape, a "same" convolution (for a concat, any filters: axis 1) or a dense layer (for a concat, any
    width: the last axis) of a value with the right axes (`source`, if given)."""
    rng = net.rng
    shape = net.shape
    last_axis = len(shape)
    alike = [v for v in net.floats(lambda s: s == shape) if v != net.last]
    if source is None and alike and rng.random() < 0.3:
        return str(rng.choice(alike)), last_axis
    if source is None and len(shape) in (2, 3) and net.allows("conv1d") and rng.random() < 0.5:
        reads = str(rng.choice(net.floats(lambda s: len(s) == len(shape) and s[1:] == shape[1:])))
        filters = int(rng.integers(1, MAX_FILTERS + 1)) if kind == "concat" else shape[0]
        name = net.attempt(lambda: _conv(rng, net.values[reads].shape, filters, same=True), [reads])
        return None if name is None else (name, 1)
    if source is None:
        source = str(rng.choice(net.floats(lambda s: s[:-1] == shape[:-1])))
    units = None if kind == "concat" else shape[-1]
    name = net.add(_dense(rng, net.values[source].shape, units), [source])
    return None if name is None else (name, last_axis)


def _head(net: _Network) -> None:
    """Often, for a value of several axes: a global pool, a flatten or a reshape to one axis; then often dense."""
    rng = net.rng
    if len(net.shape) > 1 and rng.random() < 0.7:
        if net.allows("global_avg_pool") and rng.random() < 0.5:
            net.add(({"type": str(rng.choice(["global_avg_pool", "global_max_pool"]))}, {}))
        elif rng.random() < 0.7:
            net.add(({"type": "flatten"}, {}))
        else:
            net.add(({"type": "reshape", "shape": [-1]}, {}))
    if rng.random() < 0.5:
        net.add(_dense(rng, net.shape))


def _second_output(net: _Network) -> list[str] | None:
    """For a third of the networks: a second output of the last layer's shape (an earlier layer of that shape,
    or a dense head of that width reading a value with the same leading axes), so that outputs can be swapped."""
    rng = net.rng
    if rng.random() >= 1 / 3:
        return None
    last, shape = net.last, net.shape
    alike = [v for v in net.floats(lambda s: s == shape) if v != last and net.values[v].kind == "layer"]
    if alike and rng.random() < 0.5:
        other: str | None = str(rng.choice(alike))
    else:
        readers = [v for v in net.floats(lambda s: s[:-1] == shape[:-1]) if v != last]
        other = net.add(_dense(rng, (), shape[-1]), [str(rng.choice(readers))]) if readers else None
    if other is None:
        return None
    return [last, other] if rng.random() < 0.5 else [other, last]


def _graph_inputs(rng: np.random.Generator, family: str) -> list[dict[str, Any]]:
    """image [C, H, W], signal [C, L], features [d] or [s, d] (sometimes with a second input), tokens: ids [s]."""
    if family == "image":
        return [{"name": "x", "shape": [int(rng.integers(1, 5)), int(rng.integers(3, 9)), int(rng.integers(3, 9))]}]
    if family == "signal":
        return [{"name": "x", "shape": [int(rng.integers(1, 5)), int(rng.integers(4, 17))]}]
    if family == "tokens":
        dtype = "int64" if rng.random() < 0.8 else "int32"
        return [{"name": "ids", "shape": [int(rng.integers(1, 13))], "dtype": dtype}]
    rows = [int(rng.integers(2, 6))] if rng.random() < 0.4 else []
    inputs = [{"name": "x", "shape": [*rows, int(rng.integers(1, 17))]}]
    if rng.random() < 0.3:
        inputs.append({"name": "y", "shape": [*rows, int(rng.integers(1, 17))]})
    return inputs


def _graph_spec(rng: np.random.Generator) -> dict[str, Any]:
    """A valid graph network of every layer type beyond dense and activation (and those two).

    Four families: images [C, H, W] and signals [C, L] (C 1-4, H and W 3-8, L 4-16) through
    convolutions, pools, normalizations, residual merges, then a global pool or a flatten and often a
    dense head; features [d] or [s, d] through dense layers, normalizations, merges of branches (a second
    input for some) and reshapes; token ids [s] (int64 or int32) through one or two embeddings (input_dim
    2-50) into the same. Each layer's fields are drawn at random and kept only if its type's own plan
    accepts them (so every spec is valid); values stay under MAX_VALUE numbers per sample. float32 or
    float64, float64 networks without the FLOAT32_ONLY types; a third have a second output of the last
    one's shape.
    """
    family = FAMILIES[int(rng.choice(len(FAMILIES), p=FAMILY_SHARES))]
    dtype = str(rng.choice(["float32", "float64"], p=[0.8, 0.2] if family in ("image", "signal") else [0.5, 0.5]))
    net = _Network(rng, dtype, _graph_inputs(rng, family))
    if family == "tokens":
        dim, width = int(rng.integers(2, 51)), int(rng.integers(1, 9))
        table = ({"type": "embedding", "input_dim": dim, "output_dim": width}, {"weights": lambda s: _tensor(rng, s)})
        first = net.add(table)
        if first is not None and rng.random() < 0.3:  # a second table of the same ids, added (a position-like sum)
            second = net.add(table, [net.inputs[0]["name"]])
            if second is not None:
                net.add(({"type": "add"}, {}), [first, second])
    if len(net.inputs) > 1:
        _merge(net, source=net.inputs[1]["name"])
    if family in ("image", "signal") and net.allows("conv1d") and rng.random() < 0.8:
        net.attempt(lambda: _conv(rng, net.shape))
    for _ in range(int(rng.integers(1, GRAPH_DEPTH + 1))):
        _step(net, family)
    _head(net)
    spec: dict[str, Any] = {
        "format": "nnspec/1",
        "name": "random_graph",
        "dtype": dtype,
        "inputs": net.inputs,
        "layers": net.layers,
    }
    outputs = _second_output(net)
    if outputs is not None:
        spec["outputs"] = outputs
    return spec


# --- faults -------------------------------------------------------------------------------------


def gamma(k: int, u: float) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of a k-term sum."""
    return k * u / (1 - k * u)


def _with_node(graph: Graph, node: Node) -> Graph:
    return replace(graph, nodes=tuple(node if n.name == node.name else n for n in graph.nodes))


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _terms(node: Node) -> int:
    """How many rounded terms one output sums: a dense row or a convolution's window (in_channels / groups
    x prod(kernel)), and the bias; 1 for an embedding, whose output is the stored number itself."""
    if node.op == "embedding":
        return 1
    return node.params["weights"][0].size + ("bias" in node.params)


def _weight(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """One non-zero weight w of a dense, convolution or embedding layer becomes w (1 +- 1000 gamma_k), k the
    layer's terms per sum (`_terms`).

    Why 1000 gamma_k: each side's own rounding of the sum is bounded by gamma_k sum_j |w_j p_j| (+ |b|),
    so the change, 1000 gamma_k |w p|, exceeds both sides' bounds together whenever the changed term
    is more than 1/500 of the row's magnitude, as every term of a row of 500 equal terms is: well
    above the bound for the rows here (at most 65 terms in a chain, a few hundred in a convolution), yet
    a small fault. Being relative to gamma_k, it is equally hard to see in float32 and float64 and in
    narrow and wide layers; in float32 it is a
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
    k = _terms(node)
    change = WEIGHT_CHANGE * gamma(k, Precision.of(graph.dtype).u) * float(rng.choice([-1.0, 1.0]))
    flat = int(_pick(rng, np.flatnonzero(w)))
    w.flat[flat] = w.flat[flat] * (1 + change)
    return _with_node(graph, replace(node, params={**node.params, "weights": w}))


def _transpose(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """A square weight matrix W of a dense layer (or a square embedding table) is replaced by W^T (symmetric
    ones are skipped)."""
    nodes = [
        n
        for n in graph.nodes
        if "weights" in n.params
        and n.params["weights"].ndim == 2
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
    """A dense or convolution layer's non-zero bias is dropped (as an exporter that forgets it would)."""
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


# The parameters of the normalizations (a param fault changes one of them, see `_norm_bound`).
NORM_PARAMS = {"batch_norm": ("mean", "variance", "scale", "offset"), "layer_norm": ("scale", "offset")}
# An epsilon fault puts in the other framework's default: PyTorch's 1e-5, Keras's 1e-3.
EPSILON_DEFAULTS = (1e-5, 1e-3)
CONVOLUTIONS = ("conv1d", "conv2d")
MERGES = ("add", "multiply", "concat")
WINDOWED_POOLS = {
    "max_pool1d": "avg_pool1d",
    "max_pool2d": "avg_pool2d",
    "avg_pool1d": "max_pool1d",
    "avg_pool2d": "max_pool2d",
}
GLOBAL_POOLS = {"global_avg_pool": "global_max_pool", "global_max_pool": "global_avg_pool"}


def _norm_bound(node: Node, channel: int, u: float) -> float:
    """The relative bound the layer's own error model gives one output: gamma_7 for batch_norm, plus how far
    1/sqrt(variance + epsilon) may move in this channel because ONNX stores epsilon as a float32 (which in
    float64 networks is often the larger: 1.3e-13 for epsilon 1e-5 and variance 1); gamma_{D+3} for
    layer_norm over D features (its variance's sum)."""
    if node.op == "layer_norm":
        return gamma(node.shape[-1] + 3, u)
    denominator = float(node.params["variance"].astype(np.float64)[channel]) + node.attrs["epsilon"]
    moved = stored_epsilon_error(node.attrs["epsilon"])
    return gamma(7, u) + math.sqrt(denominator / (denominator - moved)) - 1


def _param(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """One non-zero parameter of a batch_norm (mean, variance, scale, offset) or layer_norm (scale, offset)
    becomes p (1 +- 1000 r), r the relative bound of the layer's own error model there (`_norm_bound`): the
    normalizations' analogue of the weight fault. A variance stays positive (the change is below 1).

    Why the stored epsilon counts: a float64 runtime adds float32(epsilon), a deviation the bound allows
    and onnxruntime always makes; a fault of 1000 gamma_7 alone (8e-13) is of its size, and one that moves
    the outputs by 1 to 2 times the tolerance in float64 would be hidden by it half of the time.
    """
    places = [
        (n, key) for n in graph.nodes for key in NORM_PARAMS.get(n.op, ()) if key in n.params and np.any(n.params[key])
    ]
    if not places:
        return None
    node, key = _pick(rng, places)
    p = node.params[key].copy()
    sign = float(rng.choice([-1.0, 1.0]))
    flat = int(_pick(rng, np.flatnonzero(p)))
    p.flat[flat] = p.flat[flat] * (1 + sign * WEIGHT_CHANGE * _norm_bound(node, flat, Precision.of(graph.dtype).u))
    return _with_node(graph, replace(node, params={**node.params, key: p}))


def _attribute_faults(graph: Graph, node: Node) -> list[Node]:
    """Every attribute fault `node` has a place for (see `_attribute`)."""
    a = node.attrs
    faults = []
    if node.op in NORM_PARAMS:
        epsilon = EPSILON_DEFAULTS[1] if a["epsilon"] != EPSILON_DEFAULTS[1] else EPSILON_DEFAULTS[0]
        faults.append(replace(node, attrs={**a, "epsilon": epsilon}))
    if node.op in (*CONVOLUTIONS, *WINDOWED_POOLS) and not a["ceil_mode"]:
        rank = len(a["kernel_shape"])
        begins, ends = a["pads"][:rank], a["pads"][rank:]
        if begins != ends:  # "same" as SAME_LOWER where the spec means SAME_UPPER
            faults.append(replace(node, attrs={**a, "pads": [*ends, *begins]}))
    if node.op.startswith("avg_pool") and any(a["pads"]):
        faults.append(replace(node, attrs={**a, "count_include_pad": 1 - a["count_include_pad"]}))
    if node.op in WINDOWED_POOLS and graph.dtype == np.float32:  # onnxruntime has no float64 AveragePool
        other = WINDOWED_POOLS[node.op]
        attrs = (
            {**a, "count_include_pad": 0}
            if other.startswith("avg")
            else {k: v for k, v in a.items() if k != "count_include_pad"}
        )
        faults.append(replace(node, op=other, attrs=attrs))
    if node.op in GLOBAL_POOLS:
        faults.append(replace(node, op=GLOBAL_POOLS[node.op]))
    return faults


def _attribute(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """One attribute an exporter may get wrong: a normalization's epsilon (1e-5 for 1e-3 or the other way,
    PyTorch's and Keras's defaults), a window's begin and end padding swapped (SAME_LOWER for SAME_UPPER,
    where they differ; not in ceil mode, where the output's length could change), an average pool's
    count_include_pad flipped where it pads, or a pool of the other kind (max for average, and back)."""
    faults = [fault for n in graph.nodes for fault in _attribute_faults(graph, n)]
    if not faults:
        return None
    return _with_node(graph, _pick(rng, faults))


def _wiring(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """A merge reads the wrong values: a concat's inputs in another order, or, in half the networks that have
    both kinds of place, one input of an add, multiply or concat replaced by another value of the same shape
    computed before it (a skip connection to the wrong layer)."""
    swaps = [
        (n, i, j)
        for n in graph.nodes
        if n.op == "concat"
        for i in range(len(n.inputs))
        for j in range(i + 1, len(n.inputs))
        if n.inputs[i] != n.inputs[j]
    ]
    shapes = {i.name: i.shape for i in graph.inputs if i.dtype is None}  # float values computed so far
    rewires = []
    for n in graph.nodes:
        if n.op in MERGES:
            for k, (read, shape) in enumerate(zip(n.inputs, n.input_shapes, strict=True)):
                rewires += [(n, k, v) for v, s in shapes.items() if s == shape and v != read]
        shapes[n.name] = n.shape
    if not swaps and not rewires:
        return None
    if swaps and (not rewires or rng.random() < 0.5):
        node, i, j = _pick(rng, swaps)
        order = list(range(len(node.inputs)))
        order[i], order[j] = j, i
        inputs = tuple(node.inputs[k] for k in order)
        return _with_node(graph, replace(node, inputs=inputs, input_shapes=tuple(node.input_shapes[k] for k in order)))
    node, k, value = _pick(rng, rewires)
    return _with_node(graph, replace(node, inputs=tuple(value if i == k else r for i, r in enumerate(node.inputs))))


def _flip(graph: Graph, rng: np.random.Generator) -> Graph | None:
    """A convolution's kernel flipped along its spatial axes: a true convolution where the spec (and ONNX's
    Conv) means a cross-correlation, as weights ported between frameworks without the flip would be
    (symmetric kernels are skipped)."""

    def flipped(w: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim))))

    nodes = [
        n
        for n in graph.nodes
        if n.op in CONVOLUTIONS and not np.array_equal(flipped(n.params["weights"]), n.params["weights"])
    ]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    return _with_node(graph, replace(node, params={**node.params, "weights": flipped(node.params["weights"])}))


INJECTORS: dict[str, Callable[[Graph, np.random.Generator], Graph | None]] = {
    "weight": _weight,
    "transpose": _transpose,
    "activation": _activation_fault,
    "bias": _drop_bias,
    "outputs": _swap_outputs,
    "param": _param,
    "attribute": _attribute,
    "wiring": _wiring,
    "flip": _flip,
}


def inject(graph: Graph, kind: str, rng: np.random.Generator) -> Graph | None:
    """The graph with one fault of `kind` (one of KINDS), or None where the network has no place for it."""
    if kind not in INJECTORS:
        raise ValueError(f"expected a fault kind ({', '.join(KINDS)}), found {kind!r}")
    return INJECTORS[kind](graph, rng)


def faulted_layer(original: Graph, faulty: Graph) -> str | None:
    """The name of the one layer whose weights, activation, operator, attributes or inputs differ (None for
    swapped outputs)."""
    for before, after in zip(original.nodes, faulty.nodes, strict=True):
        if before.name != after.name:
            return None
        if (before.op, before.inputs, before.attrs, before.activation) != (
            after.op,
            after.inputs,
            after.attrs,
            after.activation,
        ) or before.params.keys() != after.params.keys():
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

    As in the check's comparison, a change where the bound is infinite (or NaN: an infinite error met a
    zero slope, 0 x inf) is within it: the smallest positive multiple, which is no change at all only
    where nothing moved.
    """
    before = traces(original, cases) if before is None else before
    worst = 0.0
    for expected, after in zip(before, traces(faulty, cases), strict=True):
        for out in original.outputs:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                r, c = (v[out.name].astype(original.dtype).astype(np.float64) for v in (expected.values, after.values))
                diff = np.abs(c - r)
                diff = np.where((r == c) | (np.isnan(r) & np.isnan(c)), 0.0, np.where(np.isnan(diff), np.inf, diff))
                bound = 2 * expected.errors[out.name]
                margin = np.where(diff == 0, 0.0, diff / np.where(np.isnan(bound), np.inf, bound))
                margin = np.where((diff > 0) & ~(margin > 0), np.finfo(np.float64).tiny, margin)
            worst = max(worst, float(margin.max(initial=0.0)))
    return worst
