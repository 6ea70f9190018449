"""Progress bars (rich) for work that can take more than a couple of seconds, shown only on a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def bar(console: Console, total: int, what: str) -> Iterator[Callable[[int], None]]:
    """`advance(n)` for `total` steps of `what`, drawn on `console` while the block runs (transient: the bar is
    gone when it ends). Where the console is not a terminal (a pipe, a CI log), nothing is drawn."""
    if not console.is_terminal or total <= 1:
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextmanager
def stages(console: Console, what: str) -> Iterator[Callable[[str], None]]:
    """`tell(stage)` names the stage of `what` under way, drawn on `console` with a spinner and the time elapsed
    while the block runs (transient); where the console is not a terminal, nothing is drawn."""
    if not console.is_terminal:
        yield lambda stage: None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=None)
        yield lambda stage: progress.update(task, description=f"{what}: {stage}")
