"""`nnspec import`: lift an ONNX model into a spec document and its weights.

The model is read under the hostile-input rules, cut to the outputs asked for, upgraded to an opset with
today's operator meanings, and cleaned (constants folded, identities removed, activations recognised).
Then each node is offered to the layer types' `lift` parts in graph order; what no type claims is listed
whole. The document is validated by the same `Spec` and graph resolution as any spec.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .._version import __version__
from ..activations import Activation
from ..errors import LimitError, ModelFileError, NNSpecError, OutputError, first_line
from ..fields import NAME_RE
from ..files import json_text
from ..layers import LAYERS
from ..lifting import ACTIVATION_OP, Lifted, OnnxNode, Unliftable
from ..limits import PROTOBUF_MAX_BYTES, Limits, human_bytes
from . import patterns
from .export import MIN_OPSET
from .model import tensors

# Nodes whose outputs are not a function of their inputs, never folded.
_NONDETERMINISTIC = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"})
# Operators whose `axes` moved from an attribute to an input (opset 13 or 18): read as the attribute.
_AXES_INPUT = frozenset({"Squeeze", "Unsqueeze", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"})
_FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64"}
_INT_TYPES = {onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}


class UnliftableModel(NNSpecError):
    """The model has nodes no layer type of the format can hold (listed all at once)."""


@dataclass
class Imported:
    """A lifted model: the spec document (weights by npz key), the arrays, and what a reviewer should know."""

    document: dict[str, Any]
    arrays: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    model: onnx.ModelProto | None = None  # the file as read (external data loaded), to check the spec against
    source: str = ""  # the model's path, for messages


# --- reading ------------------------------------------------------------------------------------


def read_model(path: Path, limits: Limits) -> onnx.ModelProto:
    """Parse an ONNX file; external data is read only from files inside the model's own folder."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > PROTOBUF_MAX_BYTES:
            raise ModelFileError(
                f"expected an ONNX file of at most 2 GiB (protobuf's limit), found {human_bytes(size)}", source=source
            )
        # a model file is its weights and its graph: no larger than the weight and spec budgets together
        budget = limits.max_weight_bytes + limits.max_spec_bytes
        if size > budget:
            raise LimitError(
                f"expected an ONNX file of at most {human_bytes(budget)} (NNSPEC_MAX_WEIGHT_BYTES + "
                f"NNSPEC_MAX_SPEC_BYTES), found {human_bytes(size)}; it is refused unread",
                source=source,
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError("no such file", source=source) from None
    except IsADirectoryError:
        raise ModelFileError("expected an ONNX file, found a folder", source=source) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read: {exc.strerror}", source=source) from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's decode errors have no common base class
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    if not model.graph.node and not model.graph.output:
        raise ModelFileError("not a valid ONNX model: it has no graph", source=source)
    _load_external(model, path.parent, limits, source)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker's errors have no common base class either
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    return model


def _load_external(model: onnx.ModelProto, folder: Path, limits: Limits, source: str) -> None:
    external = [t for t in tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return
    root = folder.resolve()
    total = 0
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise ModelFileError(
                f"expected external data inside the model's folder, found tensor {tensor.name!r} stored in "
                f"{location!r} (nnspec reads no file outside it)",
                source=source,
            )
        if not target.is_file():
            raise ModelFileError(f"tensor {tensor.name!r} is stored in {location!r}, which is missing", source=source)
        length = int(info.get("length", target.stat().st_size - int(info.get("offset", 0))))
        if int(info.get("offset", 0)) + length > target.stat().st_size:
            raise ModelFileError(f"tensor {tensor.name!r} reaches past the end of {location!r}", source=source)
        total += length
    if total > limits.max_weight_bytes:
        raise LimitError(
            f"expected at most {human_bytes(limits.max_weight_bytes)} of weights (NNSPEC_MAX_WEIGHT_BYTES), found "
            f"{human_bytes(total)} in external data",
            source=source,
        )
    from onnx.external_data_helper import load_external_data_for_model

    load_external_data_for_model(model, str(root))


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


# --- cleaning -----------------------------------------------------------------------------------


def _cut(model: onnx.ModelProto, outputs: Sequence[str] | None, source: str) -> onnx.ModelProto:
    """The model with only the nodes that compute the named outputs (all outputs when None)."""
    names = [o.name for o in model.graph.output]
    if outputs:
        unknown = [o for o in outputs if o not in names]
        if unknown:
            raise ModelFileError(
                f"expected outputs of the model ({', '.join(names)}), found {', '.join(map(repr, unknown))}",
                source=source,
            )
        wanted = list(dict.fromkeys(outputs))
    else:
        wanted = names
    producer = {out: node for node in model.graph.node for out in node.output}
    needed: set[int] = set()
    stack = list(wanted)
    seen: set[str] = set()
    while stack:
        value = stack.pop()
        if value in seen or value not in producer:
            continue
        seen.add(value)
        node = producer[value]
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    keep = [n for n in model.graph.node if id(n) in needed]
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(keep)
    used = {i for n in keep for i in n.input} | set(wanted)
    del cut.graph.output[:]
    cut.graph.output.extend([o for o in model.graph.output if o.name in wanted])
    inits = [t for t in model.graph.initializer if t.name in used]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(inits)
    inputs = [i for i in model.graph.input if i.name in used]
    del cut.graph.input[:]
    cut.graph.input.extend(inputs)
    return cut


def _upgrade(model: onnx.ModelProto, notes: list[str], source: str) -> onnx.ModelProto:
    opset = default_opset(model)
    if opset >= MIN_OPSET:
        return model
    import onnx.version_converter

    foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        return model  # the converter handles the default domain only; those nodes are refused below
    try:
        upgraded = onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter raises bare RuntimeErrors
        raise ModelFileError(
            f"cannot upgrade the model from opset {opset} to {MIN_OPSET} (onnx.version_converter: {first_line(exc)})",
            source=source,
        ) from None
    notes.append(f"upgraded from opset {opset} to {MIN_OPSET} by onnx.version_converter before lifting")
    return upgraded


def _attrs(node: onnx.NodeProto, opset: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        for name, attr in schema.attributes.items():
            if attr.default_value.type != onnx.AttributeProto.UNDEFINED:
                values[name] = _plain(helper.get_attribute_value(attr.default_value))
    except onnx.defs.SchemaError:
        pass
    for attr in node.attribute:
        values[attr.name] = _plain(helper.get_attribute_value(attr))
    return values


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class View:
    """The cleaned model, as the lifts and patterns see it (nnspec.lifting.ModelView)."""

    def __init__(self, model: onnx.ModelProto, dtype: np.dtype, notes: list[str], limits: Limits) -> None:
        self.limits = limits
        self.opset = default_opset(model)
        self.dtype = dtype
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.shapes, self.types = _inferred(model)
        self.graph_outputs = [o.name for o in model.graph.output]
        self.outputs = list(self.graph_outputs)  # the values that hold them, once identities are removed
        self.inputs = [i.name for i in model.graph.input if i.name not in self.consts]
        self.aliases: dict[str, str] = {}
        folded = 0
        nodes: list[OnnxNode] = []
        for proto in model.graph.node:
            node = OnnxNode(
                proto.op_type if proto.domain in ("", "ai.onnx") else f"{proto.domain}.{proto.op_type}",
                proto.name,
                tuple(self._resolve(i) for i in proto.input),
                tuple(proto.output),
                _attrs(proto, self.opset),
            )
            if node.op == "Constant":
                self.consts[node.outputs[0]] = _constant_value(node)
                folded += 1
            elif self._identity(node):
                self.aliases[node.outputs[0]] = node.inputs[0]
                if node.outputs[0] in self.outputs:  # the layer computing the input takes the output's name
                    self.outputs[self.outputs.index(node.outputs[0])] = node.inputs[0]
            elif (
                node.inputs
                and all(not i or i in self.consts for i in node.inputs)
                and (node.op not in _NONDETERMINISTIC and "." not in node.op)
                and self._small(node)
            ):
                self._fold(proto, node)
                folded += 1
            else:
                nodes.append(self._normalized(node))
        if folded:
            notes.append(f"folded {folded} constant node(s) into the weights they compute")
        self.nodes = nodes
        self._index()

    def _identity(self, node: OnnxNode) -> bool:
        """Identity, or a Cast to the type the value already has; one whose output is a graph output only
        when its input is computed and is no graph output itself (else it stays, as a linear activation)."""
        same = node.op == "Identity" or (
            node.op == "Cast" and self.types.get(node.inputs[0]) == node.attrs.get("to") is not None
        )
        if not same:
            return False
        if node.outputs[0] not in self.outputs:
            return True
        source = node.inputs[0]
        return source not in self.consts and source not in self.inputs and source not in self.outputs

    def held(self, output: str) -> str:
        """The value that holds a graph output."""
        return self.outputs[self.graph_outputs.index(output)]

    def _index(self) -> None:
        self._producer = {out: n for n in self.nodes for out in n.outputs}
        self._consumers: dict[str, list[OnnxNode]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(n.inputs):  # a node that reads a value twice (x * x) is one reader
                self._consumers.setdefault(i, []).append(n)

    def _resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def _small(self, node: OnnxNode) -> bool:
        """A constant node is folded only when shape inference declares every output's size, within the
        parameter budget (an Expand or ConstantOfShape could otherwise ask for any amount of memory)."""
        total = 0
        for out in node.outputs:
            shape = self.shapes.get(out) if out else ()
            if shape is None or any(d is None for d in shape):
                return False
            total += int(np.prod(shape, dtype=np.float64))
        return total <= self.limits.max_parameters

    def _fold(self, proto: onnx.NodeProto, node: OnnxNode) -> None:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.inputs if i}
        single = onnx.NodeProto()
        single.CopyFrom(proto)
        del single.input[:]
        single.input.extend(node.inputs)
        graph = helper.make_graph(
            [single],
            "fold",
            [
                helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                for k, v in feeds.items()
            ],
            [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.outputs if o],
        )
        opsets = [helper.make_opsetid("", self.opset)]
        folded = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
        with np.errstate(all="ignore"):
            results = ReferenceEvaluator(folded).run(None, feeds)
        for out, value in zip([o for o in node.outputs if o], results, strict=True):
            self.consts[out] = np.asarray(value)

    def _normalized(self, node: OnnxNode) -> OnnxNode:
        """Axes given as a constant input read as the attribute (one form for every opset); axes >= 0 where known."""
        attrs = dict(node.attrs)
        inputs = node.inputs
        if node.op in _AXES_INPUT and len(inputs) > 1 and inputs[1] in self.consts:
            attrs["axes"] = [int(a) for a in self.consts[inputs[1]].reshape(-1)]
            inputs = inputs[:1]
        if node.op in ("Softmax", "LogSoftmax"):
            shape = self.shape(inputs[0])
            if shape is not None and attrs.get("axis") == len(shape) - 1:
                attrs["axis"] = -1
        return OnnxNode(node.op, node.name, inputs, node.outputs, attrs)

    # --- ModelView ---
    def const(self, value: str) -> np.ndarray | None:
        return self.consts.get(self._resolve(value)) if value else None

    def producer(self, value: str) -> OnnxNode | None:
        return self._producer.get(self._resolve(value))

    def consumers(self, value: str) -> list[OnnxNode]:
        return self._consumers.get(value, [])

    def sole_consumer(self, value: str) -> OnnxNode | None:
        readers = self.consumers(value)
        if len(readers) != 1 or value in self.outputs:
            return None
        return readers[0]

    def consumers_outside(self, value: str, nodes: Sequence[OnnxNode]) -> bool:
        if value in self.outputs:
            return True
        return any(all(r is not n for n in nodes) for r in self.consumers(value))

    def shape(self, value: str) -> tuple[int | None, ...] | None:
        return self.shapes.get(self._resolve(value))

    def replace(self, old: Sequence[OnnxNode], new: OnnxNode) -> None:
        """Swap a recognised group of nodes for the one node that stands for it."""
        gone = {id(n) for n in old}
        at = min(i for i, n in enumerate(self.nodes) if id(n) in gone)
        kept = [n for n in self.nodes if id(n) not in gone]
        kept.insert(min(at, len(kept)), new)
        self.nodes = _topological(kept, set(self.inputs) | set(self.consts))
        self._index()


def _topological(nodes: list[OnnxNode], ready: set[str]) -> list[OnnxNode]:
    done = set(ready)
    order: list[OnnxNode] = []
    pending = list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in done for i in n.inputs):
                order.append(n)
                done.update(n.outputs)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            order.extend(rest)  # a cycle or a value from nowhere; reported as unliftable later
            break
        pending = rest
    return order


def _constant_value(node: OnnxNode) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            if key == "value_float":
                return np.array(value, dtype=np.float32)
            if key == "value_floats":
                return np.array(value, dtype=np.float32)
            if key in ("value_int", "value_ints"):
                return np.array(value, dtype=np.int64)
            return np.asarray(value)
    raise UnliftableModel(f"Constant {node.name!r} holds no tensor the format can use")


def _inferred(model: onnx.ModelProto) -> tuple[dict[str, tuple[int | None, ...]], dict[str, int]]:
    """Each value's shape (None where a dim is unknown) and element type, as shape inference finds them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes are a help for the lifts, not a requirement
        inferred = model
    shapes, types = {}, {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        t = v.type.tensor_type
        if t.elem_type:
            types[v.name] = t.elem_type
        if t.HasField("shape"):
            shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return shapes, types


# --- recognising activations --------------------------------------------------------------------


def _recognise_activations(view: View) -> None:
    by_root = patterns.build_patterns(view.opset)
    for end in reversed(list(view.nodes)):
        if end not in view.nodes or len(end.outputs) != 1 or end.op not in by_root:
            continue
        found = patterns.match_at(by_root[end.op], end, view)
        if found is not None:
            _, node = found
            view.replace(node.attrs["nodes"], node)


# --- lifting ------------------------------------------------------------------------------------


def _lift_node(node: OnnxNode, view: View) -> tuple[Lifted | None, str | None]:
    for entry in LAYERS.values():
        if entry.lift is None:
            continue
        try:
            lifted = entry.lift(node, view)
        except Unliftable as exc:
            return None, f"{node.describe()}: {exc}"
        if lifted is not None:
            return lifted, None
    return None, None


def _fuse_activation(lifted: Lifted, view: View, keep: set[str]) -> Lifted:
    """A dense or conv layer takes in the activation that alone reads its output."""
    if "activation" not in LAYERS[lifted.type].spec.model_fields or "activation" in lifted.fields:
        return lifted
    nxt = view.sole_consumer(lifted.output)
    if nxt is None or nxt.op != ACTIVATION_OP or lifted.output in keep:
        return lifted
    fields = {**lifted.fields, "activation": nxt.attrs["activation"]}
    return Lifted(
        lifted.type, fields, lifted.params, lifted.sources, (*lifted.nodes, nxt), nxt.outputs[0], lifted.notes
    )


def _name_of(node: OnnxNode, value: str, kind: str) -> str | None:
    """A readable layer name: the module path PyTorch writes in node names (`/layer1/layer1.0/conv1/Conv` ->
    `layer1.0.conv1`; a bare index of nn.Sequential, `/3/Gemm`, -> `dense_3`), else the value's own name
    where it is a valid nnspec name."""
    parts = [p for p in node.name.split("/") if p][:-1] if node.name.startswith("/") else []
    if parts:
        qualified = ""
        for part in parts:
            qualified = (
                part if qualified and part.startswith(qualified + ".") else ".".join(filter(None, [qualified, part]))
            )
        candidate = re.sub(r"[^A-Za-z0-9_.\-]", "_", qualified)
        if candidate and not NAME_RE.match(candidate):
            candidate = f"{kind}_{candidate}"
        if NAME_RE.match(candidate):
            return candidate
    return value if NAME_RE.match(value) else None


def _valid_name(raw: str, fallback: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", raw)[:128]
    if not name or not NAME_RE.match(name):
        name = f"{fallback}_{name}"[:128] if name else fallback
    return name if NAME_RE.match(name) else fallback


def lift_model(
    path: str | Path,
    *,
    outputs: Sequence[str] | None = None,
    name: str | None = None,
    weights_file: str = "weights.npz",
    limits: Limits | None = None,
) -> Imported:
    """Lift the ONNX model at `path` into a spec document whose weights are keys of `weights_file`."""
    path = Path(path)
    source = str(path)
    limits = limits or Limits.from_env()
    notes: list[str] = []
    original = read_model(path, limits)
    producer = " ".join(p for p in (original.producer_name, original.producer_version) if p) or "an unnamed producer"
    opset = default_opset(original)
    model = _upgrade(_cut(original, outputs, source), notes, source)
    dtype = _network_dtype(model, source)
    view = View(model, dtype, notes, limits)
    _recognise_activations(view)

    inputs, renamed = _inputs(model, view, dtype, source)
    graph_outputs = [o.name for o in model.graph.output]
    recorded = None if outputs else _recorded(original)
    recorded_names = set(_layer_names(recorded)) if recorded else set()
    keep = set(view.outputs) | recorded_names
    layers: list[Lifted] = []
    gaps: list[str] = []
    claimed: set[int] = set()
    for node in view.nodes:
        if id(node) in claimed:
            continue
        lifted, refusal = _lift_node(node, view)
        if lifted is None:
            gaps.append(refusal or _gap(node))
            continue
        lifted = _fuse_activation(lifted, view, keep)
        inner = {o for n in lifted.nodes for o in n.outputs} - {lifted.output}
        if any(view.consumers_outside(v, lifted.nodes) for v in inner):
            gaps.append(f"{node.describe()}: a value inside its {lifted.type} pattern is read elsewhere")
            continue
        claimed.update(id(n) for n in lifted.nodes)
        layers.append(lifted)
    if gaps:
        raise UnliftableModel(
            f"the model has {len(gaps)} node(s) the format has no layer for:\n" + "\n".join(f"  {g}" for g in gaps),
            source=source,
        )
    document, arrays = _document(
        model,
        view,
        layers,
        inputs,
        renamed,
        graph_outputs,
        dtype,
        weights_file,
        name or _graph_name(model),
        source,
        keep_defaults=recorded is not None,
        recorded_names=recorded_names,
    )
    if recorded is not None:
        overlaid = _overlay(recorded, document, arrays)
        if overlaid is None:
            notes.append("its recorded nnspec spec does not match its graph (edited since?): lifted from the graph")
        else:
            document, arrays = overlaid
            notes.append("the layers as its recorded nnspec spec has them, every weight from the model itself")
    notes.append(f"imported from {path.name}: {producer}, opset {opset}")
    document["description"] = _description(original, path, producer, opset, notes, renamed)
    return Imported(document, arrays, notes, original, source)


def _recorded(model: onnx.ModelProto) -> dict[str, Any] | None:
    """The spec (its numbers left out) that nnspec records in the models it compiles, if well formed."""
    from .export import STRUCTURE_KEY

    text = next((p.value for p in model.metadata_props if p.key == STRUCTURE_KEY), None)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    ok = isinstance(data, dict) and isinstance(data.get("layers"), list) and isinstance(data.get("inputs"), list)
    ok = ok and all(isinstance(layer, dict) and isinstance(layer.get("type"), str) for layer in data["layers"])
    return data if ok and all(isinstance(i, dict) for i in data["inputs"]) else None


def _layer_names(document: Mapping[str, Any]) -> list[str]:
    from ..graph import auto_names

    pairs = [
        (layer["type"], layer.get("name") if isinstance(layer.get("name"), str) else None)
        for layer in document["layers"]
    ]
    return auto_names(pairs, [str(i.get("name")) for i in document["inputs"]])


def _overlay(
    recorded: dict[str, Any], document: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The recorded spec with each of its weight fields (`true`) taken from the lifted layer of the same name
    and type; None where a recorded layer has no such counterpart (the graph was edited)."""
    lifted = {entry["name"]: entry for entry in document["layers"]}
    merged = json.loads(json.dumps(recorded))
    used: set[str] = set()
    for layer, layer_name in zip(merged["layers"], _layer_names(recorded), strict=True):
        for key, value in list(layer.items()):
            if value is not True:
                continue
            twin = lifted.get(layer_name)
            if twin is None or twin["type"] != layer["type"] or not isinstance(twin.get(key), dict):
                return None
            layer[key] = twin[key]
            used.add(twin[key]["key"])
    merged["name"] = document["name"]
    merged.pop("description", None)
    return merged, {key: arrays[key] for key in arrays if key in used}


def _gap(node: OnnxNode) -> str:
    if node.op == ACTIVATION_OP:
        return f"{node.describe()}: an activation that reads no layer"
    return node.describe()


def _network_dtype(model: onnx.ModelProto, source: str) -> np.dtype:
    inits = {t.name for t in model.graph.initializer}
    values = [v for v in [*model.graph.input, *model.graph.output] if v.name not in inits]
    types = [v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")]
    others = [v.name for v in values if not v.type.HasField("tensor_type")]
    if others:
        raise UnliftableModel(
            f"expected tensors, found {', '.join(map(repr, others))}, which are not (a sequence or a map, such as "
            "ZipMap writes): import the tensor outputs with --outputs",
            source=source,
        )
    floats = {_FLOAT_TYPES[t] for t in types if t in _FLOAT_TYPES}
    if len(floats) > 1:
        raise UnliftableModel("expected one float type for the whole network, found float32 and float64", source=source)
    others = [t for t in types if t not in _FLOAT_TYPES and t not in _INT_TYPES]
    if others:
        found = ", ".join(onnx.TensorProto.DataType.Name(t) for t in others)
        raise UnliftableModel(
            f"expected float32 or float64 values (int64/int32 ids for embeddings), found {found} inputs or outputs",
            source=source,
        )
    return np.dtype(floats.pop() if floats else "float32")


def _graph_name(model: onnx.ModelProto) -> str:
    return _valid_name(model.graph.name or "imported", "imported")


def _inputs(
    model: onnx.ModelProto, view: View, dtype: np.dtype, source: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    specs, renamed = [], {}
    taken: set[str] = set()
    for value in model.graph.input:
        if value.name in view.consts:
            continue
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        if len(dims) < 2 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            raise UnliftableModel(
                f"input {value.name!r} has dims {dims}: expected a batch axis, then fixed per-sample sizes",
                source=source,
            )
        name = _unique(_valid_name(value.name, "input"), taken)
        if name != value.name:
            renamed[name] = value.name
        entry: dict[str, Any] = {"name": name, "shape": dims[1:]}
        if t.elem_type in _INT_TYPES:
            entry["dtype"] = _INT_TYPES[t.elem_type]
        elif _FLOAT_TYPES.get(t.elem_type) != dtype.name:
            raise UnliftableModel(f"input {value.name!r} is not {dtype.name}", source=source)
        specs.append(entry)
    return specs, renamed


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _document(
    model: onnx.ModelProto,
    view: View,
    layers: list[Lifted],
    inputs: list[dict[str, Any]],
    renamed: dict[str, str],
    graph_outputs: list[str],
    dtype: np.dtype,
    weights_file: str,
    name: str,
    source: str,
    keep_defaults: bool = False,
    recorded_names: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    holds: dict[str, str] = {renamed_inv: spec for spec, renamed_inv in renamed.items()}
    holds.update({i["name"]: i["name"] for i in inputs if i["name"] not in renamed})
    taken = {i["name"] for i in inputs}
    # graph outputs name the layers that compute them; other layers are named after their nodes
    out_names: dict[str, str] = {}  # the value holding a graph output -> its layer's name
    onnx_name: dict[str, str] = {}
    for output in graph_outputs:
        value = view.held(output)
        out_names[value] = _unique(_valid_name(output, "output"), taken)
        onnx_name[value] = output
    arrays: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    previous: str | None = inputs[0]["name"] if inputs else None
    for i, lifted in enumerate(layers):
        if lifted.output in recorded_names:  # a model nnspec compiled names its values after the layers
            layer_name = lifted.output
        elif lifted.output in out_names:
            layer_name = out_names[lifted.output]
            if layer_name != onnx_name[lifted.output]:
                renamed[layer_name] = onnx_name[lifted.output]
        else:
            first = lifted.nodes[0]
            layer_name = _unique(
                _name_of(first, lifted.output, lifted.type) or f"{lifted.type}_{i}", taken | set(out_names.values())
            )
        taken.add(layer_name)
        try:
            sources = [holds[s] for s in lifted.sources]
        except KeyError as exc:
            raise UnliftableModel(
                f"{lifted.nodes[0].describe()} reads {exc.args[0]!r}, which no layer or input computes", source=source
            ) from None
        entry: dict[str, Any] = {"type": lifted.type, "name": layer_name}
        if sources != [previous]:
            entry["inputs"] = sources
        for key, value in lifted.fields.items():
            entry[key] = value.to_json() if isinstance(value, Activation) else value
            if not _finite(entry[key]):
                raise UnliftableModel(
                    f"{lifted.nodes[-1].describe()}: expected finite numbers for its {key}, found {entry[key]!r}",
                    source=source,
                )
        for key, array in lifted.params.items():
            if key in lifted.defaults and not keep_defaults:
                continue
            _check_param(array, dtype, lifted, key, source)
            arrays[f"{layer_name}.{key}"] = np.ascontiguousarray(array)
            entry[key] = {"file": weights_file, "key": f"{layer_name}.{key}"}
        entries.append(entry)
        holds[lifted.output] = layer_name
        previous = layer_name
    outputs = []
    computed = {lifted.output for lifted in layers}
    for output in graph_outputs:
        value = view.held(output)
        if value not in computed:
            raise UnliftableModel(f"output {output!r} is computed by no layer (an input or a constant)", source=source)
        outputs.append(holds[value])
    document: dict[str, Any] = {"format": "nnspec/1", "name": name, "description": ""}
    if dtype != np.float32:
        document["dtype"] = dtype.name
    document["inputs"] = inputs
    document["layers"] = entries
    if outputs != [entries[-1]["name"]]:
        document["outputs"] = outputs
    if renamed:
        document["onnx_names"] = dict(renamed)
    return document, arrays


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _check_param(array: np.ndarray, dtype: np.dtype, lifted: Lifted, key: str, source: str) -> None:
    if array.dtype != dtype:
        raise UnliftableModel(
            f"{lifted.nodes[0].describe()}: its {key} are {array.dtype}, expected {dtype.name} like the network "
            "(a cast inside the model the format cannot hold)",
            source=source,
        )


def _description(
    model: onnx.ModelProto, path: Path, producer: str, opset: int, notes: list[str], renamed: Mapping[str, str]
) -> str:
    lines = [f"Imported by nnspec {__version__} from {path.name}, written by {producer} at opset {opset}."]
    if model.graph.doc_string:
        lines.append(model.graph.doc_string.strip())
    lines += [n[0].upper() + n[1:] + "." for n in notes if not n.startswith("imported from")]
    if renamed:
        lines.append(
            "Renamed (not valid nnspec names; onnx_names maps them back): "
            + ", ".join(f"{onnx_name!r} as {spec!r}" for spec, onnx_name in renamed.items())
            + "."
        )
    return " ".join(lines)


# --- writing ------------------------------------------------------------------------------------


class Staged:
    """An imported spec and its weights written under temporary names beside the target, loaded and
    validated like any spec; `commit` renames both into place, `discard` (or an error) removes them."""

    def __init__(self, imported: Imported, target: Path) -> None:
        from ..api import graph, load
        from ..files import atomic_write

        self.target = target
        self.weights = target.with_suffix(".npz")
        folder = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            raise OutputError(f"expected a file name to write, found a folder: {target}")
        if not folder.is_dir():
            raise OutputError(f"folder {folder} does not exist")
        self._npz = self._json = folder / ""  # nothing staged yet
        try:
            self._npz = _temporary(folder, self.weights.name)
            self._json = _temporary(folder, target.name)
            buffer = io.BytesIO()
            np.savez(buffer, **imported.arrays)
            self._npz.write_bytes(buffer.getvalue())
            staged = _with_weights_file(imported.document, self._npz.name)
            self._json.write_text(json_text(staged))
            try:
                self.spec = load(self._json)
                graph(self.spec)  # shapes, wiring and weights resolved as for any spec
            except NNSpecError as exc:  # a lift that wrote what the format refuses: say where, in the model's terms
                exc.source = None
                raise UnliftableModel(
                    f"the spec lifted from it is not valid: {exc}", source=imported.source or None
                ) from None
            self.text = json_text(_with_weights_file(imported.document, self.weights.name))
            atomic_write(self._json, self.text.encode())
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write beside {target}: {exc.strerror or exc}") from None
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        os.replace(self._npz, self.weights)
        os.replace(self._json, self.target)

    def discard(self) -> None:
        for path in (self._npz, self._json):
            if path.is_file():
                path.unlink(missing_ok=True)


def _temporary(folder: Path, name: str) -> Path:
    stem, dot, suffix = name.rpartition(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp.{suffix}", dir=folder)  # keeps the suffix
    os.close(fd)
    return Path(tmp)


def _with_weights_file(document: Mapping[str, Any], file: str) -> dict[str, Any]:
    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"file", "key"}:
                return {"file": file, "key": value["key"]}
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return swap(dict(document))
