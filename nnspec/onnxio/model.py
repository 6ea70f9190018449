"""Reading ONNX models: loading with clear errors, external data confined to the model's folder, their
interface, and cuts for tracing."""

from __future__ import annotations

import math
import mmap
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

EXTERNAL = TensorProto.EXTERNAL


@dataclass(frozen=True)
class ModelData:
    """An ONNX model to run: its protobuf's bytes, and by name the numbers of the initializers it stores as
    external data (the exporter's own arrays, or read-only maps of the model's data file). Runners hand
    these arrays to the runtime as they are, so a model over protobuf's 2 GiB runs, and nothing is copied."""

    proto: bytes
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)


Model = bytes | ModelData  # what runners and the functions below take: a self-contained model's bytes, or both

# Element types read from a data file as maps; any other type is read into the model (rare, and small).
_MAPPED = {
    t: np.dtype(helper.tensor_dtype_to_np_dtype(t))
    for t in (
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.INT8,
        TensorProto.INT16,
        TensorProto.INT32,
        TensorProto.INT64,
        TensorProto.UINT8,
        TensorProto.UINT16,
        TensorProto.UINT32,
        TensorProto.UINT64,
        TensorProto.BOOL,
    )
}


def load_model(data: Model, source: str, folder: Path | None = None) -> onnx.ModelProto:
    """Parse and check a model; see `open_model`."""
    return open_model(data, source, folder)[0]


def open_model(data: Model, source: str, folder: Path | None = None) -> tuple[onnx.ModelProto, ModelData]:
    """A model parsed and checked, with a clear error for anything that is not a valid ONNX model, and
    what a runner takes to run it.

    External data is read only from plain files inside `folder` (the model file's folder), named by a
    relative path without `..` that no link leads out of, each tensor's extent within its file, all of them
    within NNSPEC_MAX_WEIGHT_BYTES; initializers are mapped read-only, not read, and other tensors (node
    attributes, subgraphs) are read into the returned model. Bytes without a folder must be self-contained.
    """
    from ..errors import ModelFileError, first_line

    given = data if isinstance(data, ModelData) else ModelData(bytes(data))
    try:
        model = onnx.load_from_string(given.proto)
    except Exception as exc:  # protobuf's decode errors have no common base class
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    found = list(tensors(model.graph))  # the graph's own initializers first
    external = [(t, k < len(model.graph.initializer)) for k, t in enumerate(found) if t.data_location == EXTERNAL]
    weights: dict[str, np.ndarray] = {}
    if external and given.weights:  # an export's own arrays, for its main-graph initializers
        missing = [t.name for t, initializer in external if not initializer or t.name not in given.weights]
        if missing:
            raise ModelFileError(f"expected an array for external tensor {missing[0]!r}, found none", source=source)
        weights = {t.name: given.weights[t.name] for t, _ in external}
    elif external and folder is None:
        tensor = external[0][0]
        where = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise ModelFileError(
            f"expected a self-contained ONNX model, found tensor {tensor.name!r} stored in the external "
            f"file {where!r} (a model given as bytes has no folder to read it from: give its path)",
            source=source,
        )
    elif external:
        assert folder is not None
        weights = _read_external(external, folder, source)
    # tensors read into the model (not mapped) are part of what the runners take
    proto = given.proto if len(weights) == len(external) else model.SerializeToString()
    try:
        check(model, weights, serialized=proto)
    except Exception as exc:  # the checker's errors have no common base class either
        raise ModelFileError(f"not a valid ONNX model: {first_line(exc)}", source=source) from None
    return model, ModelData(proto, weights)


