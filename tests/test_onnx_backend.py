"""ONNX's own backend tests for the operators nnspec's layers lower to, run through nnspec.

Each case is one ONNX operator with its inputs and ONNX's reference outputs: the node tests (the cases
`onnx.backend.test.case.node` generates; they are what ONNX writes to `backend/test/data/node/test_*`,
which the onnx wheel does not ship) and the shipped `pytorch-converted` and `pytorch-operator` data
folders. A small translator, here and not in nnspec, writes each node as a one-layer nnspec spec: the
node's attributes become the layer's fields, its constant inputs (weights, bias, statistics, bounds,
target shapes) become inline numbers or `.npy` files. Then nnspec's NumPy evaluator, and onnxruntime on
nnspec's own export, must reproduce ONNX's expected outputs.

Tolerance: nnspec's derived bound, not a tuned rtol. `nnspec.bounds.propagate` gives, per element, a bound
B on how far any correct implementation in the spec's dtype may be from the exact result on these inputs
(any summation order, fused multiply-adds). ONNX's reference outputs are one such implementation and
nnspec's NumPy kernel (or onnxruntime) another, so they may differ by at most 2B. Operators that only move
or select values (max pools, reshape, concat, gather, relu, ...) have B = 0: the outputs must be equal.

Where the format cannot express a case, it is skipped with what the format lacks; where nnspec refuses a
case by design, the refusal itself is checked before the skip. Only the first output is compared: the
optional extra outputs (MaxPool's Indices, LayerNormalization's Mean and InvStdDev, Dropout's mask) have no
counterpart in nnspec.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import nnspec
from nnspec.activations import Precision
from nnspec.bounds import propagate
from nnspec.errors import NNSpecError
from nnspec.onnxio.export import MIN_OPSET, max_opset, to_bytes
from nnspec.runners import onnxruntime_max_opset

# The node-test modules of the operators nnspec lowers to, and of the activations it names.
NODE_MODULES = (
    "conv",
    "maxpool",
    "averagepool",
    "globalaveragepool",
    "globalmaxpool",
    "batch_normalization",
    "layernormalization",
    "gather",
    "concat",
    "add",
    "mul",
    "sum",
    "flatten",
    "reshape",
    "transpose",
    "dropout",
    "relu",
    "hardswish",
    "clip",
    "sigmoid",
    "tanh",
    "leakyrelu",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "hardsigmoid",
    "gelu",
    "mish",
    "swish",
    "softmax",
    "logsoftmax",
)
DATA_FOLDERS = ("pytorch-converted", "pytorch-operator")
OUTPUT = "y"  # the one layer's name, and so the model's output


@dataclass(frozen=True)
class OnnxCase:
    """One ONNX operator test: the node's attributes, an array per input slot (None where omitted), outputs."""

    name: str
    op: str
    attrs: dict[str, Any]
    inputs: tuple[np.ndarray | None, ...]
    outputs: tuple[np.ndarray, ...]
    opset: int


@dataclass
class Translation:
    """A one-layer spec for a case, the arrays to feed it, and ONNX's first output framed as nnspec returns it."""

    spec: dict[str, Any]
    feeds: dict[str, np.ndarray]
    expected: np.ndarray
    files: dict[str, np.ndarray] = field(default_factory=dict)  # .npy files the spec names, by file name


class Inexpressible(Exception):
    """The case needs something the nnspec format does not have; the message says what."""


class Refused(Inexpressible):
    """The format could write the case, but nnspec refuses it by design: the refusal is checked, then skipped."""

    def __init__(self, reason: str, translation: Translation, match: str) -> None:
        super().__init__(reason)
        self.translation, self.match = translation, match


# --- the cases --------------------------------------------------------------------------------------


def _array(value: Any) -> np.ndarray:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)


