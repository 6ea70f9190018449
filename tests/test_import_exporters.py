"""`nnspec import` on models other tools wrote: PyTorch (TorchScript and dynamo exporters) and skl2onnx.

The fixtures in tests/fixtures/onnx/ were written once by tests/fixtures/onnx/generate.py, with each
framework's own outputs beside them; these tests need neither torch nor scikit-learn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnspec
from nnspec.onnxio.importer import Staged, UnliftableModel, lift_model
from nnspec.runners import OnnxRuntimeRunner

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"]
# What to import where the whole model cannot be: a classifier's probabilities, not its label lookup.
OUTPUTS = {"sklearn_mlp_classifier": ["probabilities"]}
# Both nnspec forms and the framework compute in float32 with their own kernels and summation orders:
# over these models' <= 64-term sums that is a few ulps, under 1e-5 relative; 1e-4 keeps a margin, while a
# wrong weight, layout or activation moves outputs by 1e-2 or more.
RTOL, ATOL = 1e-4, 1e-6
IMPORTED = sorted(name for name, entry in MANIFEST.items() if entry["expect"] == "import")


def _framework(name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(FIXTURES / MANIFEST[name]["data"], allow_pickle=False) as data:
        inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
        outputs = {k.removeprefix("output:"): data[k] for k in data.files if k.startswith("output:")}
    return inputs, outputs


def _import(tmp_path: Path, name: str) -> nnspec.Spec:
    target = tmp_path / f"{name}.json"
    staged = Staged(lift_model(FIXTURES / MANIFEST[name]["file"], outputs=OUTPUTS.get(name)), target)
    staged.commit()
    return nnspec.load(target)


def _by_spec_name(spec: nnspec.Spec, arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays keyed by the model's names, re-keyed by the spec's (onnx_names maps the renamed ones)."""
    to_model = dict(nnspec.graph(spec).onnx_names)
    return {spec_name: arrays[to_model.get(spec_name, spec_name)] for spec_name in _names(spec)}


def _names(spec: nnspec.Spec) -> list[str]:
    g = nnspec.graph(spec)
    return [t.name for t in (*g.inputs, *g.outputs)]


@pytest.mark.parametrize("name", IMPORTED)
def test_imported_model_computes_what_the_framework_computed(tmp_path, name):
    spec = _import(tmp_path, name)
    g = nnspec.graph(spec)
    inputs, expected = _framework(name)
    to_model = dict(g.onnx_names)
    feeds = {i.name: inputs[to_model.get(i.name, i.name)] for i in g.inputs}
    want = {o.name: expected[to_model.get(o.name, o.name)] for o in g.outputs}
    got_numpy = nnspec.to_numpy(spec).run(feeds)
    data = nnspec.to_onnx(spec).SerializeToString()
    got_onnx = OnnxRuntimeRunner(data).run(feeds)
    for output, reference in want.items():
        scale = ATOL * max(1.0, float(np.abs(reference).max()))
        np.testing.assert_allclose(got_numpy[output], reference, rtol=RTOL, atol=scale, err_msg=f"numpy {output}")
        np.testing.assert_allclose(got_onnx[output], reference, rtol=RTOL, atol=scale, err_msg=f"onnx {output}")


@pytest.mark.parametrize("name", IMPORTED)
def test_imported_spec_checks_against_the_file_it_came_from(tmp_path, name, cli):
    _import(tmp_path, name)
    result = cli("check", tmp_path / f"{name}.json", "--onnx", FIXTURES / MANIFEST[name]["file"])
    assert result.exit_code == 0, result.output
    inputs, _ = _framework(name)
    spec = nnspec.load(tmp_path / f"{name}.json")
    to_model = dict(nnspec.graph(spec).onnx_names)
    given = {i.name: inputs[to_model.get(i.name, i.name)] for i in nnspec.graph(spec).inputs}
    report = nnspec.check(spec, onnx_model=FIXTURES / MANIFEST[name]["file"], inputs=given)
    assert report.passed, str(report)


def test_the_whole_import_command_on_a_pytorch_cnn(tmp_path, cli):
    result = cli("import", FIXTURES / "torch_lenet.onnx", "-o", tmp_path / "lenet.json", "--name", "lenet")
    assert result.exit_code == 0, result.output
    assert "checked against torch_lenet.onnx: PASS" in result.stdout
    document = json.loads((tmp_path / "lenet.json").read_text())
    assert document["name"] == "lenet"
    assert [layer["type"] for layer in document["layers"]] == [
        "conv2d",
        "max_pool2d",
        "conv2d",
        "avg_pool2d",
        "flatten",
        "dense",
        "dense",
    ]
    assert document["layers"][0]["activation"] == "relu" and document["layers"][-1]["activation"] == "log_softmax"
    assert "pytorch" in document["description"] and "opset 17" in document["description"]
    shown = cli("show", tmp_path / "lenet.json")
    assert shown.exit_code == 0 and "W ⊛ input + b" in shown.stdout


def test_torch_module_paths_name_the_layers(tmp_path):
    spec = _import(tmp_path, "torch_layernorm_gelu")
    layers = [(n.name, n.op, n.activation.label if n.activation else None) for n in nnspec.graph(spec).nodes]
    assert [op for _, op, _ in layers] == ["dense", "layer_norm", "activation", "dense", "dense"]
    # nn.Sequential's indices, as PyTorch writes them in node names; the graph output keeps its name
    assert [name for name, _, _ in layers] == ["dense_0", "layer_norm_1", "activation_2", "dense_3", "output"]
    activations = [a for _, _, a in layers if a]
    assert "gelu" in activations and "gelu[approximate=tanh]" in activations


def test_every_activation_pytorch_writes_is_recognised(tmp_path):
    for name in ("torch_activations", "torch_activations_opset13", "torch_activations_dynamo"):
        spec = _import(tmp_path, name)
        labels = [n.activation.label for n in nnspec.graph(spec).nodes if n.activation is not None]
        for expected in ("leaky_relu[alpha=0.2]", "elu[alpha=0.7]", "selu", "softplus", "softsign", "silu", "mish"):
            assert expected in labels, (name, labels)
        assert "hard_swish" in labels and "relu6" in labels and "satlins" in labels, (name, labels)


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("torch_unsupported", ["TopK", "CumSum"]),
        ("sklearn_mlp_classifier", ["ArgMax", "ai.onnx.ml.ArrayFeatureExtractor"]),
    ],
)
def test_a_model_with_nodes_the_format_cannot_hold_lists_them_all(tmp_path, cli, name, listed):
    result = cli("import", FIXTURES / MANIFEST[name]["file"], "-o", tmp_path / "s.json")
    assert result.exit_code == 2, result.output
    for op in listed:
        assert op in result.stderr
    assert not list(tmp_path.iterdir())


def test_zipmap_outputs_are_refused_with_the_way_out(tmp_path):
    with pytest.raises(UnliftableModel, match="--outputs"):
        lift_model(FIXTURES / "sklearn_mlp_classifier_zipmap.onnx")


def test_a_fixed_batch_model_keeps_an_implicit_batch(tmp_path, cli):
    for name in ("torch_mlp_batch1", "torch_mlp_batch2"):
        spec = _import(tmp_path, name)
        assert [list(i.shape) for i in nnspec.graph(spec).inputs] == [[4]]
        result = cli("check", tmp_path / f"{name}.json", "--onnx", FIXTURES / MANIFEST[name]["file"])
        assert result.exit_code == 0 and "only" in result.stdout, result.output
