"""Runners: the backends behind one small interface, so the harness can compare any two."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import BackendUnavailable, NNSpecError, first_line
from .evaluator import NumpyModel
from .ir import Graph
from .threads import session_threads

if TYPE_CHECKING:
    from .onnxio.model import Model

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# NOTE: onnxruntime's CUDA provider runs float32 MatMul/Gemm in TF32 on Ampere and newer GPUs by default,
# rounding their inputs to 10 mantissa bits. A float32 spec means float32 arithmetic, and the derived
# bound assumes it, so nnspec asks for full float32.
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {"cpu": {}, "cuda": {"use_tf32": "0"}}


# onnxruntime's message when no kernel matches a node's operator and types.
_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'")


@lru_cache(maxsize=1)
def _preload_gpu_libraries() -> None:
    """Load the CUDA and cuDNN libraries that `pip install onnxruntime-gpu[cuda,cudnn]` installs, as onnxruntime
    asks its users to (it does not look in those packages by itself); its notes go to stderr, not the report."""
    preload = getattr(_ort(), "preload_dlls", None)  # onnxruntime-gpu >= 1.21
    if preload is not None:
        with contextlib.redirect_stdout(sys.stderr):
            preload()


class ModelNotRunnable(BackendUnavailable):
    """A runtime is installed and usable here but cannot load this model; `reason` says why in one line."""

    def __init__(self, message: str, reason: str, *, source: str | None = None) -> None:
        super().__init__(message, source=source)
        self.reason = reason


class Runner(Protocol):
    """Runs a model on named batch-first arrays and returns its outputs by name."""

    name: str

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class NumpyRunner:
    """The NumPy reference evaluator."""

    def __init__(self, graph: Graph) -> None:
        self.name = "numpy"
        self.graph = graph
        self._model: NumpyModel | None = NumpyModel(graph)

    @property
    def model(self) -> NumpyModel:
        if self._model is None:
            self._model = NumpyModel(self.graph)
        return self._model

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.model.run(feeds)

    def trace(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every layer's output, by layer name."""
        return self.model.run(feeds, trace=True)

    def close(self) -> None:
        """Let go of the kernels until the next run (a dense layer's holds its weights transposed: as many bytes
        again)."""
        self._model = None


def _ort():  # type: ignore[no-untyped-def]
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a dependency; only a broken install lacks it
        raise BackendUnavailable(f"onnxruntime is not importable: {exc}") from None
    return onnxruntime


def provider_name(provider: str) -> str:
    """`cpu`/`cuda` -> the onnxruntime provider, checked to be available here."""
    if provider not in PROVIDERS:
        raise NNSpecError(f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}")
    full = PROVIDERS[provider]
    available = _ort().get_available_providers()
    if full not in available:
        hint = (
            " (install onnxruntime-gpu instead of onnxruntime, on a machine with an NVIDIA GPU and CUDA)"
            if provider == "cuda"
            else ""
        )
        raise BackendUnavailable(
            f"the onnxruntime {provider} provider is not available here{hint}; available: {', '.join(available)}"
        )
    return full


class OnnxRuntimeRunner:
    """An ONNX model in an onnxruntime session with default graph optimizations, as deployed.

    The model is its bytes, or a ModelData whose external weights onnxruntime is handed as they are (arrays
    of the exporter, or maps of a data file that nnspec checked): it reads no file a model names.
    """

    def __init__(self, model_bytes: Model, provider: str = "cpu", *, source: str | None = None) -> None:
        self.name = "onnxruntime" if provider == "cpu" else f"onnxruntime-{provider}"
        self._model, self._provider, self._source = model_bytes, provider, source
        self._weights: list[Any] = []
        self.session = self._open()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _open(self) -> Any:
        ort = _ort()
        data, provider, source = self._model, self._provider, self._source
        proto, weights = (data, {}) if isinstance(data, bytes | bytearray) else (data.proto, data.weights)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
        # The check alternates runs with NumPy work: threads that spin-wait after a run (the default) take the
        # cores from NumPy's BLAS meanwhile (measured: a layer's float64 bound 5 to 10x slower right after a run).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads := session_threads():  # --threads (nnspec.threads); else onnxruntime's default
            options.intra_op_num_threads = threads
        # Kept with the session, which may use these buffers in place (onnxruntime 1.32 copies them into it)
        self._weights = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
        if weights:
            options.add_external_initializers(list(weights), self._weights)
        try:
            full = provider_name(provider)
            if provider != "cpu":
                _preload_gpu_libraries()
            session = ort.InferenceSession(proto, options, providers=[(full, PROVIDER_OPTIONS[provider])])
        except NNSpecError:
            raise
        except Exception as exc:  # onnxruntime raises its own untyped errors
            missing = _MISSING_KERNEL.search(str(exc))
            if missing:
                op, version, node = missing.groups()
                raise ModelNotRunnable(
                    f"onnxruntime's {provider} provider has no {op} kernel for this model's element type (node "
                    f"{node!r}; its CPU provider has no float64 Conv, AveragePool or global pools): check it with "
                    "--runner onnx-reference (onnx's own evaluator), or as a float32 spec",
                    f"its {provider} provider has no {op}-{version} kernel for these element types"
                    + (f" (node {node!r})" if node else ""),
                    source=source,
                ) from None
            raise ModelNotRunnable(
                f"onnxruntime cannot load the model: {exc}", first_line(exc), source=source
            ) from None
        # onnxruntime starts on the CPU alone, with only a logged error, when a GPU provider cannot load its
        # libraries (CUDA, cuDNN); and it reruns a failed run on the CPU. Either would check the wrong thing.
        if session.get_providers()[0] != full:
            raise BackendUnavailable(
                f"onnxruntime could not start its {provider} provider (it offered {', '.join(session.get_providers())}"
                "): its CUDA and cuDNN libraries must match onnxruntime-gpu's build (pip install "
                "'onnxruntime-gpu[cuda,cudnn]' brings them)",
                source=source,
            )
        session.disable_fallback()
        return session

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            self.session = self._open()
        results = self.session.run(None, dict(feeds))
        return dict(zip(self.output_names, results, strict=True))

    def close(self) -> None:
        """Let go of the session until the next run: onnxruntime holds its own copy of every initializer
        (measured with 1.32: as many bytes as the weights, `session.disable_prepacking` or not)."""
        self.session = None
        self._weights = []


