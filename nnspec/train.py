"""Learning a spec's weights from examples by gradient descent on a cost, as the seed describes.

The network is run forward in float64, keeping every layer's output; the cost's gradient is then carried
back layer by layer through each layer type's vector-Jacobian rule (`LayerType.vjp`, beside its kernel and
bound), and every learned parameter takes a step against its gradient: w <- w - lr dL/dw.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .activations import REGISTRY, Activation
from .errors import InputDataError, NNSpecError, OutputError, SpecError, suggest
from .feeds import check_feeds
from .files import atomic_write_all, check_text_size, json_text, read_json, read_npz, reading
from .graph import build_graph
from .ir import Graph, Node
from .layers import LAYERS
from .limits import Limits, human_bytes
from .spec import Spec
from .spec import from_dict as validate_dict

LOSSES = ("mse", "cross_entropy")
# Defaults, each with its reason (the CLI's help repeats them):
DEFAULT_EPOCHS = 1000  # enough for the seed's small examples (the party neuron, XOR) at DEFAULT_LR, in about a second
DEFAULT_LR = 0.1  # plain gradient descent's customary start: steps small enough not to overshoot on inputs of size ~1
DEFAULT_LOSS = "mse"  # the seed's cost, defined for any output; cross_entropy suits probability outputs better
# Batch size: the whole data set by default (the seed's plain gradient descent, the same steps whatever the seed).

# Output activations cross-entropy is computed for, from the pre-activation n (never log of a rounded probability).
CROSS_ENTROPY_OUTPUTS = ("sigmoid", "softmax", "log_softmax")
_LINEAR = Activation(REGISTRY["linear"], {})
# The activations' own formulas, shared rather than restated (softplus and sigmoid never overflow).
_SIGMOID, _SOFTPLUS = REGISTRY["sigmoid"].numpy, REGISTRY["softplus"].numpy
_SOFTMAX, _LOG_SOFTMAX = REGISTRY["softmax"].numpy, REGISTRY["log_softmax"].numpy


class TrainingError(NNSpecError):
    """Training could not go on: it diverged, or its result does not fit the spec's dtype."""


@dataclass(frozen=True)
class Options:
    """How to train: epochs over the data, the learning rate, samples per step (None: all), cost, shuffle seed."""

    epochs: int = DEFAULT_EPOCHS
    lr: float = DEFAULT_LR
    batch_size: int | None = None
    loss: str = DEFAULT_LOSS
    seed: int = 0


@dataclass(frozen=True)
class Data:
    """Training examples: features by input name, targets by output name, float64 (ids as integers), N each."""

    features: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def rows(self, index: np.ndarray) -> Data:
        return Data({k: v[index] for k, v in self.features.items()}, {k: v[index] for k, v in self.targets.items()})


@dataclass
class Trained:
    """The result: the learned parameters (in the spec's dtype), the loss after each epoch, and the final loss
    of the parameters as stored, over the whole data set."""

    params: dict[str, dict[str, np.ndarray]]
    losses: list[float]
    final_loss: float
    correct: int | None = None  # examples classified correctly, when every output is a probability (else None)
    count: int = 0
    learned: list[str] = field(default_factory=list)  # `<layer>.<parameter>` of every parameter trained


# --- backpropagation ------------------------------------------------------------------------------------------


