"""Every registered layer type, through every stage, on the example specs it registers.

A type that lacks a part, or whose parts disagree (the NumPy kernel and the ONNX lowering, the derived
bound and what onnxruntime computes, the formula and the wiring), fails here by name.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import nnspec
from nnspec.layers import LAYERS
from nnspec.onnxio.export import MIN_OPSET, max_opset
from nnspec.runners import onnxruntime_max_opset
from nnspec.spec import Spec

EXAMPLES = [
    pytest.param(name, k, example, id=f"{name}-{example['name']}")
    for name, entry in sorted(LAYERS.items())
    for k, example in enumerate(entry.examples)
]
# The examples whose layers of their type have parameters (weights, means, ...), to change one of them.
WITH_PARAMETERS = [
    p
    for p in EXAMPLES
    if any(n.op == p.values[0] and n.params for n in nnspec.graph(nnspec.from_dict(copy.deepcopy(p.values[2]))).nodes)
]
FAULT_FACTOR = 1.01  # far beyond any rounding: the check must see a 1% change of any parameter
OPSETS = sorted({MIN_OPSET, 17, min(max_opset(), onnxruntime_max_opset())})


def _load(example: dict[str, Any]) -> nnspec.Spec:
    return nnspec.from_dict(copy.deepcopy(example))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_has_every_part(name):
    entry = LAYERS[name]
    assert entry.examples, f"layer type {name!r} registers no example spec"
    for part in ("numpy", "onnx", "bound", "formula"):
        assert callable(getattr(entry, part)), (name, part)
    assert entry.doc.strip(), f"layer type {name!r} has no doc"
    assert entry.spec.model_fields["type"].annotation.__args__ == (name,), "the spec model's tag is the type's name"
    fewest, most = entry.spec.arity
    assert fewest >= 1 and (most is None or most >= fewest)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_is_in_the_json_schema(name):
    schema = Spec.model_json_schema()
    assert name in json.dumps(schema["$defs"])


@pytest.mark.parametrize(("name", "k", "example"), EXAMPLES)
def test_an_example_uses_its_type_and_reads_in_show(name, k, example):
    graph = nnspec.graph(_load(example))
    mine = [n for n in graph.nodes if n.op == name]
    assert mine, f"example {example['name']!r} of {name!r} has no {name} layer"
    for node in mine:
        text = LAYERS[name].formula(node)
        assert text and all(source in text for source in node.inputs), (node.name, text)


@pytest.mark.parametrize(("name", "k", "example"), EXAMPLES)
def test_an_example_passes_the_check_end_to_end_and_layer_by_layer(name, k, example):
    report = nnspec.check(_load(example))
    assert report.passed, str(report)
    if len(nnspec.graph(_load(example)).nodes) > 1:
        assert report.steps and all(s.passed for s in report.steps)
    assert all(o.passed for o in report.oracle), str(report)  # both sides within their bounds of float64


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize(("name", "k", "example"), EXAMPLES)
def test_an_example_exports_at_every_opset_or_says_why_not(name, k, example, opset):
    spec = _load(example)
    try:
        model = nnspec.to_onnx(spec, opset)
    except nnspec.NNSpecError as exc:  # a clear refusal names the opset it needs
        assert "opset" in str(exc)
        return
    onnx.checker.check_model(model, full_check=True)
    assert nnspec.check(spec, onnx_model=model, opset=opset).passed


@pytest.mark.parametrize(("name", "k", "example"), WITH_PARAMETERS)
def test_a_changed_parameter_of_the_layer_fails_the_check(name, k, example):
    spec = _load(example)
    graph = nnspec.graph(spec)
    params = [(n.name, key) for n in graph.nodes if n.op == name for key in n.params]
    model = nnspec.to_onnx(spec)
    initializers = {i.name: i for i in model.graph.initializer}
    named = {}
    for layer, key in params:  # stored as it is, or transposed for the operator (`<layer>.<parameter>_t`)
        stored = [f"{layer}.{key}{t}" for t in ("", "_t") if f"{layer}.{key}{t}" in initializers]
        assert stored, f"parameter {layer}.{key} is not an initializer of that name"
        named[layer, key] = stored[0]
    init = initializers[named[params[0]]]
    array = numpy_helper.to_array(init)
    changed = array * array.dtype.type(FAULT_FACTOR) + (array == 0) * array.dtype.type(0.01)
    init.CopyFrom(numpy_helper.from_array(changed.astype(array.dtype), init.name))
    report = nnspec.check(spec, onnx_model=model)
    assert not report.passed, f"{layer}.{key} x{FAULT_FACTOR} passed the check"


@pytest.mark.parametrize(("name", "k", "example"), EXAMPLES)
def test_an_example_runs_in_numpy_at_any_batch_size(name, k, example):
    spec = _load(example)
    graph = nnspec.graph(spec)
    model = nnspec.to_numpy(spec)
    rng = np.random.default_rng(k)
    for batch in (1, 3):
        feeds = {
            i.name: rng.integers(0, 2, size=(batch, *i.shape))
            if i.dtype
            else rng.normal(size=(batch, *i.shape)).astype(graph.dtype)
            for i in graph.inputs
        }
        out = model.run(feeds)
        for o in graph.outputs:
            assert out[o.name].shape == (batch, *o.shape) and out[o.name].dtype == graph.dtype
