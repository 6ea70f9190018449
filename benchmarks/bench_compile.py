"""What `nnspec compile --no-check` costs, against the obvious export of the same weights and the disk floor.

The networks are 6-layer tanh MLPs whose float32 weights and biases are .npy files beside the spec (widths
408, 1291 and 4096: 1M, 10M and 100M parameters). Per network, three forms, interleaved (repeat k of every
form runs before repeat k+1 of any, so load from elsewhere on the machine slows all of them alike):

  - floor   : `np.load` of every .npy file and `np.save` of the same arrays (the least any compiler does);
  - obvious : `np.load`, `numpy_helper.from_array`, `helper.make_graph` / `make_model`, `onnx.save`;
  - nnspec  : `nnspec compile SPEC -o OUT --no-check`: the CLI's own code (typer app, in-process).

Each run is a fresh Python process that imports numpy, onnx and nnspec first and then times its work with
perf_counter, so interpreter start-up and imports are left out alike. Its peak memory is the peak resident
size during the work (VmHWM, reset after the imports; ru_maxrss where /proc is missing) minus the resident
size after the imports, shown as a multiple of the weights' bytes. Outputs are deleted
before each run; the .npy inputs are in the page cache after the first run of the first form. nnspec's
files are fsync'ed before they are renamed into place (atomic writes); the other forms' are not.

    python benchmarks/bench_compile.py               # 1M, 10M, 100M parameters (about 3 minutes)
    python benchmarks/bench_compile.py --quick       # 1M and 10M, fewer repeats
    python benchmarks/bench_compile.py --big         # also one model of about 3 GB (over protobuf's 2 GiB)

`--big` writes a 6 x 11264 x 11264 MLP (761M parameters, 3.0 GB of float32; about 9 GB of disk in all) and
reports, each in its own process: `nnspec compile --no-check` (external data, automatically), the obvious
export with `onnx.save(save_as_external_data=True)`, an onnxruntime session opened from nnspec's file and
one run, and `nnspec run --backend onnxruntime` (the spec's fresh export, in memory). `--big-check` adds
`nnspec check --onnx` of nnspec's file, which needs about 5x the weights in memory (measured 4.7x; see
bench_check_memory.py, which measures the check, fresh and --onnx, against a bare comparison).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import fmt_time, print_table  # noqa: E402

DEPTH = 6
SIZES = {"1M": 408, "10M": 1291, "100M": 4096}
BIG_WIDTH = 11264

# Runs in a fresh interpreter: imports, then the baseline of ru_maxrss, then the timed work; prints JSON.
WORKER = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import nnspec.cli
form, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
spec = json.loads((folder / "mlp.json").read_text())
files = [(f"{l['name']}.{k}", folder / l[k]["file"]) for l in spec["layers"] for k in ("weights", "bias")]

def obvious(external):
    arrays = {name: np.load(path) for name, path in files}
    inits = [numpy_helper.from_array(a, name) for name, a in arrays.items()]
    nodes, x = [], "x"
    for layer in spec["layers"]:
        n = layer["name"]
        nodes.append(helper.make_node("Gemm", [x, f"{n}.weights", f"{n}.bias"], [f"{n}/n"], transB=1))
        nodes.append(helper.make_node("Tanh", [f"{n}/n"], [n]))
        x = n
    width = spec["inputs"][0]["shape"][0]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", spec["layers"][-1]["units"]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save(model, out, save_as_external_data=True, all_tensors_to_one_file=True, location=out.name + ".data")
    else:
        onnx.save(model, out)

def floor():
    out.mkdir()
    for name, path in files:
        np.save(out / path.name, np.load(path))

def nnspec_cli(*args):
    try:
        nnspec.cli.app(list(args), standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, exc.code

def session():
    import onnxruntime
    s = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    width = spec["inputs"][0]["shape"][0]
    s.run(None, {"x": np.ones((8, width), np.float32)})

if form == "session":
    import onnxruntime
if form in ("run", "check"):
    np.save(folder / "x.npy", np.ones((8, spec["inputs"][0]["shape"][0]), np.float32))
forms = {
    "floor": floor,
    "obvious": lambda: obvious(False),
    "obvious-external": lambda: obvious(True),
    "nnspec": lambda: nnspec_cli("compile", str(folder / "mlp.json"), "-o", str(out), "--no-check"),
    "session": session,
    "run": lambda: nnspec_cli("run", str(folder / "mlp.json"), "-i", str(folder / "x.npy"), "-o", str(out) + ".npy",
                              "--backend", "onnxruntime"),
    "check": lambda: nnspec_cli("check", str(folder / "mlp.json"), "--onnx", str(out)),
}
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))

try:  # Linux: the peak (VmHWM) restarts from the resident size now, so imports' own peaks are left out
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, peak_of = status("VmRSS"), lambda: status("VmHWM")
except OSError:  # elsewhere: ru_maxrss, which may include a larger peak reached while importing
    base, peak_of = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
forms[form]()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_bytes": (peak_of() - base) * 1024}))
"""


