"""How fast nnspec.load reads a spec with large weights, against the parsers and loaders it wraps.

Inline weights: nnspec.load(spec.json) vs `orjson.loads` and `json.loads` of the same file's bytes
(file read included in every row), and vs `orjson.loads` + `np.asarray` of the weights (the least any
loader that returns arrays must do). Weights in files: nnspec.load of a spec that points at .npy files
vs `np.load` of those files, and vs `np.load` + `np.isfinite(...).all()` (the finiteness check the
spec format requires of every weight). The network is one dense layer of N units on N inputs, float32.

Inline weights end to end (issue 12): `nnspec.load(path)` then `nnspec.to_numpy(spec)` vs
`orjson.loads(path.read_bytes())` + `np.asarray` of the weights and of the bias, timed in the same
round-robin, each with its peak memory as a multiple of the file's size. Peak memory is measured in a
fresh subprocess per form: the resident set's high-water mark (Linux `VmHWM`, reset through
/proc/self/clear_refs once the imports are done and the code paths warmed on a 2x2 spec) minus the
resident set at that moment, so it counts every allocation (orjson's and NumPy's included) that
stays in memory. Where /proc is missing it falls back to `ru_maxrss` differences, which can only
under-count.

    python benchmarks/bench_load.py            # N = 1000 and 2000
    python benchmarks/bench_load.py --quick    # N = 1000, fewer repeats
    python benchmarks/bench_load.py --profile  # also cProfile nnspec.load on the largest specs
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
from _timing import compare, fmt_time, print_table

import nnspec


def write_specs(folder: Path, n: int) -> tuple[Path, Path, list[Path]]:
    """An inline spec and a .npy spec of the same N x N dense layer; returns their paths and the .npy files."""
    rng = np.random.default_rng(n)
    weights = rng.standard_normal((n, n))  # float64 numbers written in full: the slowest text to parse
    bias = rng.standard_normal(n)
    base = {"format": "nnspec/1", "name": f"dense{n}", "inputs": [{"name": "x", "shape": [n]}]}
    layer = {"type": "dense", "name": "fc", "units": n, "activation": "relu"}

    inline = folder / f"dense{n}_inline.json"
    inline.write_bytes(
        orjson.dumps({**base, "layers": [{**layer, "weights": weights.tolist(), "bias": bias.tolist()}]})
    )

    w_file, b_file = folder / f"dense{n}_w.npy", folder / f"dense{n}_b.npy"
    np.save(w_file, weights.astype(np.float32))  # stored in the spec's dtype: no cast needed on load
    np.save(b_file, bias.astype(np.float32))
    files = folder / f"dense{n}_npy.json"
    files.write_bytes(
        orjson.dumps({**base, "layers": [{**layer, "weights": {"file": w_file.name}, "bias": {"file": b_file.name}}]})
    )
    return inline, files, [w_file, b_file]


def orjson_to_arrays(path: Path) -> list[np.ndarray]:
    data = orjson.loads(path.read_bytes())
    return [np.asarray(data["layers"][0][k], dtype=np.float32) for k in ("weights", "bias")]


def nnspec_to_numpy(path: Path) -> nnspec.NumpyModel:
    return nnspec.to_numpy(nnspec.load(path))


FORMS = {"arrays": orjson_to_arrays, "to_numpy": nnspec_to_numpy}


def _status(field: str) -> int:
    """A size from /proc/self/status (`VmRSS`, `VmHWM`), in bytes."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def measure_peak(form: str, path: Path) -> None:
    """(In a fresh process) print the bytes by which one call of FORMS[form](path) raises the peak RSS."""
    fn = FORMS[form]
    with tempfile.TemporaryDirectory() as tmp:
        fn(write_specs(Path(tmp), 2)[0])  # lazy imports and first-call caches are not the data's memory
    try:
        Path("/proc/self/clear_refs").write_text("5")  # from now on VmHWM starts again from VmRSS
        before = _status("VmRSS")
        peak = lambda: _status("VmHWM")  # noqa: E731
    except OSError:  # no /proc: the lifetime peak, whose rise can only under-count
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731
    result = fn(path)
    print(peak() - before)
    del result


