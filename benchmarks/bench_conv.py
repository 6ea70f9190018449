"""Per-call time of the NumPy evaluator on a small CNN, against onnxruntime on the same model.

The network is specs/digits_cnn.json (8x8 single-channel images: conv2d 3x3 relu, max_pool2d 2x2, conv2d 3x3
relu, global_avg_pool, dense, softmax; float32). Two forms run on the same input batch:
  - onnxruntime  : the baseline, an InferenceSession (CPU, default options) on `nnspec.to_onnx(spec)`;
  - nnspec numpy : `nnspec.to_numpy(spec)(x)`, input checks included (as a user calls it): each convolution
                   gathers its windows once (a strided view, one copy) and runs one matmul.

    python benchmarks/bench_conv.py              # batch 64
    python benchmarks/bench_conv.py --batches 1 64 1024
    python benchmarks/bench_conv.py --quick      # shorter timing loops, fewer repeats
    python benchmarks/bench_conv.py --threads 1  # one BLAS thread and one onnxruntime thread
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path

from _timing import apply_threads_early  # noqa: E402  (imports no NumPy)

THREADS = apply_threads_early()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from _timing import compare, fmt_time, print_table  # noqa: E402

import nnspec  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "digits_cnn.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 ms timing loops and 3 repeats")
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument("--repeats", type=int, help="timed repeats per row (default 7, quick 3)")
    parser.add_argument("--threads", type=int, default=0, help="BLAS and onnxruntime threads (default: libraries' own)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    min_time = 0.02 if args.quick else 0.2

    spec = nnspec.load(SPEC)
    graph = nnspec.graph(spec)
    print(
        f"# bench_conv  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"onnxruntime {ort.__version__}  nnspec {nnspec.__version__}  cpus {os.cpu_count()}  "
        f"threads {args.threads or 'default'}  {graph.dtype}"
    )
    layers = ", ".join(f"{n.op} {list(n.shape)}" for n in graph.nodes)
    print(f"# {SPEC.name}: {layers}")
    print(
        f"# per-call median of {repeats} repeats (forms interleaved), each a loop of >= {min_time * 1e3:.0f} ms, "
        "after 1 warmup\n"
    )

    model = nnspec.to_numpy(spec)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads  # 0: onnxruntime's default, one per core
    session = ort.InferenceSession(
        nnspec.to_onnx(spec).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    input_name = session.get_inputs()[0].name
    shape = graph.inputs[0].shape

    rows = []
    rng = np.random.default_rng(1)
    for batch in args.batches:
        x = rng.standard_normal((batch, *shape)).astype(graph.dtype)
        feed = {input_name: x}
        expected = session.run(None, feed)[0]  # logits
        diff = float(np.abs(model(x)["logits"] - expected).max())
        timings = compare(
            {"ort": lambda: session.run(None, feed), "model": lambda: model(x)}, repeats=repeats, min_time=min_time
        )
        t_ort, t_model = timings["ort"], timings["model"]
        rows += [
            [batch, "onnxruntime", fmt_time(t_ort.median), fmt_time(t_ort.median / batch), "1.00", "-"],
            [
                batch,
                "**nnspec numpy**",
                fmt_time(t_model.median),
                fmt_time(t_model.median / batch),
                f"**{t_model.median / t_ort.median:.2f}**",
                f"{diff:.1e}",
            ],
        ]
    print_table(["batch", "form", "per call", "per sample", "x onnxruntime", "max abs diff of logits"], rows)
    print("\n(x onnxruntime: per-call time / onnxruntime's on the same batch)")


if __name__ == "__main__":
    main()