def write_mlp(folder: Path, width: int) -> int:
    """A 6-layer tanh MLP of `width` units on `width` inputs, float32 .npy weights; returns the weights' bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(width)
    layers = []
    for i in range(DEPTH):
        weights = rng.standard_normal((width, width), dtype=np.float32)
        weights *= np.float32(1 / np.sqrt(width))
        np.save(folder / f"w{i}.npy", weights)
        np.save(folder / f"b{i}.npy", np.zeros(width, np.float32))
        layers.append(
            {
                "type": "dense",
                "name": f"l{i}",
                "units": width,
                "activation": "tanh",
                "weights": {"file": f"w{i}.npy"},
                "bias": {"file": f"b{i}.npy"},
            }
        )
        del weights
    spec = {"format": "nnspec/1", "name": "mlp", "inputs": [{"name": "x", "shape": [width]}], "layers": layers}
    (folder / "mlp.json").write_text(json.dumps(spec))
    return DEPTH * (width * width + width) * 4


def run_form(form: str, folder: Path, out: Path) -> dict[str, float]:
    for path in (out, Path(f"{out}.data"), Path(f"{out}.npy")):
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", WORKER, form, str(folder), str(out)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{form} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_sizes(root: Path, sizes: dict[str, int], repeats: int) -> None:
    forms = ("floor", "obvious", "nnspec")
    rows = []
    for label, width in sizes.items():
        folder = root / label
        nbytes = write_mlp(folder, width)
        out = root / f"{label}.out"
        times: dict[str, list[float]] = {f: [] for f in forms}
        peaks: dict[str, list[float]] = {f: [] for f in forms}
        run_form("floor", folder, out)  # warms the page cache with the inputs
        for _ in range(repeats):
            for form in forms:
                result = run_form(form, folder, out.with_suffix(".onnx") if form != "floor" else out)
                times[form].append(result["seconds"])
                peaks[form].append(result["peak_bytes"] / nbytes)
        med = {f: statistics.median(t) for f, t in times.items()}
        ratios = {f: statistics.median(a / b for a, b in zip(times[f], times["obvious"], strict=True)) for f in forms}
        floor_ratio = statistics.median(a / b for a, b in zip(times["nnspec"], times["floor"], strict=True))
        params = DEPTH * (width * width + width)
        rows.append(
            [
                f"{label} ({params:,}, {nbytes / 1e6:.0f} MB)",
                fmt_time(med["floor"]),
                fmt_time(med["obvious"]),
                fmt_time(med["nnspec"]),
                f"{ratios['nnspec']:.2f}x",
                f"{floor_ratio:.2f}x",
                " / ".join(f"{max(peaks[f]):.2f}x" for f in forms),
            ]
        )
        shutil.rmtree(folder)
    print_table(
        [
            "parameters",
            "floor (np.load + np.save)",
            "obvious export",
            "nnspec compile --no-check",
            "nnspec / obvious",
            "nnspec / floor",
            "peak memory / weights: floor / obvious / nnspec",
        ],
        rows,
    )


def bench_big(root: Path, check: bool) -> None:
    folder = root / "big"
    nbytes = write_mlp(folder, BIG_WIDTH)
    print(f"\n--big: 6 x {BIG_WIDTH} x {BIG_WIDTH} tanh MLP, {nbytes / 1e9:.2f} GB of float32 weights")
    rows = []
    # (form, what, output, the peak memory it needs as a multiple of the weights, measured at 100M parameters)
    steps = [
        ("floor", "np.load + np.save of the weights", root / "big.floor", 0.2),
        ("nnspec", "nnspec compile --no-check (external data: automatic)", root / "big.onnx", 1.1),
        ("session", "onnxruntime session from nnspec's file + one run (8 rows)", root / "big.onnx", 2.2),
        ("run", "nnspec run --backend onnxruntime (fresh export in memory, 8 rows)", root / "big.run", 3),
        ("obvious-external", "obvious export, onnx.save(save_as_external_data=True)", root / "big.obvious.onnx", 6),
    ]
    if check:
        steps.insert(3, ("check", "nnspec check --onnx (nnspec's file)", root / "big.onnx", 5))
    for form, what, out, needs in steps:
        available = memory_available()
        if available is not None and needs * nbytes > 0.7 * available:  # room left for the rest of the machine
            rows.append(
                [what, f"skipped: needs ~{needs * nbytes / 1e9:.0f} GB, {available / 1e9:.0f} GB available", ""]
            )
            continue
        if form in ("session", "check"):  # these read nnspec's model: keep it
            done = subprocess.run(
                [sys.executable, "-c", WORKER, form, str(folder), str(out)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"{form} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            result = run_form(form, folder, out)
        extra = ""
        if form == "nnspec":
            sizes = [p.stat().st_size for p in (out, Path(f"{out}.data"))]
            extra = f" ({out.name} {sizes[0]:,} B + {out.name}.data {sizes[1] / 1e9:.2f} GB)"
        rows.append([what + extra, fmt_time(result["seconds"]), f"{result['peak_bytes'] / nbytes:.2f}x"])
        if form == "floor":
            shutil.rmtree(out)
    print_table(["step", "time", "peak memory / weights"], rows)


def memory_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M and 10M parameters, 3 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big", action="store_true", help="also one ~3 GB model (over protobuf's 2 GiB)")
    parser.add_argument("--big-check", action="store_true", help="with --big, also `nnspec check --onnx` (~15 GB)")
    parser.add_argument("--folder", type=Path, default=None, help="where to write the models (default: a temp folder)")
    args = parser.parse_args()
    sizes = {k: v for k, v in SIZES.items() if k != "100M"} if args.quick else SIZES
    repeats = 3 if args.quick else args.repeats
    print(
        f"bench_compile: {datetime.date.today()}, {platform.machine()}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, median of {repeats} interleaved runs, each in a fresh process"
    )
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        bench_sizes(Path(tmp), sizes, repeats)
        if args.big:
            bench_big(Path(tmp), args.big_check)


if __name__ == "__main__":
    main()
