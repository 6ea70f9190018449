"""The ONNX exporter: lowers a Graph through each layer type's lowering to one ModelProto."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .._version import __version__
from ..errors import NNSpecError
from ..ir import Graph
from ..layers import LAYERS

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
        self.initializers: list[onnx.TensorProto] = []
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
        self.initializers.append(numpy_helper.from_array(array, name))
        return name


def to_onnx(graph: Graph, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Lower a Graph to an ONNX model that passes `onnx.checker.check_model(full_check=True)`."""
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
        g.nodes, graph.name, inputs, outputs, initializer=g.initializers, doc_string=graph.description or ""
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
    # full_check runs strict shape inference itself; the inferred intermediate shapes are not stored,
    # since every graph input and output already carries its full shape (and a second pass over
    # the weights doubles the export time of large models).
    onnx.checker.check_model(model, full_check=True)
    return model


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
            f"{limits.human_bytes(size)} of it: lower NNSPEC_MAX_WEIGHT_BYTES so that such specs are refused when loaded"
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
