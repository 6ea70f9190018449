"""A minimal reproduction of a failed check: the spec cut down to the first diverging layer, that
layer's inputs and expected outputs, and an ONNX test folder onnxruntime's own test runner reads.

    DIR/spec.json          the failing layer alone, its sources as network inputs
    DIR/weights.npz        its parameters, referenced by spec.json
    DIR/inputs.npz         the layer's inputs on the failing batch (from the NumPy reference)
    DIR/expected.npz       the layer's outputs there (from the NumPy reference)
    DIR/onnx/model.onnx    the candidate model cut down to that layer
    DIR/onnx/test_data_set_0/input_<i>.pb, output_0.pb
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .files import atomic_write
from .ir import Graph
from .spec import Spec


def write_repro(
    folder: str | Path,
    spec: Spec,
    graph: Graph,
    layer: str,
    values: Mapping[str, np.ndarray],
    model_bytes: bytes,
    findings: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write the reproduction for `layer`; `values` holds the reference's inputs and layer outputs.

    `findings`: the layer's parameters the model was found to apply otherwise (nnspec.power), written to
    `findings.json` with the change recovered for each (spec value, applied value, ratio, z)."""
    from .onnxio.export import tensor_bytes
    from .onnxio.model import extract

    folder = Path(folder)
    try:
        (folder / "onnx" / "test_data_set_0").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    node = graph.node(layer)
    shapes = dict(zip(node.inputs, node.input_shapes, strict=True))
    dtypes = {i.name: i.dtype for i in graph.inputs}  # integer ids keep their dtype; layers' outputs are floats
    entry: dict[str, Any] = spec.layers[node.index].model_dump(mode="json", exclude_none=True)
    entry.update(name=node.name, inputs=list(node.inputs))
    for key in node.params:
        entry[key] = {"file": "weights.npz", "key": key}
    cut = {
        "format": spec.format,
        "name": f"{graph.name}_{node.name}_repro".replace("/", "_")[:128],
        "description": f"layers[{node.index}] ({node.name!r}) of {graph.name!r}, where the cross-check first diverged",
        "dtype": graph.dtype.name,
        "inputs": [
            {"name": name, "shape": list(shape), **({"dtype": dtypes[name]} if dtypes.get(name) else {})}
            for name, shape in shapes.items()
        ],
        "layers": [entry],
    }
    atomic_write(folder / "spec.json", (json.dumps(cut, indent=2) + "\n").encode())
    _save_npz(folder / "weights.npz", dict(node.params))
    _save_npz(folder / "inputs.npz", {name: values[name] for name in node.inputs})
    _save_npz(folder / "expected.npz", {node.name: values[node.name]})
    onnx_dir = folder / "onnx"
    atomic_write(onnx_dir / "model.onnx", extract(model_bytes, list(node.inputs), [node.name]))
    for i, name in enumerate(node.inputs):
        atomic_write(onnx_dir / "test_data_set_0" / f"input_{i}.pb", tensor_bytes(values[name], name))
    atomic_write(onnx_dir / "test_data_set_0" / "output_0.pb", tensor_bytes(values[node.name], node.name))
    if findings:
        atomic_write(folder / "findings.json", (json.dumps(list(findings), indent=2) + "\n").encode())
    return folder


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())
