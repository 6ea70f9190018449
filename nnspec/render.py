"""Rendering a cross-check Report: a terminal table, JSON, and Markdown from a Jinja2 template."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
from rich.console import Console
from rich.table import Table

from .errors import NNSpecError
from .harness import OutputResult, Report


def fmt(x: float | None) -> str:
    """Errors in a short scientific form; exact agreement shows as 0."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}"


def where(at: dict[str, Any] | None) -> str:
    if not at:
        return "-"
    if "problem" in at:
        return f"{at['case']}: {at['problem']}"
    return f"{at['case']} [{','.join(map(str, at['index']))}]"


def table(report: Report) -> Table:
    t = Table(title=f"nnspec check: {report.model} ({report.reference} vs {report.candidate}, {report.dtype})")
    t.add_column("output", min_width=8)
    for column in ("abs err", "rel err", "err/tol", "failing"):
        t.add_column(column, justify="right", no_wrap=True)
    t.add_column("result", no_wrap=True)
    t.add_column("worst at", min_width=14)
    for o in report.outputs:
        t.add_row(
            o.name,
            fmt(o.max_abs_error),
            fmt(o.max_rel_error),
            fmt(o.worst_ratio),
            f"{o.mismatches}/{o.elements}",
            "[green]pass[/green]" if o.passed else "[bold red]FAIL[/bold red]",
            where(o.max_abs_at),
        )
    return t


def _worst_line(o: OutputResult, report: Report) -> str:
    allowed = report.tolerance.atol + report.tolerance.rtol * abs(o.reference_at_worst or 0.0)
    return (
        f"{o.name}: {o.mismatches} of {o.elements} elements differ; largest error {fmt(o.max_abs_error)} at "
        f"{where(o.max_abs_at)}; worst relative to its tolerance: {report.reference} {o.reference_at_worst!r} vs "
        f"{report.candidate} {o.candidate_at_worst!r} (allowed {fmt(allowed)})"
    )


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    for problem in report.problems:
        console.print(f"[bold red]problem:[/bold red] {problem}", highlight=False)
    if report.outputs:
        console.print(table(report))
    for o in report.outputs:
        if not o.passed:
            console.print(_worst_line(o, report), highlight=False)
    tol = report.tolerance
    verdict = "[green]PASS[/green]" if report.passed else "[bold red]FAIL[/bold red]"
    console.print(
        f"{verdict}: {len(report.outputs)} output(s) over {len(report.cases)} input batch(es) ({report.inputs}); "
        f"tolerance atol={fmt(tol.atol)} rtol={fmt(tol.rtol)} ({tol.reason})",
        highlight=False,
    )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)


def _json_safe(value: Any) -> Any:
    """JSON has no infinity or NaN: such numbers (an unbounded error ratio) are written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def to_json(report: Report) -> str:
    return json.dumps(_json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n"


def template_dir() -> Path:
    """Where the Jinja2 templates are: inside the installed package, or beside it in a source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "report.md.j2").is_file():
            return candidate
    raise NNSpecError("nnspec's templates are missing from this installation; reinstall nnspec")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.globals.update(fmt=fmt, where=where)
    return env


def markdown(report: Report) -> str:
    return environment().get_template("report.md.j2").render(report=report)