def _single_node_case(name: str, model: onnx.ModelProto, values: dict[str, np.ndarray]) -> OnnxCase | None:
    """The case of a model of one operator (Constant nodes folded into `values`), else None."""
    nodes = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            nodes.append(node)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    outputs = tuple(values[o.name] for o in model.graph.output)
    if [n.op_type for n in nodes] == ["Unsqueeze", "AveragePool", "Squeeze"]:  # PyTorch's 1-D average pool
        pool = _attrs(nodes[1])
        if pool["kernel_shape"][1:] != [1] or pool.get("strides", [1, 1])[1:] != [1] or any(pool["pads"][1::2]):
            return None
        attrs = {"kernel_shape": pool["kernel_shape"][:1], "strides": pool["strides"][:1], "pads": pool["pads"][::2]}
        return OnnxCase(name, "AveragePool", attrs, (values[nodes[0].input[0]],), outputs, opset)
    if len(nodes) != 1:
        return None
    inputs = tuple(values[i] if i else None for i in nodes[0].input)
    return OnnxCase(name, nodes[0].op_type, _attrs(nodes[0]), inputs, outputs, opset)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def node_cases() -> list[OnnxCase]:
    """ONNX's node tests for NODE_MODULES, without the `_expanded` variants (the same data, run through an
    operator's function body: a graph of other operators)."""
    import onnx.backend.test.case.node as registry

    for module in NODE_MODULES:  # each module records its cases on import; one this onnx lacks has none
        try:
            importlib.import_module(f"{registry.__name__}.{module}")
        except ModuleNotFoundError:
            continue
    # NOTE: the recorded list is private; the public collect_testcases() imports every operator's module (3 s).
    recorded = getattr(registry, "_NodeTestCases", None) or registry.collect_testcases()
    cases = []
    for test in recorded:
        if "_expanded" in test.name or test.model is None or not test.data_sets or len(test.model.graph.node) != 1:
            continue
        (node,) = test.model.graph.node
        inputs, outputs = test.data_sets[0]
        present = iter(inputs)  # arrays for the node's named inputs, in order ("" marks an omitted one)
        values = {name: _array(next(present)) for name in node.input if name}
        values |= {o.name: _array(a) for o, a in zip(test.model.graph.output, outputs, strict=True)}
        case = _single_node_case(test.name, test.model, values)
        if case is not None:
            cases.append(case)
    return cases


def folder_cases(ops: set[str]) -> list[OnnxCase]:
    """The shipped `pytorch-*` backend tests that are one operator of `ops` (PyTorch's 1-D pool included)."""
    root = Path(onnx.__file__).parent / "backend" / "test" / "data"
    cases = []
    for kind in DATA_FOLDERS:
        for folder in sorted((root / kind).iterdir()):
            model = onnx.load(folder / "model.onnx")
            values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
            data = folder / "test_data_set_0"
            feeds = [i.name for i in model.graph.input if i.name not in values]
            values |= {n: numpy_helper.to_array(onnx.load_tensor(data / f"input_{k}.pb")) for k, n in enumerate(feeds)}
            for k, out in enumerate(model.graph.output):
                values[out.name] = numpy_helper.to_array(onnx.load_tensor(data / f"output_{k}.pb"))
            case = _single_node_case(f"{kind}/{folder.name}", model, values)
            if case is not None and case.op in ops:
                cases.append(case)
    return cases


# --- from an ONNX node to a one-layer spec ----------------------------------------------------------------


def _dtype(*arrays: np.ndarray | None) -> str:
    """The spec's dtype for float data; other data is inexpressible (only embedding reads integers, as ids)."""
    kinds = {a.dtype.name for a in arrays if a is not None}
    if kinds - {"float32", "float64"} or len(kinds) != 1:
        raise Inexpressible(
            f"{'/'.join(sorted(kinds))} data (nnspec computes in float32 or float64; integers are only embedding ids)"
        )
    return kinds.pop()


def _weights(name: str, array: np.ndarray, files: dict[str, np.ndarray]) -> Any:
    """Small parameters inline (float32 numbers survive JSON exactly), larger ones as a .npy file."""
    if array.size <= 64:
        return array.tolist()
    files[f"{name}.npy"] = array
    return {"file": f"{name}.npy"}


def _spec(name: str, dtype: str, inputs: dict[str, np.ndarray], layer: dict[str, Any]) -> dict[str, Any]:
    """A whole spec: the feeds' per-sample shapes as its inputs, then the one layer, named OUTPUT."""
    entries = []
    for key, array in inputs.items():
        entry: dict[str, Any] = {"name": key, "shape": list(array.shape[1:])}
        if array.dtype.kind == "i":
            entry["dtype"] = array.dtype.name
        entries.append(entry)
    names = {"inputs": list(inputs)} if len(inputs) > 1 else {}
    layer = {"name": OUTPUT, **names, **layer}
    return {"format": "nnspec/1", "name": name.replace("/", "."), "dtype": dtype, "inputs": entries, "layers": [layer]}


