"""Cross-check every spec under a folder, in parallel processes; one spec's failure never stops the others."""

from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .api import check, load
from .errors import NNSpecError
from .limits import Limits
from .render import json_safe
from .spec import parse_json
from .threads import cores, limited, per_process

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FolderResult:
    """One spec's outcome, as `nnspec check PATH` alone would give it."""

    path: Path
    exit_code: int  # 0 agree, 1 disagree (or nnspec crashed, Python's own status), 2 invalid input
    report: dict[str, Any] | None = None  # Report.to_dict(), when the check ran
    error: str | None = None  # the message, when it could not run
    text: str = ""  # the rendered report, or the error, as plain text for people

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def worst_margin(self) -> float | None:
        """The largest error / allowed error over every output and layer step (above 1 fails); None when
        nothing ran."""
        if self.report is None:
            return None
        ratios = [o.get("worst_margin") for o in [*self.report.get("outputs", []), *self.report.get("steps", [])]]
        return max((r for r in ratios if r is not None), default=None)

    @property
    def summary(self) -> str:
        """What failed, in a line, or the error; empty when the spec passed."""
        if self.report is None:
            return self.error or ""
        failing = ", ".join(dict.fromkeys(o["name"] for o in self.report["outputs"] if not o["passed"]))
        steps = ", ".join(dict.fromkeys(s["name"] for s in self.report.get("steps", []) if not s["passed"]))
        return "; ".join(
            [
                *self.report["problems"],
                *([f"outputs differ: {failing}"] if failing else []),
                *([f"layers differ from their own steps: {steps}"] if steps else []),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an unbounded error ratio (inf, NaN) becomes null, as in the single-spec JSON report."""
        return {
            "path": self.path.as_posix(),
            "passed": self.passed,
            "exit_code": self.exit_code,
            "report": json_safe(self.report),
            "error": self.error,
        }


def to_json(results: Iterable[FolderResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False) + "\n"


def exit_code(results: Iterable[FolderResult]) -> int:
    """1 if any spec disagrees (or crashed nnspec), else 2 if any is invalid, else 0.

    A disagreement outranks an invalid spec: it is what the check exists to find, and 2 keeps its
    single-spec meaning, "nothing was found to disagree, but some input could not be checked".
    """
    codes = {r.exit_code for r in results}
    return 1 if 1 in codes else max(codes, default=0)


# Top-level keys that make a JSON file a spec; a key this close to one (difflib's ratio) is taken for a typo
# of it, so that a spec with a misspelt "format" and "layers" is reported as invalid, never skipped.
SPEC_KEYS = ("format", "layers")
TYPO_RATIO = 0.7  # "fromat" and "layer" are 0.83 and 0.91 from their keys; input names like "features" 0.46


@dataclass(frozen=True)
class SpecFiles:
    """The `*.json` files under a folder, sorted: the specs, and those left out with the reason."""

    specs: list[Path]
    skipped: list[Path]  # plainly not specs: input files and other JSON (see looks_like_spec)
    excluded: list[Path]  # matched an --exclude pattern


def looks_like_spec(path: Path) -> bool:
    """False only for JSON that is plainly not a spec: an array, or an object with no "format" or "layers" key
    (nor a key close to either). Anything unreadable, malformed or over the limits may be a broken spec: True."""
    try:
        if path.stat().st_size > Limits.from_env().max_spec_bytes:
            return True
        raw = path.read_bytes()
        if any(f'"{key}"'.encode() in raw for key in SPEC_KEYS):
            return True
        data = parse_json(raw, str(path))
    except (OSError, NNSpecError):
        return True
    if not isinstance(data, dict):
        return False
    return any(
        difflib.SequenceMatcher(None, key.lower(), spec_key).ratio() >= TYPO_RATIO
        for key in data
        for spec_key in SPEC_KEYS
    )


def find_specs(folder: str | Path, exclude: Sequence[str] = ()) -> SpecFiles:
    """Every `*.json` file under `folder`, recursively and sorted, that is a spec (see looks_like_spec) and
    matches no `exclude` glob. A glob matches the path relative to the folder (`*` also matches `/`) or the
    file's name: `inputs/*`, `*.inputs.json`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NNSpecError(
            f"expected a folder of specs, found {'a file' if folder.exists() else 'nothing'}", source=str(folder)
        )
    found = SpecFiles([], [], [])
    for path in sorted(p for p in folder.rglob("*.json") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(fnmatch.fnmatchcase(relative, g) or fnmatch.fnmatchcase(path.name, g) for g in exclude):
            found.excluded.append(path)
        elif looks_like_spec(path):
            found.specs.append(path)
        else:
            found.skipped.append(path)
    if not found.specs:
        left = ""
        if found.skipped or found.excluded:
            left = f" ({len(found.skipped)} JSON file(s) that are not specs, {len(found.excluded)} excluded)"
        raise NNSpecError(f"expected *.json specs in this folder or below it, found none{left}", source=str(folder))
    return found


@dataclass(frozen=True)
class Shard:
    """`K/N`: the K-th of N disjoint shares of a folder's specs (1 <= K <= N), for a CI matrix of N jobs.

    The specs, ordered by their path relative to the folder (as text, `/`-separated: the same order on every
    machine and Python), are dealt out in turn: the i-th (from 0) goes to share i mod N + 1. The N shares are
    disjoint, cover the folder, and differ in size by at most one spec. A share depends only on the set of spec
    paths: adding a spec may move later ones to another share, never out of every share.
    """

    index: int  # K, from 1
    count: int  # N

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"2/4"` -> Shard(2, 4); NNSpecError otherwise."""
        k, slash, n = text.strip().partition("/")
        if slash and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n):
            return cls(int(k), int(n))
        raise NNSpecError(f"--shard: expected K/N with 1 <= K <= N, such as 1/4, found {text!r}")

    def select(self, paths: Sequence[Path], folder: str | Path) -> list[Path]:
        """This share of `paths` (files under `folder`), in their given order."""
        ordered = sorted(paths, key=lambda p: p.relative_to(folder).as_posix())
        mine = {p for i, p in enumerate(ordered) if i % self.count == self.index - 1}
        return [p for p in paths if p in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_spec(path: str | Path, **check_kwargs: Any) -> FolderResult:
    """Load and cross-check one spec; invalid input becomes a result with its exit code, not an exception.

    `check_kwargs` go to `nnspec.check` (rtol, atol, seed, provider, opset, ...). Bugs still raise.
    """
    from .render import text

    path = Path(path)
    try:
        report = check(load(path), **check_kwargs)
    except NNSpecError as exc:
        return FolderResult(path, exc.exit_code, error=str(exc), text=f"error: {exc}\n")
    return FolderResult(path, 0 if report.passed else 1, report=report.to_dict(), text=text(report))


def _check_guarded(path: Path, threads: int | None = None, **check_kwargs: Any) -> FolderResult:
    """check_spec (with at most `threads` threads), with a bug in nnspec recorded as this spec's result (exit 1)
    instead of raised."""
    try:
        with limited(threads):
            return check_spec(path, **check_kwargs)
    except Exception as exc:
        return FolderResult(
            path,
            1,
            error=f"internal error ({type(exc).__name__}: {exc}); a bug in nnspec, not in the spec",
            text=traceback.format_exc(),
        )


def _worker_died(path: Path) -> FolderResult:
    message = "the process checking this spec died (out of memory, or a crash in a native library)"
    return FolderResult(path, 1, error=message, text=f"error: {message}\n")


def check_folder(
    folder: str | Path,
    *,
    jobs: int | None = None,
    exclude: Sequence[str] = (),
    shard: Shard | None = None,
    **check_kwargs: Any,
) -> list[FolderResult]:
    """Cross-check every spec under `folder` (see find_specs), or its `shard`, each as `nnspec check` would, in
    path order."""
    specs = find_specs(folder, exclude).specs
    return check_paths(specs if shard is None else shard.select(specs, folder), jobs=jobs, **check_kwargs)


def check_paths(
    paths: Sequence[Path],
    *,
    jobs: int | None = None,
    threads: int | None = None,
    done: Callable[[int], None] | None = None,
    **check_kwargs: Any,
) -> list[FolderResult]:
    """Cross-check each spec file, as `nnspec check` would, in the given order.

    Specs are checked in `jobs` processes (default: one per CPU; 1 checks them in this process), each with
    `threads` threads for onnxruntime and BLAS (default: the cores shared out among the processes; see
    nnspec.threads). `done(1)` is called as each spec's check ends (for a progress bar). `check_kwargs` go to
    `nnspec.check`. An invalid spec, a bug, or a dying process affects only its own spec's result.
    """
    processes = min(jobs or cores(), len(paths))
    check = functools.partial(_check_guarded, threads=per_process(threads, processes), **check_kwargs)
    return _map_isolated(check, paths, processes, _worker_died, done)


def _map_isolated(
    fn: Callable[[T], R],
    items: Sequence[T],
    jobs: int | None,
    died: Callable[[T], R],
    done: Callable[[int], None] | None = None,
) -> list[R]:
    """[fn(x) for x in items] in `jobs` fresh processes; an item whose process dies gets died(x). `done(1)` is
    called as each item ends, in the order they end."""
    done = done or (lambda n: None)
    jobs = min(jobs or os.cpu_count() or 1, len(items))
    if jobs <= 1:
        ordered = []
        for x in items:
            ordered.append(fn(x))
            done(1)
        return ordered
    # NOTE: spawn, not fork: the caller may already run onnxruntime's thread pools, which do not survive a fork.
    spawn = multiprocessing.get_context("spawn")
    results: dict[int, R] = {}
    with ProcessPoolExecutor(jobs, mp_context=spawn) as pool:
        futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
        for future in as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except BrokenProcessPool:
                continue  # a process died: every unfinished item is retried alone below
            done(1)
    for i, x in enumerate(items):
        if i not in results:
            with ProcessPoolExecutor(1, mp_context=spawn) as alone:
                try:
                    results[i] = alone.submit(fn, x).result()
                except BrokenProcessPool:
                    results[i] = died(x)
            done(1)
    return [results[i] for i in range(len(items))]
