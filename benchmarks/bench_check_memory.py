"""What `nnspec check` costs in memory and time on large networks, against a bare comparison of the same model.

The networks are 6-layer tanh MLPs whose float32 weights and biases are .npy files beside the spec (those of
bench_compile.py): 6 x 4096 x 4096 (100M parameters, 403 MB) by default, and with `--big` 6 x 11264 x 11264
(761M parameters, 3.05 GB, over protobuf's 2 GiB). Each network is compiled once with external data
(`nnspec compile --no-check --external-data`), then three forms run, each in a fresh process:

  - baseline    : `nnspec.to_numpy(spec)` and an onnxruntime session opened from the compiled file's path, each
                  run once on every batch the check draws (seed 0: 1, 7 and 64 rows and the edge batch), every
                  output compared with np.allclose (rtol = atol = 1e-4): what a flat-tolerance test does;
  - check       : `nnspec check SPEC` (a fresh export in memory; the CLI's own code, in-process);
  - check --onnx: `nnspec check SPEC --onnx FILE` on the compiled file and its external data.

A process imports numpy, onnxruntime and nnspec first; its time is perf_counter around the work, spec loading
included, and its peak memory is the peak resident size during the work (VmHWM, reset after the imports)
less the resident size after the imports, as a multiple of the weights' bytes. Resident size counts the
pages of a mapped data file that were read (the --onnx form maps the file and onnxruntime copies from it).

    python benchmarks/bench_check_memory.py          # 403 MB (about a minute)
    python benchmarks/bench_check_memory.py --big    # also 3.05 GB: about 7 GB of disk and 16 GB of memory
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_time, print_table  # noqa: E402
from bench_compile import BIG_WIDTH, memory_available, write_mlp  # noqa: E402

WIDTH = 4096
FORMS = {
    "baseline": "baseline: to_numpy + onnxruntime session from the file + np.allclose",
    "check": "nnspec check SPEC (fresh export)",
    "check-onnx": "nnspec check SPEC --onnx FILE (external data)",
}
# The peak each form was measured to need, as a multiple of the weights (2026-11-30, this machine), for --big's guard.
NEEDS = {"baseline": 2.5, "check": 5.0, "check-onnx": 6.0}


def worker(form: str, folder: Path) -> None:
    """One form, timed in this process after its imports; prints seconds, the peak and the verdict as JSON."""
    import time

    import numpy as np
    import onnxruntime

    import nnspec
    import nnspec.cli
    from nnspec.inputs import random_cases

    spec, model = folder / "mlp.json", folder / "mlp.onnx"

    def baseline() -> int:
        numpy_model = nnspec.to_numpy(nnspec.load(spec))
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        agree = True
        for case in random_cases(numpy_model.graph):
            expected = numpy_model.run(case.feeds)
            got = dict(zip(names, session.run(None, dict(case.feeds)), strict=True))
            agree &= all(np.allclose(got[n], expected[n], rtol=1e-4, atol=1e-4) for n in names)
        return 0 if agree else 1

    def cli(*args: str) -> int:
        try:
            nnspec.cli.app(list(args), standalone_mode=False)
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    forms = {
        "baseline": baseline,
        "check": lambda: cli("check", str(spec)),
        "check-onnx": lambda: cli("check", str(spec), "--onnx", str(model)),
    }

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) restarts from the resident size now
        f.write("5")
    base = status("VmRSS")
    start = time.perf_counter()
    code = forms[form]()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_bytes": status("VmHWM") - base, "exit": code}))


def run(form: str, folder: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", form, str(folder)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{form} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(root: Path, width: int, guard: bool) -> list[list[str]]:
    folder = root / f"mlp{width}"
    nbytes = write_mlp(folder, width)
    label = f"6 x {width} x {width} ({nbytes / 1e9:.2f} GB)"
    compiled = subprocess.run(
        [sys.executable, "-m", "nnspec", "compile", str(folder / "mlp.json"), "-o", str(folder / "mlp.onnx")]
        + ["--no-check", "--external-data"],
        capture_output=True,
        text=True,
        check=False,
    )
    if compiled.returncode != 0:
        raise SystemExit(f"compile failed:\n{compiled.stderr[-3000:]}")
    rows, base = [], None
    for form, what in FORMS.items():
        available = memory_available()
        if guard and available is not None and NEEDS[form] * nbytes > 0.9 * available:
            rows.append([label, what, f"skipped: needs ~{NEEDS[form] * nbytes / 1e9:.0f} GB", "", "", "", ""])
            continue
        result = run(form, folder)
        base = base or result
        verdict = {0: "pass", 1: "FAIL"}.get(int(result["exit"]), f"exit {result['exit']}")
        rows.append(
            [
                label,
                what,
                fmt_time(result["seconds"]),
                f"{result['seconds'] / base['seconds']:.1f}",
                f"{result['peak_bytes'] / nbytes:.2f}x",
                f"{result['peak_bytes'] / base['peak_bytes']:.1f}",
                verdict,
            ]
        )
    shutil.rmtree(folder)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", action="store_true", help=f"also 6 x {BIG_WIDTH} x {BIG_WIDTH} (3.05 GB)")
    parser.add_argument("--width", type=int, default=WIDTH, help=f"the default network's width (default {WIDTH})")
    parser.add_argument("--folder", type=Path, default=None, help="where to write the models (default: a temp folder)")
    parser.add_argument("--worker", nargs=2, metavar=("FORM", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return
    import numpy as np
    import onnxruntime

    print(
        f"bench_check_memory: {datetime.date.today()}, {platform.machine()}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, onnxruntime {onnxruntime.__version__}; each form once, in a fresh process"
    )
    rows = []
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        rows += bench(Path(tmp), args.width, guard=False)
        if args.big:
            rows += bench(Path(tmp), BIG_WIDTH, guard=True)
    print_table(["network", "form", "time", "x baseline", "peak memory / weights", "x baseline", "verdict"], rows)


if __name__ == "__main__":
    main()