def _frame(arrays: Sequence[np.ndarray], expected: np.ndarray, batch: bool) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Arrays as nnspec feeds: with `batch`, ONNX's axis 0 is the batch; otherwise each gets a batch of 1 in front
    (exact: a leading axis of size 1 changes nothing for operators that do not reach across axis 0's entries).
    Returns the feeds, the expected output framed the same way, and how far ONNX's axes move (0 or 1)."""
    if batch and all(a.ndim >= 2 for a in arrays):
        return list(arrays), expected, 0
    return [a[None] for a in arrays], expected[None], 1


def _spatial(case: OnnxCase, x: np.ndarray, what: str) -> int:
    rank = x.ndim - 2
    if rank not in (1, 2):
        raise Inexpressible(f"{rank}-D {what} (nnspec's convolutions and pools are 1-D and 2-D)")
    return rank


def _padding(case: OnnxCase, x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int]) -> Any:
    """ONNX's auto_pad or pads as nnspec's padding: "valid", "same" (SAME_UPPER), or explicit begins then ends."""
    auto = case.attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    rank = len(kernel)
    if auto == "SAME_LOWER":  # the odd pad at the beginning: explicit pads say it
        totals = [
            max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True)
        ]
        return [t - t // 2 for t in totals] + [t // 2 for t in totals]
    return list(case.attrs.get("pads", [0] * 2 * rank))


def conv(case: OnnxCase) -> Translation:
    x, w, b = (*case.inputs, None)[:3]
    dtype = _dtype(x, w, b)
    rank = _spatial(case, x, "convolution")
    kernel = list(case.attrs.get("kernel_shape", w.shape[2:]))
    strides = list(case.attrs.get("strides", [1] * rank))
    dilations = list(case.attrs.get("dilations", [1] * rank))
    files: dict[str, np.ndarray] = {}
    layer = {
        "type": f"conv{rank}d",
        "filters": w.shape[0],
        "kernel_size": kernel,
        "strides": strides,
        "dilation": dilations,
        "groups": case.attrs.get("group", 1),
        "padding": _padding(case, x, kernel, strides, dilations),
        "weights": _weights("weights", w, files),
    }
    if b is not None:
        layer["bias"] = _weights("bias", b, files)
    return Translation(_spec(case.name, dtype, {"x": x}, layer), {"x": x}, case.outputs[0], files)


def pool(case: OnnxCase) -> Translation:
    (x,) = case.inputs[:1]
    dtype = _dtype(x)
    rank = _spatial(case, x, "pooling")
    kind = "max" if case.op == "MaxPool" else "avg"
    if any(d != 1 for d in case.attrs.get("dilations", [])):
        raise Inexpressible(f"dilations on {case.op} (nnspec's pools have no dilation)")
    kernel = list(case.attrs["kernel_shape"])
    strides = list(case.attrs.get("strides", [1] * rank))  # ONNX's default; nnspec's is pool_size
    padding = _padding(case, x, kernel, strides, [1] * rank)
    layer: dict[str, Any] = {"type": f"{kind}_pool{rank}d", "pool_size": kernel, "strides": strides, "padding": padding}
    layer["ceil_mode"] = bool(case.attrs.get("ceil_mode", 0))
    if kind == "avg":
        layer["count_include_pad"] = bool(case.attrs.get("count_include_pad", 0))
    translation = Translation(_spec(case.name, dtype, {"x": x}, layer), {"x": x}, case.outputs[0])
    if layer["ceil_mode"] and not isinstance(padding, str):
        pads = padding * 2 if len(padding) == rank else padding
        for i, (size, k, s) in enumerate(zip(x.shape[2:], kernel, strides, strict=True)):
            begin, end = pads[i], pads[rank + i]
            last_start = -(-(size + begin + end - k) // s) * s - begin
            if last_start >= size:
                raise Refused(
                    "a ceil_mode window that starts in the end padding, which nnspec refuses by design (ONNX keeps "
                    "it before opset 22 and drops it from 22 on)",
                    translation,
                    "ceil_mode",
                )
    return translation


def global_pool(case: OnnxCase) -> Translation:
    (x,) = case.inputs
    layer = {"type": "global_avg_pool" if case.op == "GlobalAveragePool" else "global_max_pool"}
    expected = case.outputs[0].reshape(x.shape[:2])  # [N, C, 1, ...]: nnspec's global pools give [N, C]
    return Translation(_spec(case.name, _dtype(x), {"x": x}, layer), {"x": x}, expected)


def batch_norm(case: OnnxCase) -> Translation:
    x, scale, offset, mean, variance = case.inputs
    if case.attrs.get("training_mode", 0) or not case.attrs.get("is_test", 1):
        raise Inexpressible("training mode (batch statistics; nnspec's batch_norm is the inference form)")
    if not case.attrs.get("spatial", 1):
        raise Inexpressible("per-activation statistics, spatial=0 (nnspec's batch_norm has one per channel)")
    layer = {
        "type": "batch_norm",
        "mean": mean.tolist(),
        "variance": variance.tolist(),
        "scale": scale.tolist(),
        "offset": offset.tolist(),
        "epsilon": case.attrs.get("epsilon", 1e-5),
    }
    return Translation(
        _spec(case.name, _dtype(x, scale, offset, mean, variance), {"x": x}, layer), {"x": x}, case.outputs[0]
    )


def layer_norm(case: OnnxCase) -> Translation:
    x, scale, offset = (*case.inputs, None)[:3]
    if case.attrs.get("axis", -1) % x.ndim != x.ndim - 1:
        raise Inexpressible("normalization over several axes (nnspec's layer_norm normalizes the last axis)")
    if case.attrs.get("stash_type", 1) != 1:
        raise Inexpressible("stash_type other than float32")
    layer: dict[str, Any] = {"type": "layer_norm", "scale": scale.tolist(), "epsilon": case.attrs.get("epsilon", 1e-5)}
    if offset is not None:
        layer["offset"] = offset.tolist()
    (x,), expected, _ = _frame([x], case.outputs[0], batch=True)
    return Translation(_spec(case.name, _dtype(x, scale, offset), {"x": x}, layer), {"x": x}, expected)


def gather(case: OnnxCase) -> Translation:
    """Gather along axis 0 of a float table is an embedding: the table's trailing axes as one row (a view)."""
    data, indices = case.inputs
    if case.attrs.get("axis", 0) % data.ndim != 0:
        raise Inexpressible("Gather along an axis other than 0 (nnspec's embedding looks up rows)")
    if indices.dtype.name not in ("int64", "int32"):
        raise Inexpressible(f"{indices.dtype} indices (nnspec's ids are int64 or int32)")
    width = math.prod(data.shape[1:])
    ids = indices.reshape(1, *(indices.shape or (1,)))
    files: dict[str, np.ndarray] = {}
    layer = {
        "type": "embedding",
        "input_dim": data.shape[0],
        "output_dim": width,
        "weights": _weights("weights", data.reshape(data.shape[0], width), files),
    }
    expected = case.outputs[0].reshape(*ids.shape, width)
    translation = Translation(_spec(case.name, _dtype(data), {"ids": ids}, layer), {"ids": ids}, expected, files)
    if (indices < 0).any():
        raise Refused(
            "negative indices (ONNX counts them from the end; nnspec refuses ids outside [0, input_dim))",
            translation,
            "expected ids in",
        )
    return translation


def merge(case: OnnxCase) -> Translation:
    """Add, Mul and Sum of inputs of one shape; Concat along one axis."""
    arrays = list(case.inputs)
    if len(arrays) < 2:
        raise Inexpressible(f"{case.op} of one input (nnspec's merges read two or more)")
    dtype = _dtype(*arrays)
    layer: dict[str, Any] = {"type": {"Add": "add", "Sum": "add", "Mul": "multiply", "Concat": "concat"}[case.op]}
    if case.op == "Concat":
        axis = case.attrs["axis"] % arrays[0].ndim
        arrays, expected, moved = _frame(arrays, case.outputs[0], batch=axis != 0)
        layer["axis"] = axis + moved
    else:
        if len({a.shape for a in arrays}) > 1:
            raise Inexpressible("broadcasting (nnspec's add and multiply need inputs of one shape)")
        arrays, expected, _ = _frame(arrays, case.outputs[0], batch=True)
    feeds = {f"x{k}": a for k, a in enumerate(arrays)}
    return Translation(_spec(case.name, dtype, feeds, layer), feeds, expected)


def flatten(case: OnnxCase) -> Translation:
    """Flatten(axis 1) is nnspec's flatten; axis 0 too, over a batch of 1; others a reshape to ONNX's 2-D result."""
    (x,) = case.inputs
    axis = case.attrs.get("axis", 1)
    axis += x.ndim if axis < 0 else 0  # in [-r, r]: -r is 0
    if axis == 1 and x.ndim >= 2:
        return Translation(_spec(case.name, _dtype(x), {"x": x}, {"type": "flatten"}), {"x": x}, case.outputs[0])
    if axis == 0:
        feed = x[None]
        return Translation(_spec(case.name, _dtype(x), {"x": feed}, {"type": "flatten"}), {"x": feed}, case.outputs[0])
    (feed,), expected, _ = _frame([x], case.outputs[0], batch=False)
    layer = {"type": "reshape", "shape": list(case.outputs[0].shape)}
    return Translation(_spec(case.name, _dtype(x), {"x": feed}, layer), {"x": feed}, expected)


def reshape(case: OnnxCase) -> Translation:
    x, shape = case.inputs
    if x.size == 0:
        raise Inexpressible("an empty tensor (nnspec's sizes are >= 1)")
    target = [int(d) for d in shape]
    if 0 in target and case.attrs.get("allowzero", 0):
        raise Inexpressible("a size of 0 (nnspec's sizes are >= 1)")
    target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]  # 0 copies the input's size
    (feed,), expected, _ = _frame([x], case.outputs[0], batch=False)
    layer = {"type": "reshape", "shape": target}
    return Translation(_spec(case.name, _dtype(x), {"x": feed}, layer), {"x": feed}, expected)


def transpose(case: OnnxCase) -> Translation:
    (x,) = case.inputs
    perm = list(case.attrs.get("perm", range(x.ndim - 1, -1, -1)))
    (feed,), expected, moved = _frame([x], case.outputs[0], batch=perm[0] == 0)
    layer = {"type": "transpose", "perm": perm if not moved else [0, *(p + 1 for p in perm)]}
    return Translation(_spec(case.name, _dtype(x), {"x": feed}, layer), {"x": feed}, expected)


def dropout(case: OnnxCase) -> Translation:
    x, ratio, training = (*case.inputs, None, None)[:3]
    if training is not None and bool(training):
        raise Inexpressible("training mode (a random mask; nnspec's dropout is the inference identity)")
    rate = float(ratio) if ratio is not None else case.attrs.get("ratio", 0.5)
    (feed,), expected, _ = _frame([x], case.outputs[0], batch=True)
    layer = {"type": "dropout", "rate": rate}
    return Translation(_spec(case.name, _dtype(x), {"x": feed}, layer), {"x": feed}, expected)


ACTIVATIONS = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Mish": "mish",
    "HardSwish": "hard_swish",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
    "Selu": "selu",
    "HardSigmoid": "hard_sigmoid",
    "Gelu": "gelu",
    "Swish": "silu",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}