def close_runner(runner: Runner) -> None:
    """Have a runner let go of what it holds besides the model given to it (its `close()`: a runtime's session,
    the evaluator's kernels) until it runs again; nothing for a runner without `close()`."""
    done = getattr(runner, "close", None)
    if done is not None:
        done()


def onnxruntime_version() -> str:
    """The installed onnxruntime's version, for messages ("1.32.0")."""
    return str(_ort().__version__)


@lru_cache(maxsize=1)
def onnxruntime_max_opset() -> int:
    """The newest default-domain opset the installed onnxruntime loads (probed once with a tiny model)."""
    from .onnxio.export import max_opset, probe_model

    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 4
    for opset in range(max_opset(), 12, -1):
        try:
            ort.InferenceSession(probe_model(opset), options, providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: S112 - "not loadable" is exactly what the probe looks for
            continue
    return 12


class ReferenceRunner:
    """onnx's own ReferenceEvaluator: an independent, plain-NumPy reading of the ONNX model (slow)."""

    def __init__(self, model_bytes: Model, *, source: str | None = None) -> None:
        self.name = "onnx-reference"
        self._model, self._source = model_bytes, source
        self.session: Any = self._open()
        self.output_names = list(self.session.output_names)

    def _open(self) -> Any:
        from onnx.reference import ReferenceEvaluator

        from .onnxio.model import inline, open_model

        model, data = open_model(self._model, self._source or "ONNX model")
        model = inline(model, data.weights)  # it reads initializers from the model alone
        try:
            return ReferenceEvaluator(model)
        except Exception as exc:  # an operator it does not implement, mostly; its errors have no common base
            raise ModelNotRunnable(
                f"onnx's reference evaluator cannot load the model: {first_line(exc)}",
                first_line(exc),
                source=self._source,
            ) from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is None:
            self.session = self._open()
        with np.errstate(all="ignore"):
            results = self.session.run(None, dict(feeds))
        return dict(zip(self.output_names, results, strict=True))

    def close(self) -> None:
        """Let go of the evaluator until the next run: it holds the model with every weight written into it."""
        self.session = None


# Candidate runners by name: each takes the ONNX model (bytes or ModelData), the provider, and a label.
RUNNERS: dict[str, Callable[[Model, str, str], Runner]] = {
    "onnxruntime": lambda data, provider, source: OnnxRuntimeRunner(data, provider, source=source),
    "onnx-reference": lambda data, provider, source: ReferenceRunner(data, source=source),
}


def make_runner(name: str, data: Model, provider: str = "cpu", source: str = "ONNX model") -> Runner:
    """A candidate runner from RUNNERS, with a clear error for an unknown name."""
    if name not in RUNNERS:
        from .errors import suggest

        raise NNSpecError(f"expected a runner ({', '.join(RUNNERS)}), found {name!r}{suggest(name, RUNNERS)}")
    return RUNNERS[name](data, provider, source)


# --- adapters for models from elsewhere ----------------------------------------------------------


class RenamedRunner:
    """A model whose inputs and outputs have other names than the spec's (the spec's `onnx_names`): feeds go
    in under the model's names, and outputs come back under the spec's."""

    def __init__(self, runner: Runner, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> None:
        self.name = runner.name
        self.runner = runner
        self.inputs = dict(inputs)  # spec name -> model name
        self.outputs = dict(outputs)
        self.back = {model: spec for spec, model in outputs.items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        got = self.runner.run({self.inputs.get(k, k): v for k, v in feeds.items()})
        # A model tensor that merely shares a renamed output's spec name is something else: left out.
        return {self.back.get(k, k): v for k, v in got.items() if k in self.back or k not in self.outputs}

    def close(self) -> None:
        close_runner(self.runner)


class ChunkedRunner:
    """A model that takes batches of exactly `rows` rows (a fixed first dim): any batch is run in chunks of
    `rows`, the last one padded by repeating its last row, the padded rows' outputs dropped."""

    def __init__(self, runner: Runner, rows: int) -> None:
        self.name = runner.name
        self.runner = runner
        self.rows = rows

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        total = min((len(v) for v in feeds.values()), default=0)
        if total == 0:
            return self.runner.run(feeds)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, total, self.rows):
            chunk = {k: v[start : start + self.rows] for k, v in feeds.items()}
            real = min(self.rows, total - start)
            if real < self.rows:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], self.rows - real, axis=0)]) for k, v in chunk.items()}
            parts.append({k: out[:real] for k, out in self.runner.run(chunk).items()})
        return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def close(self) -> None:
        close_runner(self.runner)