def _read_external(external: list[tuple[onnx.TensorProto, bool]], folder: Path, source: str) -> dict[str, np.ndarray]:
    """The external data of a model's tensors (each with whether it is a main-graph initializer), every location
    checked before anything is read: initializers of the usual element types as read-only maps of their files
    (returned by name), the rest read into the tensors themselves."""
    from ..errors import LimitError
    from ..limits import Limits, human_bytes

    limits = Limits.from_env()
    root = folder.resolve()
    extents = [(tensor, initializer, *_extent(tensor, root, source)) for tensor, initializer in external]
    total = sum(length for *_, length in extents)
    if total > limits.max_weight_bytes:
        raise LimitError(
            f"expected at most {human_bytes(limits.max_weight_bytes)} of weights (NNSPEC_MAX_WEIGHT_BYTES), found "
            f"{human_bytes(total)} in external data",
            source=source,
        )
    maps: dict[Path, mmap.mmap] = {}
    weights = {}
    for tensor, initializer, path, offset, length in extents:
        if length and path not in maps:
            with path.open("rb") as f:
                maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        content = maps[path] if length else b""
        dtype = _MAPPED.get(tensor.data_type)
        if initializer and dtype is not None:
            array = np.frombuffer(content, dtype, length // dtype.itemsize, offset if length else 0)
            array = array.reshape(tuple(tensor.dims))
            weights[tensor.name] = array if array.flags.aligned else array.copy()  # runtimes want aligned numbers
        else:
            tensor.raw_data = content[offset : offset + length]
            tensor.ClearField("data_location")
            tensor.ClearField("external_data")
    return weights


def _extent(tensor: onnx.TensorProto, root: Path, source: str) -> tuple[Path, int, int]:
    """The file, offset and length of a tensor's external data; ModelFileError naming the tensor and its
    location unless that is a plain file inside `root` and the extent lies within it."""
    from ..errors import ModelFileError

    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")

    def refuse(found: str, expected: str = "stored in a file inside the model's folder") -> ModelFileError:
        return ModelFileError(
            f"expected tensor {tensor.name!r} {expected}, found the location {location!r}: {found} (nnspec reads "
            f"no file outside {root})",
            source=source,
        )

    parts = location.replace("\\", "/").split("/")
    if not location:
        raise refuse("it names no file")
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() or ":" in parts[0]:
        raise refuse("an absolute path")
    if ".." in parts:
        raise refuse("'..' leads out of the folder")
    target = (root / location).resolve()
    if not target.is_relative_to(root):
        raise refuse(f"a link to {target}, outside the folder")
    if not target.is_file():
        raise refuse("no such file" if not target.exists() else "not a plain file")
    size = target.stat().st_size
    dtype = _MAPPED.get(tensor.data_type)
    try:
        offset = int(info.get("offset", "0"))
        nbytes = math.prod(tensor.dims) * dtype.itemsize if dtype is not None else size - offset
        length = int(info.get("length", nbytes))  # none given: the tensor's size (other types: the rest of the file)
    except ValueError:
        raise refuse(
            f"offset {info.get('offset')!r}, length {info.get('length')!r}", "at whole-number offsets"
        ) from None
    if min(offset, length) < 0 or (dtype is not None and length != nbytes) or offset + length > size:
        raise refuse(
            f"bytes {offset} to {offset + length} of a {size}-byte file",
            f"({list(tensor.dims)} {TensorProto.DataType.Name(tensor.data_type).lower()}, {nbytes} bytes) within its file",
        )
    return target, offset, length


def check(
    model: onnx.ModelProto, held: Collection[str] = (), *, full_check: bool = False, serialized: bytes | None = None
) -> None:
    """onnx.checker on `model`, whose initializers named in `held` are stored as external data: the checker
    would look for their files in the working folder, so it sees them as graph inputs of their type instead.
    `serialized`: the model's own bytes, checked as they are where nothing is held (the checker takes bytes; a
    ModelProto it serializes first: 9 ms for 16 MB of weights)."""
    if serialized is not None and not held:
        onnx.checker.check_model(serialized, full_check=full_check)
        return
    if held:
        visible = onnx.ModelProto()
        visible.CopyFrom(model)
        graph = visible.graph
        inputs = {i.name for i in graph.input}
        kept = [t for t in graph.initializer if t.name not in held]
        for t in graph.initializer:
            if t.name in held and t.name not in inputs:
                graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        del graph.initializer[:]
        graph.initializer.extend(kept)
        model = visible
    onnx.checker.check_model(model, full_check=full_check)


def inline(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """`model` with the numbers of its initializers named in `weights` written into it (a copy of each)."""
    for tensor in model.graph.initializer:
        if tensor.name in weights:
            array = weights[tensor.name]
            tensor.raw_data = np.asarray(array, array.dtype.newbyteorder("<")).tobytes()
            tensor.ClearField("data_location")
            tensor.ClearField("external_data")
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


def with_outputs(data: Model, names: Sequence[str]) -> Model:
    """The model with every named intermediate value also exposed as a graph output (for tracing); its
    external weights, if any, are the same arrays.

    Each exposed output takes its type and shape from shape inference (a value it leaves untyped takes the
    element type of the model's first output, no shape), so the model stays valid. The weights are neither inferred over nor
    copied: inference runs on the graph with its large initializers as inputs of their type and shape, and the
    outputs are appended to the model's own bytes as a second ModelProto, which protobuf merges into the first.
    """
    proto = data.proto if isinstance(data, ModelData) else data
    model = onnx.load_from_string(proto)
    produced = {out for node in model.graph.node for out in node.output}
    existing = {o.name for o in model.graph.output}
    wanted = [name for name in dict.fromkeys(names) if name in produced and name not in existing]
    if not wanted:
        return data
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(_without_weights(model)).graph.value_info}
    elem = model.graph.output[0].type.tensor_type.elem_type  # layer outputs are floats; inputs may be ids
    outputs = [inferred.get(name) or helper.make_tensor_value_info(name, elem, None) for name in wanted]
    traced = proto + onnx.ModelProto(graph=onnx.GraphProto(output=outputs)).SerializeToString()
    return ModelData(traced, data.weights) if isinstance(data, ModelData) else traced


# Initializers of more elements than this are only typed for shape inference: no operator's inference reads the
# values of a tensor this large (shapes, axes, pads, scales and sizes hold one or two numbers per dimension).
_INFERRED_VALUES = 256


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` (changed in place) with each large initializer turned into a graph input of its type and shape,
    so that shape inference neither copies nor reads its numbers."""
    graph = model.graph
    large = [t for t in graph.initializer if math.prod(t.dims) > _INFERRED_VALUES]
    if large:
        inputs = {i.name for i in graph.input}
        graph.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in large if t.name not in inputs
        )
        kept = [t for t in graph.initializer if math.prod(t.dims) <= _INFERRED_VALUES]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return model


def extract(data: Model, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """The self-contained sub-model that computes `outputs` from the values `inputs` (onnx.utils.Extractor)."""
    from onnx.utils import Extractor

    proto, weights = (data.proto, data.weights) if isinstance(data, ModelData) else (data, {})
    model = onnx.shape_inference.infer_shapes(onnx.load_from_string(proto))  # the cut needs intermediate types
    return inline(Extractor(model).extract_model(list(inputs), list(outputs)), weights).SerializeToString()
