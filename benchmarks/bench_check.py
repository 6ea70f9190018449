"""What `nnspec check` costs, against the least any output comparison must do on the same inputs.

Per network, on the inputs `nnspec check` draws (seed 0: batches of 1, 7 and 64 rows and the edge
batch), three timings:
  - baseline     : hand-written, the NumPy evaluator and an onnxruntime session run once on every
                   batch and every output compared with np.allclose (what a flat-tolerance test does);
  - end to end   : `nnspec.check` on a model that carries no nnspec metadata, so it is checked end to
                   end only (both sides run twice, the float64 oracle and derived bounds, the reports);
  - layer by layer: `nnspec.check` on the fresh export: end to end plus every layer against its own step.

    python benchmarks/bench_check.py           # digits_mlp, 256 x 5, 1024 x 4, digits_cnn
    python benchmarks/bench_check.py --quick   # fewer repeats
    python benchmarks/bench_check.py --repeats 15   # steadier medians (the small baselines take 7 to 16 ms)
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare  # noqa: E402

import nnspec  # noqa: E402
from nnspec.inputs import random_cases  # noqa: E402
from nnspec.onnxio.export import to_bytes  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"


def stack(width: int, depth: int, activation: str) -> nnspec.Spec:
    layer = {"type": "dense", "units": width, "activation": activation}
    layers = [
        {**layer, "weights": {"init": "he_normal", "seed": i}, "bias": {"init": "normal", "seed": 9 + i}}
        for i in range(depth)
    ]
    return nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": f"{activation}{width}x{depth}",
            "inputs": [{"name": "x", "shape": [width]}],
            "layers": layers,
        }
    )


def baseline(spec: nnspec.Spec, model: bytes) -> None:
    """Both forms once on every batch, each output compared with a flat tolerance."""
    graph = nnspec.graph(spec)
    numpy_model = nnspec.to_numpy(spec)
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for case in random_cases(graph):
        expected = numpy_model.run(case.feeds)
        got = dict(zip(names, session.run(None, dict(case.feeds)), strict=True))
        for name in names:
            np.allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeats", type=int, help="timed repeats of each form (default 5, --quick 3)")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    networks = [
        ("digits_mlp (784-256-128-10)", nnspec.load(SPECS / "digits_mlp.json")),
        ("relu 256 x 5", stack(256, 5, "relu")),
        ("tanh 1024 x 4", stack(1024, 4, "tanh")),
        ("digits_cnn (2 conv, 2 max pool, dense)", nnspec.load(SPECS / "digits_cnn.json")),
    ]
    print(
        f"# bench_check  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"onnxruntime {onnxruntime.__version__}  nnspec {nnspec.__version__}"
    )
    print(f"# median of {repeats} repeats after 1 warmup, the three forms interleaved\n")
    print("| network | baseline | end to end | x baseline | layer by layer | x baseline |")
    print("|---|---|---|---|---|---|")
    for label, spec in networks:
        fresh = nnspec.to_onnx(spec)
        anonymous = nnspec.to_onnx(spec)
        del anonymous.metadata_props[:]  # not nnspec's: checked end to end only
        fresh_bytes, anonymous_bytes = to_bytes(fresh), to_bytes(anonymous)
        timings = compare(
            {
                "baseline": lambda s=spec, m=fresh_bytes: baseline(s, m),
                "end to end": lambda s=spec, m=anonymous_bytes: nnspec.check(s, onnx_model=m),
                "layer by layer": lambda s=spec, m=fresh_bytes: nnspec.check(s, onnx_model=m),
            },
            repeats=repeats,
        )
        base = timings["baseline"].median
        e2e, steps = timings["end to end"].median, timings["layer by layer"].median
        print(f"| {label} | {base:.3f} s | {e2e:.3f} s | {e2e / base:.1f} | {steps:.3f} s | {steps / base:.1f} |")


if __name__ == "__main__":
    main()
