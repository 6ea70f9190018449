"""Shared timing helper for the benchmark scripts (not part of the nnspec package)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


def apply_threads_early() -> int:
    """Honour --threads N before NumPy loads OpenBLAS, which reads its thread count once, at import.

    Call it before importing NumPy (this module imports none); returns N, or 0 for the default.
    """
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            value = sys.argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        else:
            continue
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = value
        return int(value)
    return 0


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the best over `repeats` timed repeats of `number` calls each."""

    median: float
    best: float
    repeats: int
    number: int


def compare(
    fns: dict[str, Callable[[], object]], *, repeats: int, min_time: float = 0.0, warmup: int = 1
) -> dict[str, Timing]:
    """Time several functions with time.perf_counter, in round-robin: repeat k of every function runs
    before repeat k+1 of any, so a burst of load from elsewhere on the machine slows all of them alike
    and their ratios stay meaningful even when the absolute times wander.

    Each function first gets `warmup` untimed calls. Fast calls are looped: each repeat runs a function
    enough times to last at least `min_time` seconds, so that timer resolution and call overhead do not
    dominate its per-call figure.
    """
    numbers = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        number = 1
        while min_time > 0:
            start = time.perf_counter()
            for _ in range(number):
                fn()
            if time.perf_counter() - start >= min_time:
                break
            number *= 2
        numbers[name] = number
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            number = numbers[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: Timing(statistics.median(s), min(s), repeats, numbers[name]) for name, s in samples.items()}


def measure(fn: Callable[[], object], *, repeats: int, min_time: float = 0.0, warmup: int = 1) -> Timing:
    """Time one function: `warmup` untimed calls, then `repeats` timed loops (see `compare`)."""
    return compare({"fn": fn}, repeats=repeats, min_time=min_time, warmup=warmup)["fn"]


def fmt_time(seconds: float) -> str:
    """`0.000123` -> `123.0 us`, `0.0123` -> `12.30 ms`, `1.5` -> `1.500 s`."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain Markdown table, so the output can be pasted into benchmarks/README.md."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))