CLIPS = {(0.0, math.inf): "relu", (0.0, 6.0): "relu6", (0.0, 1.0): "satlin", (-1.0, 1.0): "satlins"}


def _clip(case: OnnxCase) -> str:
    """Clip's bounds (inputs from opset 11, attributes before) as the activation of that range."""
    lo, hi = (*case.inputs[1:], None, None)[:2]
    low = float(lo) if lo is not None else case.attrs.get("min", -math.inf)
    high = float(hi) if hi is not None else case.attrs.get("max", math.inf)
    if (low, high) == (-math.inf, math.inf):
        return "linear"
    if (low, high) not in CLIPS:
        raise Inexpressible(
            f"Clip to [{low:g}, {high:g}] (nnspec's clipping activations are relu [0, inf), relu6 [0, 6], satlin "
            "[0, 1] and satlins [-1, 1])"
        )
    return CLIPS[low, high]


def activation(case: OnnxCase) -> Translation:
    """An attribute the node sets is passed on; one it leaves out is left out, so nnspec's default is tested."""
    x = case.inputs[0]
    dtype = _dtype(x) if case.op != "Clip" else _dtype(*(a for a in case.inputs if a is not None))
    params = {k: v for k, v in case.attrs.items() if k in ("alpha", "beta", "gamma")}
    if case.op == "Gelu" and "approximate" in case.attrs:
        params["approximate"] = case.attrs["approximate"].decode()
    if case.op == "Swish" and params.pop("alpha", 1.0) != 1.0:
        raise Inexpressible("Swish with alpha != 1 (nnspec's silu is x sigmoid(x))")
    if case.op in ("Softmax", "LogSoftmax"):
        last = case.attrs.get("axis", -1 if case.opset >= 13 else 1) % x.ndim == x.ndim - 1
        if not last:
            raise Inexpressible(f"{case.op} over an axis other than the last (nnspec's is over the last axis)")
    name = _clip(case) if case.op == "Clip" else ACTIVATIONS[case.op]
    layer = {"type": "activation", "activation": {"name": name, **params} if params else name}
    (feed,), expected, _ = _frame([x], case.outputs[0], batch=True)
    return Translation(_spec(case.name, dtype, {"x": feed}, layer), {"x": feed}, expected)


