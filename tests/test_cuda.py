"""The CUDA provider: a session that asks for the GPU runs there, or the check stops with a clear error.

The first tests stand in a fake onnxruntime session, so they run everywhere. The rest need onnxruntime-gpu and
an NVIDIA GPU (they are skipped otherwise): every float32 example spec passes on the GPU as it does on the CPU
(no false alarm from cuBLAS's or cuDNN's summation orders), one changed weight is still caught and located, and
a float64 spec either passes or its failure names the layer that diverged. onnxruntime-gpu 1.31 on an H200
computes float64 Softmax, LogSoftmax, LayerNormalization and some MatMul with float32-level error, which the
check reports as it should (docs/cross-check.md, "The CUDA provider"; `benchmarks/bench_provider.py` measures it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest

import nnspec
from nnspec import api
from nnspec.errors import BackendUnavailable
from nnspec.onnxio.tamper import scaled_entry
from nnspec.runners import OnnxRuntimeRunner

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU (the CUDA provider)")
SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.json"))
FLOAT32 = [p for p in SPECS if nnspec.load(p).dtype == "float32"]
FLOAT64 = [p for p in SPECS if p not in FLOAT32]


class FakeSession:
    """Records what nnspec asks onnxruntime for; `started` is the providers onnxruntime says it got."""

    opened: dict[str, Any] = {}
    started = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def __init__(self, model: Any, options: Any, providers: list[Any]) -> None:
        FakeSession.opened = {"providers": providers, "fallback": True}

    def get_providers(self) -> list[str]:
        return list(self.started)

    def disable_fallback(self) -> None:
        FakeSession.opened["fallback"] = False

    def get_outputs(self) -> list[Any]:
        return []


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> type[FakeSession]:
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: None, raising=False)
    monkeypatch.setattr(FakeSession, "started", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    return FakeSession


def test_cuda_session_asks_for_full_float32_and_no_cpu_retry(fake_gpu: type[FakeSession]) -> None:
    """TF32 would round MatMul inputs to 10 mantissa bits: the session is opened with it off; and a run that
    fails on the GPU is not quietly rerun on the CPU."""
    OnnxRuntimeRunner(b"model", "cuda")
    assert fake_gpu.opened == {"providers": [("CUDAExecutionProvider", {"use_tf32": "0"})], "fallback": False}


def test_a_gpu_provider_that_did_not_start_is_a_clear_error(fake_gpu: type[FakeSession]) -> None:
    """onnxruntime starts on the CPU alone (logging an error) when CUDA or cuDNN cannot be loaded."""
    fake_gpu.started = ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailable, match="could not start its cuda provider.*onnxruntime-gpu"):
        OnnxRuntimeRunner(b"model", "cuda")


# --- on a GPU ----------------------------------------------------------------------------------------------


@needs_gpu
def test_the_session_runs_on_the_gpu() -> None:
    spec = nnspec.load(SPECS[0])
    runner = OnnxRuntimeRunner(api.export(spec).data(), "cuda")
    assert runner.session.get_providers()[0] == "CUDAExecutionProvider"
    assert runner.name == "onnxruntime-cuda"


@needs_gpu
@pytest.mark.parametrize("path", FLOAT32, ids=[p.stem for p in FLOAT32])
def test_every_float32_example_spec_passes_on_the_gpu(path: Path) -> None:
    report = nnspec.check(path, provider="cuda")
    assert report.passed, report


@needs_gpu
@pytest.mark.parametrize("path", FLOAT64, ids=[p.stem for p in FLOAT64])
def test_a_float64_spec_passes_on_the_gpu_or_the_report_names_the_layer(path: Path) -> None:
    report = nnspec.check(path, provider="cuda")
    if not report.passed:
        names = [node.name for node in nnspec.graph(path).nodes]
        assert report.divergence is not None and report.divergence["layer"] in names, report


@needs_gpu
@pytest.mark.parametrize("width", [64, 1024])
def test_wide_float32_network_agrees_on_the_gpu(width: int) -> None:
    """A float32 network of wide dot products stays within the derived bound (TF32 would not)."""
    report = nnspec.check(wide(width, "tanh"), provider="cuda")
    assert report.passed, report


@needs_gpu
@pytest.mark.parametrize("way", ["initializer", "Mul by a mask"])
def test_one_weight_times_1_001_is_caught_and_located_on_the_gpu(way: str) -> None:
    spec = wide(1024, "relu")
    weights = nnspec.graph(spec).node("h").params["weights"]
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(weights)), weights.shape))
    faulty = scaled_entry(nnspec.to_onnx(spec), "h.weights", index, 1.001, way)
    report = nnspec.check(spec, onnx_model=faulty, provider="cuda")
    assert not report.passed
    found = [w.worst for w in report.weights if w.worst is not None and not w.passed]
    assert [(f.layer, f.param, f.index) for f in found] == [("h", "weights", index)], report


@needs_gpu
def test_one_convolution_weight_changed_is_caught_on_the_gpu() -> None:
    """cuDNN picks its own convolution algorithm; the bound and the parameter test hold for it."""
    spec = nnspec.load(next(p for p in SPECS if p.stem == "digits_cnn"))
    graph = nnspec.graph(spec)
    conv = next(n for n in graph.nodes if n.op == "conv2d")
    weights = conv.params["weights"]
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(weights)), weights.shape))
    faulty = scaled_entry(nnspec.to_onnx(spec), f"{conv.name}.weights", index, 1.001, "initializer")
    report = nnspec.check(spec, onnx_model=faulty, provider="cuda")
    assert not report.passed
    assert any(w.worst is not None and (w.worst.layer, w.worst.index) == (conv.name, index) for w in report.weights)


def wide(width: int, activation: str) -> nnspec.Spec:
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": f"wide{width}",
            "inputs": [{"name": "x", "shape": [width]}],
            "layers": [
                {"type": "dense", "name": "h", "units": width, "activation": activation,
                 "weights": {"init": "glorot_uniform", "seed": 1}, "bias": {"init": "normal", "seed": 2}},
                {"type": "dense", "name": "y", "units": 10, "weights": {"init": "glorot_uniform", "seed": 3}},
            ],
        }
    )  # fmt: skip
