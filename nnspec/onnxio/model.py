"""Reading ONNX models: loading with clear errors, their interface, and cuts for tracing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import onnx
from onnx import helper


def load_model(data: bytes, source: str) -> onnx.ModelProto:
    """Parse ONNX bytes, with a clear error for anything that is not a valid, self-contained model.

    A tensor stored as external data names a file to read; nnspec refuses it before anything reads
    it, wherever it points (models nnspec compiles always hold their weights inside).
    """
    from ..errors import ModelFileError, first_line

    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's decode errors have no common base class
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    for tensor in tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
            raise ModelFileError(
                f"expected a self-contained ONNX model, found tensor {tensor.name!r} stored in the external file "
                f"{where!r} (nnspec reads no file a model names)",
                source=source,
            )
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker's errors have no common base class either
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    return model


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a graph holds: initializers and tensor attributes, in subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                yield from tensors(sub)


def interface(model: onnx.ModelProto) -> dict[str, Any]:
    """Names, dims and element types of a model's inputs and outputs, plus its nnspec metadata."""

    def describe(values: Sequence[onnx.ValueInfoProto]) -> dict[str, tuple[list[int | str], int]]:
        out = {}
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out[v.name] = (dims, t.elem_type)
        return out

    initializers = {i.name for i in model.graph.initializer}
    return {
        "inputs": describe([i for i in model.graph.input if i.name not in initializers]),
        "outputs": describe(model.graph.output),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "graph_name": model.graph.name,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }


def with_outputs(data: bytes, names: Sequence[str]) -> bytes:
    """The model with every named intermediate value also exposed as a graph output (for tracing).

    Each exposed output takes its type and shape from shape inference, so the model stays valid.
    """
    model = onnx.load_from_string(data)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    produced = {out for node in model.graph.node for out in node.output}
    existing = {o.name for o in model.graph.output}
    elem = model.graph.output[0].type.tensor_type.elem_type  # layer outputs are floats; inputs may be ids
    for name in names:
        if name in produced and name not in existing:
            info = inferred.get(name) or helper.make_tensor_value_info(name, elem, None)
            model.graph.output.append(info)
    return model.SerializeToString()


def extract(data: bytes, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """The sub-model that computes `outputs` from the values `inputs` (onnx.utils.Extractor)."""
    from onnx.utils import Extractor

    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))  # the cut needs intermediate types
    return Extractor(model).extract_model(list(inputs), list(outputs)).SerializeToString()