TRANSLATORS: dict[str, Callable[[OnnxCase], Translation]] = {
    "Conv": conv,
    "MaxPool": pool,
    "AveragePool": pool,
    "GlobalAveragePool": global_pool,
    "GlobalMaxPool": global_pool,
    "BatchNormalization": batch_norm,
    "LayerNormalization": layer_norm,
    "Gather": gather,
    "Concat": merge,
    "Add": merge,
    "Mul": merge,
    "Sum": merge,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Dropout": dropout,
    "Clip": activation,
    **dict.fromkeys(ACTIVATIONS, activation),
}

CASES = node_cases() + folder_cases(set(TRANSLATORS))


# --- the comparison ----------------------------------------------------------------------------------


def assert_within(actual: np.ndarray, expected: np.ndarray, allowed: np.ndarray, who: str) -> None:
    """|actual - expected| <= allowed element by element; NaN where ONNX has NaN, equal infinities."""
    assert actual.shape == expected.shape, f"{who}: shape {actual.shape}, ONNX's {expected.shape}"
    assert actual.dtype == expected.dtype, f"{who}: dtype {actual.dtype}, ONNX's {expected.dtype}"
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = (a == e) | (np.isnan(a) & np.isnan(e)) | (np.abs(a - e) <= allowed)
    if not ok.all():
        with np.errstate(invalid="ignore"):
            excess = np.where(ok, 0.0, np.nan_to_num(np.abs(a - e) / np.maximum(allowed, 1e-300), nan=np.inf))
        at = np.unravel_index(int(np.argmax(excess)), a.shape)
        pytest.fail(
            f"{who}: {int((~ok).sum())} of {ok.size} elements differ from ONNX's expected output beyond twice the "
            f"derived bound; worst at {list(map(int, at))}: {a[at]!r} vs ONNX {e[at]!r} (|difference| "
            f"{abs(a[at] - e[at]):.3g}, allowed {allowed[at]:.3g})"
        )