def peak_memory(form: str, path: Path) -> float:
    """Peak memory of one call of FORMS[form](path), in a fresh interpreter, as a multiple of the file's size."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure-peak", form, str(path)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1]) / path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000 only, 3 repeats")
    parser.add_argument("--sizes", type=int, nargs="+", help="layer sizes N (default 1000 2000)")
    parser.add_argument("--repeats", type=int, help="timed repeats per row (default 7, quick 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile nnspec.load on the largest specs")
    parser.add_argument("--measure-peak", nargs=2, metavar=("FORM", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_peak:
        measure_peak(args.measure_peak[0], Path(args.measure_peak[1]))
        return
    sizes = args.sizes or ([1000] if args.quick else [1000, 2000])
    repeats = args.repeats or (3 if args.quick else 7)

    print(
        f"# bench_load  {datetime.date.today()}  python {platform.python_version()}  numpy {np.__version__}  "
        f"orjson {orjson.__version__}  nnspec {nnspec.__version__}  cpus {os.cpu_count()}"
    )
    print(
        f"# per-call median of {repeats} repeats (loaders interleaved, calls under 50 ms looped) after 1 warmup; "
        "all rows include reading the file\n"
    )

    rows: list[list[str]] = []
    end_to_end: list[list[str]] = []
    summary: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            inline, files, npys = write_specs(folder, n)
            mb = inline.stat().st_size / 1e6
            t = compare(
                {
                    "orjson": lambda: orjson.loads(inline.read_bytes()),
                    "json": lambda: json.loads(inline.read_bytes()),
                    "arrays": lambda: orjson_to_arrays(inline),
                    "inline": lambda: nnspec.load(inline),
                    "npload": lambda: [np.load(p, allow_pickle=False) for p in npys],
                    "checked": lambda: [np.isfinite(np.load(p, allow_pickle=False)).all() for p in npys],
                    "files": lambda: nnspec.load(files),
                    "to_numpy": lambda: nnspec_to_numpy(inline),
                },
                repeats=repeats,
                min_time=0.05,  # loops the sub-millisecond .npy loads; the JSON ones run once per repeat
            )
            t_orjson, t_json, t_arrays, t_inline = t["orjson"], t["json"], t["arrays"], t["inline"]
            t_npload, t_checked, t_files = t["npload"], t["checked"], t["files"]
            label = f"{n}x{n}"
            rows += [
                [label, f"inline JSON, {mb:.1f} MB", "orjson.loads", fmt_time(t_orjson.median), "1.00"],
                [label, "", "json.loads", fmt_time(t_json.median), f"{t_json.median / t_orjson.median:.2f}"],
                [
                    label,
                    "",
                    "orjson.loads + np.asarray",
                    fmt_time(t_arrays.median),
                    f"{t_arrays.median / t_orjson.median:.2f}",
                ],
                [
                    label,
                    "",
                    "**nnspec.load**",
                    fmt_time(t_inline.median),
                    f"**{t_inline.median / t_orjson.median:.2f}**",
                ],
                [
                    label,
                    f".npy files, {sum(p.stat().st_size for p in npys) / 1e6:.1f} MB",
                    "np.load",
                    fmt_time(t_npload.median),
                    "1.00",
                ],
                [
                    label,
                    "",
                    "np.load + isfinite check",
                    fmt_time(t_checked.median),
                    f"{t_checked.median / t_npload.median:.2f}",
                ],
                [label, "", "**nnspec.load**", fmt_time(t_files.median), f"**{t_files.median / t_npload.median:.2f}**"],
            ]
            t_model = t["to_numpy"]
            memory = {form: peak_memory(form, inline) for form in FORMS}
            model_ratio = f"{t_model.median / t_arrays.median:.2f}"
            end_to_end += [
                [label, f"{mb:.1f} MB", "orjson.loads + np.asarray", fmt_time(t_arrays.median), "1.00",
                 f"{memory['arrays']:.2f}x"],
                [label, "", "**nnspec.load + to_numpy**", fmt_time(t_model.median), f"**{model_ratio}**",
                 f"**{memory['to_numpy']:.2f}x**"],
            ]  # fmt: skip
            summary.append(
                f"N={n}: nnspec/orjson = {t_inline.median / t_orjson.median:.2f}, "
                f"nnspec/json = {t_inline.median / t_json.median:.2f}, "
                f"nnspec/(orjson+asarray) = {t_inline.median / t_arrays.median:.2f}, "
                f"nnspec(.npy)/np.load = {t_files.median / t_npload.median:.2f}, "
                f"(nnspec.load + to_numpy)/(orjson + asarray) = {model_ratio}, "
                f"peak memory {memory['to_numpy']:.2f}x the file (orjson + asarray: {memory['arrays']:.2f}x)"
            )
        print_table(["weights", "spec", "loader", "median", "x baseline"], rows)
        print("\n(x baseline: time / orjson.loads for inline rows, time / np.load for .npy rows)\n")
        print("Inline weights end to end: nnspec.load(path) then nnspec.to_numpy(spec)\n")
        print_table(
            ["weights", "inline JSON", "loader", "median", "x orjson + asarray", "peak memory / file"], end_to_end
        )
        print("\n(peak memory: rise of the resident set's high-water mark over one call, in a fresh process)\n")
        print("\n".join(summary))

        if args.profile:
            n = max(sizes)
            for spec_file in (folder / f"dense{n}_inline.json", folder / f"dense{n}_npy.json"):
                profile(spec_file)


def profile(spec_file: Path) -> None:
    """Print where one nnspec.load of `spec_file` spends its time (cProfile, by own time)."""
    nnspec.load(spec_file)
    profiler = cProfile.Profile()
    profiler.enable()
    nnspec.load(spec_file)
    profiler.disable()
    print(f"\n# cProfile of one nnspec.load({spec_file.name})")
    pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
