"""How many threads nnspec's numeric work uses: onnxruntime's intra-op pool and NumPy's BLAS.

By default both libraries use their own defaults (onnxruntime: one thread per physical core; OpenBLAS: one per
core, or `OPENBLAS_NUM_THREADS`). `limited(n)` caps both for the work done inside it: BLAS through threadpoolctl
(process-wide while it lasts), onnxruntime for the sessions made inside it (`session_threads`). A folder check in J
processes gives each max(1, cores // J) unless told otherwise (`per_process`): J processes each running a pool as
wide as the machine fight over the cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_session_threads = 0  # 0: onnxruntime's default


def session_threads() -> int:
    """The intra-op thread count for onnxruntime sessions made now; 0 for onnxruntime's default."""
    return _session_threads


@contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """At most `threads` threads for BLAS and for the onnxruntime sessions made inside; None: the defaults."""
    global _session_threads
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = _session_threads
    _session_threads = threads
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        _session_threads = before


def cores() -> int:
    """The CPUs this process may run on (its affinity where the OS says, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def per_process(threads: int | None, processes: int) -> int | None:
    """The threads each of `processes` worker processes uses: `threads` if given, else the cores shared out
    (None, the libraries' defaults, for one process)."""
    if threads is not None:
        return threads
    return None if processes <= 1 else max(1, cores() // processes)
