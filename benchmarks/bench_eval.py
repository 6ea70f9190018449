"""Per-call time of the NumPy evaluator against the same forward pass written by hand in NumPy.

Two stages, each timed as a user calls it, `nnspec.to_numpy(spec)(x)` (input checks included), against a
hand-written pass over the very same arrays:
  - one neuron, 2 inputs, sigmoid, batch 1 : the fixed cost per call; baseline `1 / (1 + np.exp(-(x @ W.T + b)))`;
  - MLP 784-512-512-10 (relu, relu, softmax), batches 64 and 4096 : the kernels; baseline
    `relu(x @ W.T + b)` layer after layer, then a max-shifted softmax.
The ratio is nnspec / hand on the same batch, both timed in round-robin (see _timing.compare), so that
load from elsewhere on the machine slows both alike.

    python benchmarks/bench_eval.py               # 9 repeats of >= 200 ms loops per form
    python benchmarks/bench_eval.py --quick       # shorter timing loops, fewer repeats
    python benchmarks/bench_eval.py --threads 1   # one BLAS thread: steadier on a shared or busy machine
    python benchmarks/bench_eval.py --onnxruntime # also an onnxruntime session on nnspec.to_onnx(spec)
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

from _timing import apply_threads_early  # noqa: E402  (imports no NumPy)

THREADS = apply_threads_early()

import numpy as np  # noqa: E402
import orjson  # noqa: E402
from _timing import compare, fmt_time, print_table  # noqa: E402

import nnspec  # noqa: E402

SIZES = [784, 512, 512, 10]
ACTIVATIONS = ["relu", "relu", "softmax"]
GOALS = {"neuron": 2.0, "mlp": 1.05}  # issue 12: at most these ratios

Params = list[tuple[np.ndarray, np.ndarray]]


def write_spec(folder: Path, name: str, sizes: list[int], activations: list[str], dtype: str) -> tuple[Path, Params]:
    """A dense network with random weights in .npy files, and its (W, b) pairs, W of shape [units, in_features]."""
    rng = np.random.default_rng(0)
    params, layers = [], []
    for i, (fan_in, units, act) in enumerate(zip(sizes, sizes[1:], activations, strict=False)):
        w = (rng.standard_normal((units, fan_in)) * np.sqrt(2.0 / fan_in)).astype(dtype)
        b = (rng.standard_normal(units) * 0.1).astype(dtype)
        np.save(folder / f"{name}_w{i}.npy", w)
        np.save(folder / f"{name}_b{i}.npy", b)
        params.append((w, b))
        layers.append(
            {
                "type": "dense",
                "name": f"fc{i}",
                "units": units,
                "activation": act,
                "weights": {"file": f"{name}_w{i}.npy"},
                "bias": {"file": f"{name}_b{i}.npy"},
            }
        )
    spec = {"format": "nnspec/1", "name": name, "dtype": dtype, "inputs": [{"name": "x", "shape": [sizes[0]]}]}
    path = folder / f"{name}.json"
    path.write_bytes(orjson.dumps({**spec, "layers": layers}))
    return path, params


def hand_neuron(params: Params) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline for one sigmoid neuron: a = logsig(W p + b)."""
    ((w, b),) = params
    return lambda x: 1 / (1 + np.exp(-(x @ w.T + b)))


def hand_mlp(params: Params) -> Callable[[np.ndarray], np.ndarray]:
    """The baseline MLP: the seed's a = f(W p + b), written out for batch-first rows."""
    (w0, b0), (w1, b1), (w2, b2) = params

    def forward(x: np.ndarray) -> np.ndarray:
        a = np.maximum(x @ w0.T + b0, 0)
        a = np.maximum(a @ w1.T + b1, 0)
        n = a @ w2.T + b2
        e = np.exp(n - n.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return forward


def ort_session(spec: nnspec.Spec, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
    return ort.InferenceSession(nnspec.to_onnx(spec).SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 ms timing loops and 3 repeats")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 4096], help="MLP batches (default 64 4096)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, help="timed repeats per row (default 9, quick 3)")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and onnxruntime threads (default: libraries' own)")
    parser.add_argument("--onnxruntime", action="store_true", help="also time an onnxruntime session")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 9)
    min_time = 0.02 if args.quick else 0.2

    print(
        f"# bench_eval  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"nnspec {nnspec.__version__}  cpus {os.cpu_count()}  threads {args.threads or 'default'}  {args.dtype}"
    )
    print(
        f"# per-call median of {repeats} repeats (forms interleaved), each a loop of >= {min_time * 1e3:.0f} ms, "
        "after 1 warmup\n"
    )

    with tempfile.TemporaryDirectory() as tmp:
        neuron_path, neuron_params = write_spec(Path(tmp), "neuron", [2, 1], ["sigmoid"], args.dtype)
        mlp_path, mlp_params = write_spec(Path(tmp), "mlp", SIZES, ACTIVATIONS, args.dtype)
        specs = {"neuron": nnspec.load(neuron_path), "mlp": nnspec.load(mlp_path)}
    stages = [
        ("neuron", "one neuron 2-1 (sigmoid)", hand_neuron(neuron_params), [1]),
        ("mlp", f"MLP {'-'.join(map(str, SIZES))} ({', '.join(ACTIVATIONS)})", hand_mlp(mlp_params), args.batches),
    ]

    header = ["stage", "batch", "hand numpy", "nnspec", "x hand", "goal", "max abs diff"]
    if args.onnxruntime:
        header[5:5] = ["onnxruntime", "ort x hand"]
    rows = []
    rng = np.random.default_rng(1)
    for key, label, hand, batches in stages:
        model = nnspec.to_numpy(specs[key])
        session = ort_session(specs[key], args.threads) if args.onnxruntime else None
        for batch in batches:
            x = rng.standard_normal((batch, model.graph.inputs[0].shape[0])).astype(args.dtype)
            diff = float(np.abs(model(x) - hand(x)).max())
            forms = {"hand": lambda: hand(x), "model": lambda: model(x)}
            if session is not None:
                forms["ort"] = lambda: session.run(None, {"x": x})
            timings = compare(forms, repeats=repeats, min_time=min_time)
            t_hand, t_model = timings["hand"].median, timings["model"].median
            row = [label, batch, fmt_time(t_hand), fmt_time(t_model), f"**{t_model / t_hand:.2f}**"]
            if session is not None:
                row += [fmt_time(timings["ort"].median), f"{timings['ort'].median / t_hand:.2f}"]
            rows.append([*row, f"<= {GOALS[key]:.2f}", f"{diff:.1e}"])
    print_table(header, rows)
    print("\n(x hand: nnspec's per-call time / the hand-written NumPy pass's, on the same batch)")


if __name__ == "__main__":
    main()