class Backprop:
    """A graph in float64 with its parameters as the arrays to learn: forward keeping every layer's output, then
    the cost's gradient carried back through each layer's `vjp`.

    With a cross_entropy cost, each output layer is run as its pre-activation n (its activation set to linear)
    and the cost is computed from n in its numerically stable form; later layers that read it see f(n).
    """

    def __init__(self, graph: Graph, loss: str) -> None:
        if loss not in LOSSES:
            raise NNSpecError(f"expected a loss {' or '.join(LOSSES)}, found {loss!r}{suggest(loss, LOSSES)}")
        self.loss = loss
        self.nodes = graph.widened().nodes
        self.outputs = [o.name for o in graph.outputs]
        self.params = {n.name: {k: v.astype(np.float64) for k, v in n.params.items()} for n in self.nodes}
        self.learned = {n.name: [k for k in n.params if k not in LAYERS[n.op].frozen] for n in self.nodes}
        self.split = {name: self._output_activation(graph.node(name)) for name in self.outputs} if loss != "mse" else {}
        needs: dict[str, bool] = {}
        for node in self.nodes:
            needs[node.name] = bool(self.learned[node.name]) or any(needs.get(i, False) for i in node.inputs)
        self.needs = needs
        self._refuse_what_has_no_gradient()

    def _output_activation(self, node: Node) -> Activation:
        act = node.activation
        if act is None or act.name not in CROSS_ENTROPY_OUTPUTS:
            found = f"{act.label} at the end of" if act is not None else "no activation in"
            raise SpecError(
                f"expected an output layer with {', '.join(CROSS_ENTROPY_OUTPUTS)} for --loss cross_entropy (a "
                f"probability to score), found {found} layer {node.name!r} ({node.op}); use --loss mse, or end the "
                "network with sigmoid (yes/no) or softmax (one of several classes)",
                ("layers", node.index),
            )
        return act

    def _refuse_what_has_no_gradient(self) -> None:
        """Every layer the gradient must pass through has a vjp and a differentiable activation: else name it."""
        reached = set(self.outputs)
        for node in reversed(self.nodes):
            if node.name not in reached or not self.needs[node.name]:
                continue
            reached.update(node.inputs)
            if LAYERS[node.op].vjp is None:
                able = ", ".join(name for name, entry in LAYERS.items() if entry.vjp is not None)
                raise SpecError(
                    f"expected layers that training can backpropagate through ({able}), found layer {node.name!r} "
                    f"of type {node.op}, which has no gradient rule",
                    ("layers", node.index),
                )
            act = node.activation
            if act is not None and node.name not in self.split and (why := act.gradient_refused) is not None:
                stand_in = {"hardlim": "logsig", "hardlims": "tansig"}.get(act.name, "a smooth activation")
                raise SpecError(
                    f"expected a differentiable activation to train layer {node.name!r} through, found {act.label}: "
                    f"{why}. Train a copy with {stand_in} in its place (the same decision by the sign of W p + b), "
                    "then put the trained weights back",
                    ("layers", node.index, "activation"),
                )

    def _node(self, node: Node) -> Node:
        current = replace(node, params=self.params[node.name])
        return replace(current, activation=_LINEAR) if node.name in self.split else current

    def forward(self, features: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every layer's output (an output layer under cross_entropy: f(n)) and, by output name, n under cross_entropy."""
        values = dict(features)
        pre: dict[str, np.ndarray] = {}
        for node in self.nodes:
            kernel = LAYERS[node.op].numpy(self._node(node))
            value = kernel(*[values[i] for i in node.inputs])
            if node.name in self.split:
                pre[node.name] = value
                value = self.split[node.name](value)
            values[node.name] = value
        return values, pre

    def cost(
        self, values: Mapping[str, np.ndarray], pre: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The cost summed over outputs, and its gradient by output: w.r.t. the output (mse) or to n (cross_entropy)."""
        total, grads = 0.0, {}
        for name in self.outputs:
            y = targets[name]
            if self.loss == "mse":
                loss, grads[name] = mse(values[name], y)
            else:
                loss, grads[name] = cross_entropy(pre[name], self.split[name], y)
            total += loss
        return total, grads

    def gradients(
        self, values: dict[str, np.ndarray], pre: Mapping[str, np.ndarray], seeds: Mapping[str, np.ndarray]
    ) -> dict[str, dict[str, np.ndarray]]:
        """dL/dparameter for every learned parameter, from the cost's gradient by output (`seeds`)."""
        upstream: dict[str, np.ndarray] = {}
        if self.loss == "mse":
            upstream.update(seeds)
        grads: dict[str, dict[str, np.ndarray]] = {}
        for node in reversed(self.nodes):
            if not self.needs[node.name]:
                continue
            g = upstream.pop(node.name, None)
            if node.name in self.split:  # dL/dn: the cost's own, plus what later layers send back through f
                g_n = seeds[node.name]
                if g is not None:
                    g_n = g_n + self.split[node.name].vjp(pre[node.name], values[node.name], g)
                g, output = g_n, pre[node.name]
            else:
                output = values[node.name]
            if g is None:
                continue
            vjp = LAYERS[node.op].vjp
            assert vjp is not None
            inputs, params = vjp(self._node(node), [values[i] for i in node.inputs], output, g)
            grads[node.name] = params
            for source, grad in zip(node.inputs, inputs, strict=True):
                if grad is not None and self.needs.get(source, False):
                    upstream[source] = upstream[source] + grad if source in upstream else grad
        return grads

    def step(self, batch: Data, lr: float) -> float:
        """One step of gradient descent on `batch`; the cost before the step."""
        values, pre = self.forward(batch.features)
        loss, seeds = self.cost(values, pre, batch.targets)
        for name, params in self.gradients(values, pre, seeds).items():
            for key in self.learned[name]:
                if key in params:
                    self.params[name][key] -= lr * params[key]
        return loss


def check_trainable(graph: Graph, loss: str, source: str | None = None) -> None:
    """Refuse, before any data is read, a network that cannot be trained with `loss`, naming the layer and why
    (`source`: the spec's file, for the message)."""
    try:
        net = Backprop(graph, loss)
        if not any(net.learned.values()):
            kept = sorted({f"{n.op} {key}" for n in graph.nodes for key in n.params})
            raise SpecError(
                "expected parameters for training to learn, found "
                + (f"only ones it leaves as they are ({', '.join(kept)})" if kept else "none (no layer has weights)")
            )
    except SpecError as exc:
        exc.source = source
        raise


def mse(a: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """L = (1/N) sum over samples of |a - y|^2 (the squared error summed over the output's elements); dL/da."""
    diff = a - y
    count = a.shape[0]
    return float((diff * diff).sum() / count), 2 * diff / count


def cross_entropy(n: np.ndarray, act: Activation, y: np.ndarray) -> tuple[float, np.ndarray]:
    """L = -(1/N) sum y log p (summed over the output's elements; for sigmoid, with the (1 - y) log(1 - p) term),
    computed from the pre-activation n without forming log p from a rounded p; and dL/dn.

    softmax (or log_softmax): log p = log_softmax(n), dL/dn = (p sum(y) - y) / N, which is (p - y) / N for
    targets that sum to 1. sigmoid: -y log p - (1 - y) log(1 - p) = softplus(n) - y n, dL/dn = (sigmoid(n) - y) / N.
    """
    count = n.shape[0]
    if act.name == "sigmoid":
        return float((_SOFTPLUS(n) - y * n).sum() / count), (_SIGMOID(n) - y) / count
    loss = -(y * _LOG_SOFTMAX(n)).sum() / count
    return float(loss), (_SOFTMAX(n) * y.sum(axis=-1, keepdims=True) - y) / count


def classified(graph: Graph, values: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> int | None:
    """Examples whose every output picks the target's class: p > 1/2 as y > 1/2 (sigmoid), the largest (softmax);
    None unless every output is a probability (sigmoid, softmax or log_softmax)."""
    right = None
    for info in graph.outputs:
        act = graph.node(info.name).activation
        if act is None or act.name not in CROSS_ENTROPY_OUTPUTS:
            return None
        a, y = values[info.name], targets[info.name]
        if act.name == "sigmoid":
            match = ((a > 0.5) == (y > 0.5)).reshape(a.shape[0], -1).all(axis=1)
        else:
            match = (a.argmax(axis=-1) == y.argmax(axis=-1)).reshape(a.shape[0], -1).all(axis=1)
        right = match if right is None else right & match
    assert right is not None
    return int(right.sum())


# --- training ---------------------------------------------------------------------------------------------------


def train(graph: Graph, data: Data, options: Options, on_epoch: Callable[[int, float], None] | None = None) -> Trained:
    """Gradient descent from the spec's own weights: `options.epochs` passes over `data`, each in steps of
    `options.batch_size` examples (all by default), shuffled per epoch from `options.seed` when a step holds
    fewer than all. Parameters are float64 throughout and rounded to the spec's dtype once, at the end.
    """
    check_trainable(graph, options.loss)
    net = Backprop(graph, options.loss)
    count = data.count
    size = count if options.batch_size is None else min(options.batch_size, count)
    # Shuffles from PCG64's raw stream (not Generator methods, whose streams may change between NumPy releases),
    # as the seeded initializers draw theirs: the same seed gives the same order on any NumPy.
    stream = np.random.PCG64(options.seed)
    losses = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is caught from the loss
        for epoch in range(1, options.epochs + 1):
            order = np.arange(count) if size == count else np.argsort(stream.random_raw(count), kind="stable")
            total = 0.0
            for start in range(0, count, size):
                index = order[start : start + size]
                total += net.step(data.rows(index), options.lr) * len(index)
            loss = total / count
            if not math.isfinite(loss) or not all(
                np.isfinite(p).all() for ps in net.params.values() for p in ps.values()
            ):
                raise TrainingError(
                    f"training diverged at epoch {epoch}: the loss became {loss:g} (a learning rate of {options.lr:g} "
                    "overshoots: lower --lr)"
                )
            losses.append(loss)
            if on_epoch is not None:
                on_epoch(epoch, loss)
        stored = _stored(net, graph)
        net.params = {name: {k: v.astype(np.float64) for k, v in ps.items()} for name, ps in stored.items()}
        values, pre = net.forward(data.features)
        final, _ = net.cost(values, pre, data.targets)
    correct = classified(graph, values, data.targets)
    learned = [f"{name}.{key}" for name, keys in net.learned.items() for key in keys]
    return Trained(stored, losses, final, correct, count, learned)


def _stored(net: Backprop, graph: Graph) -> dict[str, dict[str, np.ndarray]]:
    """The learned float64 parameters in the spec's dtype; refuses any too large for it."""
    out = {}
    for node in graph.nodes:
        out[node.name] = {}
        for key, value in net.params[node.name].items():
            cast = value.astype(graph.dtype)
            if not np.isfinite(cast).all():
                where = [int(i) for i in np.argwhere(~np.isfinite(cast))[0]]
                raise TrainingError(
                    f"layer {node.name!r}, {key}{where}: expected a value that fits in {graph.dtype.name}, found "
                    f"{value[tuple(where)]:g} after training (lower --lr or --epochs)"
                )
            out[node.name][key] = cast
    return out


# --- writing the trained spec ----------------------------------------------------------------------------------


def trained_document(spec: Spec, graph: Graph, params: Mapping[str, Mapping[str, Any]], npz: str) -> dict[str, Any]:
    """The spec as written (keys it left out stay out), each parameter replaced by `params`' value for it: the
    arrays themselves, or, with `npz` a file name, `{"file": npz, "key": "<layer>.<parameter>"}`."""
    document = spec.model_dump(mode="json", exclude_unset=True)
    for node in graph.nodes:
        layer = document["layers"][node.index]
        for key, value in params[node.name].items():
            assert key in layer, (node.name, key)  # a loaded parameter is one the spec gives
            layer[key] = {"file": npz, "key": f"{node.name}.{key}"} if npz else value
    return document


def write_trained(spec: Spec, graph: Graph, trained: Trained, output: Path, note: str) -> list[Path]:
    """TRAINED.json and, beside it, TRAINED.npz with every parameter (`<layer>.<parameter>`), both atomically
    (the .npz first); the document is validated and its graph built, weights and all, before anything is written."""
    if output.suffix.lower() != ".json":
        raise OutputError(f"expected a spec file name ending in .json, found {output.name!r}")
    if output.is_dir():
        raise OutputError(f"expected a file name to write, found a folder: {output}")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"folder {folder} does not exist")
    npz = output.with_suffix(".npz")
    inline = trained_document(spec, graph, trained.params, "")
    check = validate_dict(inline, folder, source=str(output))
    build_graph(check)  # shapes, wiring and the new weights, as any spec's
    document = trained_document(spec, graph, trained.params, npz.name)
    if note:
        document["description"] = (document.get("description", "") + " " + note).strip()
    arrays = {f"{name}.{key}": v for name, ps in trained.params.items() for key, v in ps.items()}
    return atomic_write_all([(npz, npz_bytes(arrays)), (output, json_text(document).encode())])


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz archive (uncompressed, as np.savez writes) whose bytes depend on the arrays alone: np.savez stamps
    each member with the time of writing, which would make two identical trainings differ."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


# --- reading the examples ------------------------------------------------------------------------------------

# A number as written in a CSV cell; nan and inf are refused (a gradient step cannot use them).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def load_data(path: Path, graph: Graph, target: Sequence[str] = (), loss: str = DEFAULT_LOSS) -> Data:
    """Examples from `.npz` or `.json` (arrays keyed by input and output names) or `.csv` (a header, `target`
    naming the target columns, the other columns in order the single input's features). Errors name the file,
    the key or column (and a CSV line), what was expected and what was found."""
    limits = Limits.from_env()
    suffix = path.suffix.lower()
    with reading(path, "a file of examples"):
        if target and suffix != ".csv":
            raise InputDataError(
                f"expected --target only with a .csv file, found a {suffix or 'suffix-less'} file, whose arrays are "
                f"keyed by name (targets by output name: {', '.join(o.name for o in graph.outputs)})"
            )
        if suffix == ".csv":
            arrays = _read_csv(path, graph, list(target), limits)
        elif suffix == ".npz":
            arrays = read_npz(path, limits)
        elif suffix == ".json":
            arrays = _read_json(path, limits)
        else:
            raise InputDataError(f"expected a .npz, .json or .csv file of examples, found {path.name!r}")
        return _checked(arrays, graph, loss)


def _read_csv(path: Path, graph: Graph, target: list[str], limits: Limits) -> dict[str, np.ndarray]:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise InputDataError(
            f"expected a spec of one input and one output for a .csv file, found inputs "
            f"{', '.join(i.name for i in graph.inputs)} and outputs {', '.join(o.name for o in graph.outputs)}; use "
            ".npz or .json keyed by name"
        )
    check_text_size(path, limits.max_batch_bytes)
    (info,), (out,) = graph.inputs, graph.outputs
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"expected UTF-8 text, found the byte 0x{exc.object[exc.start]:02x}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[float]] = []
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if cells in ([], [""]):
                continue
            line = reader.line_num
            if header is None:
                if any(_NUMBER.fullmatch(c) for c in cells):
                    raise InputDataError(
                        f"line {line}: expected a header naming every column (the targets are named by --target), "
                        f"found numbers ({', '.join(cells[:4])}{', ...' if len(cells) > 4 else ''})"
                    )
                header = cells
                _csv_columns(header, target, info.name, out.name, math.prod(info.shape))
                continue
            if len(cells) != len(header):
                raise InputDataError(
                    f"line {line}: expected {len(header)} cells, as the header has, found {len(cells)}"
                )
            for column, cell in zip(header, cells, strict=True):
                if not _NUMBER.fullmatch(cell):
                    found = repr(cell) if cell else "an empty cell"
                    raise InputDataError(f"line {line}, column {column!r}: expected a finite number, found {found}")
            rows.append([float(c) for c in cells])
            if len(rows) * len(header) * 8 > limits.max_batch_bytes:
                raise InputDataError(
                    f"line {line}: expected at most {human_bytes(limits.max_batch_bytes)} of examples "
                    "(NNSPEC_MAX_BATCH_BYTES), found more"
                )
    except csv.Error as exc:
        raise InputDataError(f"line {reader.line_num}: expected CSV, found {exc}") from None
    if header is None or not rows:
        raise InputDataError(
            f"expected a header and one line per example, found {'only a header' if header else 'none'}"
        )
    table = np.array(rows)
    features = [k for k, c in enumerate(header) if c not in target]
    targets = [header.index(c) for c in target]
    return {info.name: table[:, features].reshape(-1, *info.shape), out.name: table[:, targets]}


def _csv_columns(header: list[str], target: list[str], input_name: str, output_name: str, width: int) -> None:
    """--target names existing columns, each once, and the rest are as many as the input's features."""
    if not target:
        raise InputDataError(
            f"expected --target naming the target column(s) of output {output_name!r}, found none given; the columns "
            f"are {', '.join(header)}"
        )
    for name in target:
        if name not in header:
            raise InputDataError(
                f"expected a target column named {name!r}{suggest(name, header)}, found none; the columns are "
                f"{', '.join(header)}"
            )
        if target.count(name) > 1 or header.count(name) > 1:
            raise InputDataError(f"expected each column once, found {name!r} twice")
    features = [c for c in header if c not in target]
    if len(features) != width:
        raise InputDataError(
            f"expected {width} feature column(s) for input {input_name!r} (every column not named by --target), "
            f"found {len(features)}: {', '.join(features) or 'none'}"
        )


def _read_json(path: Path, limits: Limits) -> dict[str, np.ndarray]:
    data = read_json(path, limits)
    if not isinstance(data, dict):
        raise InputDataError("expected a JSON object keyed by input and output names, found " + type(data).__name__)
    if "layers" in data or "format" in data:
        raise InputDataError("expected examples keyed by input and output names, found a spec (it has 'layers')")
    arrays = {}
    for key, value in data.items():
        try:
            array = np.asarray(value)
        except ValueError:
            raise InputDataError(
                f"key {key!r}: expected a rectangular nested list of numbers, found ragged rows"
            ) from None
        if array.dtype.kind not in "iuf":
            raise InputDataError(f"key {key!r}: expected numbers, found {_kind(array)}")
        arrays[key] = array
    return arrays


def _kind(array: np.ndarray) -> str:
    return {"b": "true/false", "U": "strings", "O": "null, objects or ragged lists"}.get(
        array.dtype.kind, str(array.dtype)
    )


def _checked(arrays: dict[str, np.ndarray], graph: Graph, loss: str) -> Data:
    """Features for every input and a target for every output, of their shapes, N each, finite: else say which."""
    inputs = [i.name for i in graph.inputs]
    outputs = {o.name: o for o in graph.outputs}
    for key in arrays:
        if key not in inputs and key not in outputs:
            names = [*inputs, *outputs]
            raise InputDataError(
                f"expected keys naming the spec's inputs ({', '.join(inputs)}) and outputs ({', '.join(outputs)}), "
                f"found unknown key {key!r}{suggest(key, names)}"
            )
    for name, array in arrays.items():
        if array.dtype.kind not in "iuf":
            raise InputDataError(f"key {name!r}: expected real numbers, found dtype {array.dtype}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            where = [int(i) for i in np.argwhere(~np.isfinite(array))[0]]
            raise InputDataError(f"key {name!r}: expected finite numbers, found {array[tuple(where)]} at {where}")
    features = check_feeds(graph.widened(), {k: v for k, v in arrays.items() if k in inputs})
    count = next(iter(features.values())).shape[0]
    targets = {}
    for name, info in outputs.items():
        if name not in arrays:
            raise InputDataError(
                f"expected a target for output {name!r} (shape {['N', *info.shape]}), found none; given: "
                f"{', '.join(map(repr, arrays))}"
            )
        targets[name] = _target(name, arrays[name].astype(np.float64), info.shape, count, graph, loss)
    return Data(features, targets)


def _target(name: str, y: np.ndarray, shape: tuple[int, ...], count: int, graph: Graph, loss: str) -> np.ndarray:
    """A target as [N, *shape] float64: as given, [N] for a one-number output, or (cross_entropy into softmax) class
    indices, one per example, made one-hot."""
    if y.shape[0:1] != (count,):
        raise InputDataError(
            f"target {name!r}: expected {count} examples, as the features have, found {y.shape[0] if y.ndim else 0}"
        )
    act = graph.node(name).activation
    softmax = loss == "cross_entropy" and act is not None and act.name in ("softmax", "log_softmax")
    per_sample = y.shape[1:]
    if per_sample != shape and per_sample in ((), (1,)) and softmax and len(shape) == 1 and shape[0] > 1:
        classes = y.reshape(-1)
        wrong = (classes != np.round(classes)) | (classes < 0) | (classes >= shape[0])
        if wrong.any():
            k = int(np.argmax(wrong))
            raise InputDataError(
                f"target {name!r}: expected class indices 0 to {shape[0] - 1} (one per example, for {shape[0]} "
                f"classes) or one-hot rows of {shape[0]}, found {classes[k]:g} at example {k}"
            )
        return np.eye(shape[0])[classes.astype(np.int64)]
    if per_sample != shape:
        if math.prod(per_sample) == math.prod(shape) == 1:
            y = y.reshape(count, *shape)
        else:
            raise InputDataError(f"target {name!r}: expected shape {['N', *shape]}, found {list(y.shape)}")
    if loss == "cross_entropy" and ((y < 0) | (y > 1)).any():
        k = [int(i) for i in np.argwhere((y < 0) | (y > 1))[0]]
        raise InputDataError(
            f"target {name!r}: expected probabilities in [0, 1] for --loss cross_entropy, found {y[tuple(k)]:g} at {k}"
        )
    return y