def export_opsets(case_opset: int) -> list[int]:
    """nnspec's lowest opset, and the case's own where nnspec allows it (else the nearest it does)."""
    top = min(max_opset(), onnxruntime_max_opset())
    return sorted({MIN_OPSET, min(max(case_opset, MIN_OPSET), top)})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_backend_case(case: OnnxCase, tmp_path: Path) -> None:
    """nnspec's NumPy evaluator, and onnxruntime on nnspec's export, reproduce ONNX's expected output."""
    try:
        translation = TRANSLATORS[case.op](case)
    except Refused as refused:
        for name, array in refused.translation.files.items():
            np.save(tmp_path / name, array)
        with pytest.raises(NNSpecError, match=refused.match):
            spec = nnspec.from_dict(refused.translation.spec, base_dir=tmp_path)
            nnspec.to_numpy(spec).run(refused.translation.feeds)
        pytest.skip(f"refused by nnspec: {refused}")
    except Inexpressible as lacking:
        pytest.skip(f"nnspec cannot express: {lacking}")
    for name, array in translation.files.items():
        np.save(tmp_path / name, array)
    spec = nnspec.from_dict(translation.spec, base_dir=tmp_path)
    graph = nnspec.graph(spec)
    allowed = 2 * propagate(graph, translation.feeds, Precision.of(graph.dtype)).errors[OUTPUT]
    numpy_output = nnspec.to_numpy(spec).run(translation.feeds)[OUTPUT]
    assert_within(numpy_output, translation.expected, allowed, "nnspec's NumPy evaluator")
    for opset in export_opsets(case.opset):
        session = ort.InferenceSession(to_bytes(nnspec.to_onnx(spec, opset)), providers=["CPUExecutionProvider"])
        (ort_output,) = session.run([OUTPUT], translation.feeds)
        assert_within(ort_output, translation.expected, allowed, f"onnxruntime on nnspec's export (opset {opset})")
