"""Per-call time of the NumPy evaluator on an MLP, against a hand-written NumPy forward pass and onnxruntime.

The network is 784-512-256-10 (relu, relu, softmax) with float32 weights in .npy files. Three forms
run on the same input batch:
  - numpy (hand)  : the baseline, `relu(x @ W.T + b)` layer after layer with the same arrays, softmax last;
  - nnspec numpy  : `nnspec.to_numpy(spec)(x)`, input checks included (as a user calls it);
  - onnxruntime   : an InferenceSession (CPU, default options) on `nnspec.to_onnx(spec)`.

    python benchmarks/bench_eval.py            # batches 1, 64, 1024
    python benchmarks/bench_eval.py --quick    # shorter timing loops, fewer repeats
    python benchmarks/bench_eval.py --threads 1  # one BLAS thread and one onnxruntime thread

Default thread counts are each library's own (all cores); on a shared or busy machine `--threads 1`
gives steadier numbers.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
from pathlib import Path

from _timing import apply_threads_early  # noqa: E402  (imports no NumPy)

THREADS = apply_threads_early()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import orjson  # noqa: E402
from _timing import compare, fmt_time, print_table

import nnspec  # noqa: E402

SIZES = [784, 512, 256, 10]
ACTIVATIONS = ["relu", "relu", "softmax"]


def write_mlp(folder: Path, dtype: str) -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    """The spec file and its (W, b) pairs, W of shape [units, in_features] as the spec stores them."""
    rng = np.random.default_rng(0)
    params, layers = [], []
    for i, (fan_in, units, act) in enumerate(zip(SIZES, SIZES[1:], ACTIVATIONS, strict=False)):
        w = (rng.standard_normal((units, fan_in)) * np.sqrt(2.0 / fan_in)).astype(dtype)
        b = (rng.standard_normal(units) * 0.1).astype(dtype)
        np.save(folder / f"w{i}.npy", w)
        np.save(folder / f"b{i}.npy", b)
        params.append((w, b))
        layers.append(
            {
                "type": "dense",
                "name": f"fc{i}",
                "units": units,
                "activation": act,
                "weights": {"file": f"w{i}.npy"},
                "bias": {"file": f"b{i}.npy"},
            }
        )
    spec = {
        "format": "nnspec/1",
        "name": "mlp",
        "dtype": dtype,
        "inputs": [{"name": "x", "shape": [SIZES[0]]}],
        "layers": layers,
    }
    path = folder / "mlp.json"
    path.write_bytes(orjson.dumps(spec))
    return path, params


def hand_forward(params: list[tuple[np.ndarray, np.ndarray]]):  # type: ignore[no-untyped-def]
    """The baseline: the seed's a = f(W p + b), written out for batch-first rows."""
    (w0, b0), (w1, b1), (w2, b2) = params

    def forward(x: np.ndarray) -> np.ndarray:
        a = np.maximum(x @ w0.T + b0, 0)
        a = np.maximum(a @ w1.T + b1, 0)
        n = a @ w2.T + b2
        e = np.exp(n - n.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 ms timing loops and 3 repeats")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, help="timed repeats per row (default 7, quick 3)")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and onnxruntime threads (default: libraries' own)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    min_time = 0.02 if args.quick else 0.2

    print(
        f"# bench_eval  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"onnxruntime {ort.__version__}  nnspec {nnspec.__version__}  cpus {os.cpu_count()}  "
        f"threads {args.threads or 'default'}  {args.dtype}"
    )
    print(
        f"# MLP {'-'.join(map(str, SIZES))} ({', '.join(ACTIVATIONS)}); per-call median of {repeats} repeats "
        f"(forms interleaved), each a loop of >= {min_time * 1e3:.0f} ms, after 1 warmup\n"
    )

    with tempfile.TemporaryDirectory() as tmp:
        spec_path, params = write_mlp(Path(tmp), args.dtype)
        spec = nnspec.load(spec_path)
    model = nnspec.to_numpy(spec)
    forward = hand_forward(params)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads  # 0: onnxruntime's default, one per core
    session = ort.InferenceSession(
        nnspec.to_onnx(spec).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name

    rows = []
    rng = np.random.default_rng(1)
    for batch in args.batches:
        x = rng.standard_normal((batch, SIZES[0])).astype(args.dtype)
        feed = {input_name: x}
        expected = forward(x)
        diff_numpy = float(np.abs(model(x) - expected).max())
        diff_ort = float(np.abs(session.run(None, feed)[0] - expected).max())
        timings = compare(
            {"hand": lambda: forward(x), "model": lambda: model(x), "ort": lambda: session.run(None, feed)},
            repeats=repeats,
            min_time=min_time,
        )
        t_hand, t_model, t_ort = timings["hand"], timings["model"], timings["ort"]
        rows += [
            [batch, "numpy (hand)", fmt_time(t_hand.median), fmt_time(t_hand.median / batch), "1.00", "-"],
            [
                batch,
                "**nnspec numpy**",
                fmt_time(t_model.median),
                fmt_time(t_model.median / batch),
                f"**{t_model.median / t_hand.median:.2f}**",
                f"{diff_numpy:.1e}",
            ],
            [
                batch,
                "onnxruntime",
                fmt_time(t_ort.median),
                fmt_time(t_ort.median / batch),
                f"{t_ort.median / t_hand.median:.2f}",
                f"{diff_ort:.1e}",
            ],
        ]
    print_table(["batch", "form", "per call", "per sample", "x hand", "max abs diff vs hand"], rows)
    print("\n(x hand: per-call time / the hand-written NumPy forward pass on the same batch)")


if __name__ == "__main__":
    main()
