"""The ONNX exporter: lowers a Graph through each layer type's lowering to one ModelProto."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..errors import NNSpecError
from ..ir import Graph
from ..layers import LAYERS
from .model import ModelData
from .model import check as model_check

DEFAULT_OPSET = 17  # widely deployed (onnxruntime >= 1.11, TensorRT 8.5+), and has every operator a dense net needs
MIN_OPSET = 13  # Softmax/LogSoftmax act on one axis from 13 on; older opsets flatten, a different meaning
BATCH_DIM = "N"

_ELEM_TYPE = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,  # integer inputs (ids)
    np.dtype(np.int32): TensorProto.INT32,
}


def max_opset() -> int:
    """The newest opset the installed onnx package knows."""
    return onnx.defs.onnx_opset_version()


class Builder:
    """Collects nodes and initializers; node names carry the layer they belong to."""

    def __init__(self, opset: int, dtype: np.dtype) -> None:
        self.opset = opset
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.headers: list[onnx.TensorProto] = []  # each initializer's name, element type and dims
        self.arrays: dict[str, np.ndarray] = {}  # and its numbers
        self._names: set[str] = set()
        self._consts: dict[bytes, str] = {}  # a scalar's bytes: -0.0 and 0.0 are different constants
        self.scope = ""

    def _fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        self._names.add(name)

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        node_name = self._fresh(f"{self.scope}/{op_type}")
        output = out if out is not None else node_name  # an intermediate value is named after its node
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=node_name, **attrs))
        return output

    def const(self, value: float | np.ndarray, hint: str = "c") -> str:
        array = np.asarray(value, dtype=self.dtype)
        if array.ndim == 0:
            key = array.tobytes()
            if key in self._consts:
                return self._consts[key]
            name = self._fresh(f"const_{float(array):g}")
            self._consts[key] = name
        else:
            name = self._fresh(hint)
        # NOTE: the array is kept as it is (a layer's weights are the graph's own array): a model of 400 MB
        # is written from these buffers, with no copy in a TensorProto and none in its serialized form.
        self.headers.append(_header(array, name))
        self.arrays[name] = array if array.flags.c_contiguous else np.ascontiguousarray(array)
        return name

    @property
    def initializers(self) -> list[onnx.TensorProto]:
        """The initializers with their numbers (copied into them), for a model built by hand."""
        return [numpy_helper.from_array(self.arrays[t.name], t.name) for t in self.headers]


def _header(array: np.ndarray, name: str) -> onnx.TensorProto:
    """What numpy_helper.from_array makes of `array`, less its numbers (raw_data)."""
    tensor = onnx.TensorProto()
    tensor.dims.extend(array.shape)
    tensor.name = name
    tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    return tensor


EXTERNAL_MIN_BYTES = 1024  # tensors this large or larger go to the data file (onnx's own size_threshold)
# Offsets in the data file: tensors of 1 MiB or more start at multiples of 64 KiB (the granularity of memory
# maps on every system, so that a runtime may map each one), smaller ones at multiples of 64 bytes.
_LARGE, _PAGE, _WORD = 1 << 20, 1 << 16, 64


@dataclass
class Export:
    """An exported model whose initializers' numbers are held apart, as arrays (a layer's are the graph's own).

    `model` has each initializer's name, element type and dims but not its numbers; `arrays` has those, by
    name. From the two come the ModelProto (`proto`), the bytes of one self-contained file (`pieces`, the
    bytes `onnx.save` writes, with the arrays' buffers among them uncopied), a file and its data file
    (`external`), and the form runners take (`data`), none of which copies a weight.
    """

    model: onnx.ModelProto
    arrays: dict[str, np.ndarray]

    def proto(self) -> onnx.ModelProto:
        """The model as one ModelProto, the numbers copied into it."""
        from .model import inline

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        return inline(model, self.arrays)

    def pieces(self) -> list[bytes | memoryview]:
        """The self-contained model's bytes (`SerializeToString(deterministic=True)` of `proto()`), in parts.

        Protobuf writes a message's fields in the order of their numbers, a length-delimited field as its
        key, its length and its bytes: the model is written around its graph (field 7), the graph around
        its initializers (field 5), and each initializer as its header followed by its numbers (field 9).
        (tests/test_external_data.py checks the result against protobuf's own on every layer's examples.)
        """
        model_head, model_tail = _around(self.model, _MODEL_GRAPH)
        graph_head, graph_tail = _around(self.model.graph, _GRAPH_INITIALIZER)
        body: list[bytes | memoryview] = [graph_head]
        for tensor in self.model.graph.initializer:
            header, numbers = tensor.SerializeToString(deterministic=True), _buffer(self.arrays[tensor.name])
            raw = _key(_TENSOR_RAW_DATA, numbers.nbytes)
            body += [_key(_GRAPH_INITIALIZER, len(header) + len(raw) + numbers.nbytes), header, raw, numbers]
        body.append(graph_tail)
        graph_size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in body)
        return [model_head, _key(_MODEL_GRAPH, graph_size), *body, model_tail]

    def size(self) -> int:
        """The self-contained model's size in bytes, counted without writing it."""
        return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in self.pieces())

    def external(self, location: str) -> tuple[bytes, list[bytes | memoryview]]:
        """The model with its tensors of EXTERNAL_MIN_BYTES or more stored as external data in the file
        `location` (a name beside the model), and that file's bytes in parts: one after another, each at an
        aligned offset."""
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        data: list[bytes | memoryview] = []
        end = 0
        for tensor in model.graph.initializer:
            array = self.arrays[tensor.name]
            if array.nbytes < EXTERNAL_MIN_BYTES:
                tensor.raw_data = _buffer(array).tobytes()
                continue
            align = _PAGE if array.nbytes >= _LARGE else _WORD
            offset = -(-end // align) * align
            data += [bytes(offset - end), _buffer(array)]
            end = offset + array.nbytes
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(array.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
        return model.SerializeToString(deterministic=True), data

    def data(self, location: str = "") -> ModelData:
        """The model as runners take it: its large tensors as external data, given as the arrays themselves."""
        proto, _ = self.external(location or f"{self.model.graph.name}.onnx.data")
        return ModelData(proto, {n: a for n, a in self.arrays.items() if a.nbytes >= EXTERNAL_MIN_BYTES})


# field numbers in onnx.proto
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9


def _key(number: int, length: int) -> bytes:
    """A length-delimited field's key and length, as protobuf writes them."""
    return _varint(number << 3 | 2) + _varint(length)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _around(message: Any, number: int) -> tuple[bytes, bytes]:
    """The serialized fields of `message` numbered below `number`, and those above it."""
    before, after = type(message)(), type(message)()
    before.CopyFrom(message)
    after.CopyFrom(message)
    for desc in message.DESCRIPTOR.fields:
        if desc.number >= number:
            before.ClearField(desc.name)
        if desc.number <= number:
            after.ClearField(desc.name)
    return before.SerializeToString(deterministic=True), after.SerializeToString(deterministic=True)


def _buffer(array: np.ndarray) -> memoryview:
    """An array's numbers as little-endian bytes, as ONNX stores them: its own buffer where it can be."""
    if array.dtype.byteorder == ">" or (sys.byteorder == "big" and array.dtype.byteorder == "="):
        array = array.astype(array.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def to_onnx(graph: Graph, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Lower a Graph to an ONNX model that passes `onnx.checker.check_model(full_check=True)`."""
    return export(graph, opset).proto()


def export(graph: Graph, opset: int = DEFAULT_OPSET) -> Export:
    """Lower a Graph to an ONNX model that passes `onnx.checker.check_model(full_check=True)`, its
    initializers' numbers held apart (see Export)."""
    if not MIN_OPSET <= opset <= max_opset():
        raise NNSpecError(f"expected an opset from {MIN_OPSET} to {max_opset()} (the installed onnx), found {opset}")
    elem = _ELEM_TYPE[graph.dtype]
    g = Builder(opset, graph.dtype)
    for tensor in (*graph.inputs, *graph.nodes):
        g.reserve(tensor.name)
    # A lowering returns the name of the tensor that holds the layer's output: its own name, or, for a layer
    # that emits no node (dropout, an identity at inference), the tensor it passes on.
    holds: dict[str, str] = {}
    for node in graph.nodes:
        g.scope = node.name
        holds[node.name] = LAYERS[node.op].onnx(node, g, [holds.get(i, i) for i in node.inputs], node.name)
    for output in graph.outputs:
        if holds.get(output.name, output.name) != output.name:  # an output that is another tensor, named as such
            g.scope = output.name
            g.op("Identity", [holds[output.name]], output.name)
    inputs = [
        helper.make_tensor_value_info(i.name, elem_type_of(i.dtype) if i.dtype else elem, [BATCH_DIM, *i.shape])
        for i in graph.inputs
    ]
    outputs = [helper.make_tensor_value_info(o.name, elem, [BATCH_DIM, *o.shape]) for o in graph.outputs]
    body = helper.make_graph(
        g.nodes, graph.name, inputs, outputs, initializer=g.headers, doc_string=graph.description or ""
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        body,
        opset_imports=opsets,
        producer_name="nnspec",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    helper.set_model_props(model, {"nnspec.version": __version__, "nnspec.spec_sha256": graph.fingerprint})
    exported = Export(model, g.arrays)
    # full_check runs strict shape inference itself; the inferred intermediate shapes are not stored,
    # since every graph input and output already carries its full shape. The checker sees the large
    # tensors as typed graph inputs: given their numbers, it would serialize and parse them all again.
    held = exported.data()
    model_check(onnx.load_from_string(held.proto), held.weights, full_check=True)
    return exported


STRUCTURE_KEY = "nnspec.spec"  # metadata: the spec without its numbers (see nnspec.api.structure)


def set_structure(model: onnx.ModelProto, text: str) -> onnx.ModelProto:
    """Record the spec's structure in the model's metadata, for a lossless `nnspec import`."""
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, STRUCTURE_KEY: text})
    return model


def to_bytes(model: onnx.ModelProto) -> bytes:
    """The model's bytes, the same for the same model every time; refused above protobuf's 2 GiB."""
    from .. import limits

    size = model.ByteSize()
    if size > limits.PROTOBUF_MAX_BYTES:
        from ..errors import LimitError

        raise LimitError(
            f"expected an ONNX model of at most 2 GiB (protobuf's limit for one message), found "
            f"{limits.human_bytes(size)} of it: store its weights as external data (`nnspec compile` does, above "
            "2 GiB or with --external-data)"
        )
    return model.SerializeToString(deterministic=True)


def elem_type_of(dtype: np.dtype) -> int:
    return _ELEM_TYPE[np.dtype(dtype)]


def probe_model(opset: int) -> bytes:
    """A one-node model stamped with `opset`, to ask a runtime whether it supports that opset."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    body = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(body, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    return model.SerializeToString()


def tensor_bytes(array: np.ndarray, name: str) -> bytes:
    """A serialized TensorProto, as onnxruntime's test runner reads from `test_data_set_*/*.pb`."""
    return numpy_helper.from_array(np.ascontiguousarray(array), name).SerializeToString()
