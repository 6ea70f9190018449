"""Rendering a cross-check Report: a terminal table, JSON, and Markdown from a Jinja2 template."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import jinja2
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from .errors import NNSpecError
from .harness import STEP_REFERENCE, OutputResult, Report


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


# The one name of the check's central quantity, in every rendering: the largest error divided by the error
# allowed there (the derived bound, or the flat tolerance); above 1 fails. JSON and Python call it worst_margin.
MARGIN = "err/allowed"

# Width of output that is not a terminal (a CI log, a pipe, a report text): wide enough that nothing wraps, so
# that a message stays on one line for grep and a table keeps its natural width (tables never stretch to it).
UNWRAPPED_WIDTH = 100_000


class OutputConsole(Console):
    """rich's Console, except that output to a pipe or file is not wrapped (unless COLUMNS says a width).

    On a terminal, text and tables fit the terminal's width, as rich does; COLUMNS overrides it.
    """

    @property
    def size(self) -> ConsoleDimensions:
        if self.is_terminal or self._width is not None or os.environ.get("COLUMNS", "").isdigit():
            return super().size
        return ConsoleDimensions(UNWRAPPED_WIDTH, super().size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def heading(self, text: str) -> None:
        """A rule with `text` on a terminal; a plain line elsewhere (a rule would be UNWRAPPED_WIDTH long)."""
        if self.size.width == UNWRAPPED_WIDTH:
            self.print(f"--- {text} ---", markup=False, highlight=False)
        else:
            self.rule(escape(text))


def _table(title: str, results: list[OutputResult], runners: bool = False) -> Table:
    t = Table(title=title)
    t.add_column("output", min_width=8)
    if runners:
        t.add_column("runner", no_wrap=True)
    for column in ("abs err", "ulps", MARGIN, "failing"):
        t.add_column(column, justify="right", no_wrap=True)
    t.add_column("result", no_wrap=True)
    t.add_column("worst at", min_width=12)
    for o in results:
        t.add_row(
            escape(o.name),
            *([o.candidate] if runners else []),
            fmt(o.max_abs_error),
            fmt(o.max_ulps),
            fmt(o.worst_margin),
            f"{o.mismatches}/{o.elements}",
            "[green]pass[/green]" if o.passed else "[bold red]FAIL[/bold red]",
            escape(where(o.worst_at)),
        )
    return t


def table(report: Report) -> Table:
    """The terminal table: a row per output (and per candidate runner, with a runner column when several)."""
    several = len({o.candidate for o in report.outputs}) > 1
    return _table(
        f"nnspec check: {report.model} ({report.candidate} vs {report.reference}, {report.dtype})",
        report.outputs,
        runners=several,
    )


def tolerance_line(report: Report) -> str:
    tol = report.tolerance
    if tol.mode == "derived":
        return "tolerance: derived, each element within the sum of both sides' rounding-error bounds"
    return f"tolerance: atol={fmt(tol.atol)} rtol={fmt(tol.rtol)} ({tol.reason})"


def verdict_lines(report: Report) -> list[str]:
    """Plain-text explanations: what failed, where, which side the oracle blames, where it started."""
    lines = [f"the file differs from the spec's export: {d['message']}" for d in report.differences]
    if report.differences and not report.exact_file:
        lines.append(
            "(the file against the spec's export is a verdict of its own; the check's comes from running the model; "
            "--exact-file makes any difference fail)"
        )
    for o in report.outputs:
        if not o.passed:
            lines.append(
                f"{o.name}: {o.mismatches} of {o.elements} elements differ beyond the allowed error; worst at "
                f"{where(o.worst_at)}: {report.reference} {o.reference_at_worst!r} vs {report.candidate} "
                f"{o.candidate_at_worst!r} (allowed {fmt(o.allowed_at_worst)}, {fmt(o.worst_margin)}x)"
            )
    if report.oracle and not report.passed:
        blamed = sorted({o.candidate for o in report.oracle if not o.passed})
        if blamed:
            lines.append(f"against the float64 oracle, outside its bound: {', '.join(blamed)}")
        else:
            lines.append("against the float64 oracle, both sides are within their bounds")
    failed_steps = [s for s in report.steps if not s.passed]
    for s in failed_steps:
        lines.append(
            f"layer {s.name!r} ({s.candidate}) does not compute its own step: {s.mismatches} of {s.elements} "
            f"elements differ from the layer recomputed on the inputs {s.candidate} fed it, beyond that layer's "
            f"bound; worst at {where(s.worst_at)}: {s.candidate_at_worst!r} vs {s.reference_at_worst!r} "
            f"(allowed {fmt(s.allowed_at_worst)}, {fmt(s.worst_margin)}x)"
        )
    if report.steps and not failed_steps:
        worst = max(report.steps, key=lambda s: s.worst_margin)
        closest = f"the closest {worst.name!r} at {fmt(worst.worst_margin)}x" if worst.worst_margin else "all exact"
        lines.append(
            f"layer by layer (each recomputed from the inputs the model fed it): {len(report.steps)} steps within "
            f"their bounds, {closest}"
        )
    for w in report.weights:
        if not w.passed and w.worst is not None:
            lines.append(
                f"layer {w.layer!r} ({w.candidate}) applies parameters other than the spec's: {w.flagged} found "
                f"changed (z > {w.threshold:.3g} over {w.rows} rows); {w.worst.describe()}"
            )
    if report.weights and all(w.passed for w in report.weights):
        tested = sum(w.tested for w in report.weights)
        blind = sum(w.blind for w in report.weights)
        reach = f", {blind} beyond the reach of the rows" if blind else ""
        lines.append(
            f"parameters: {tested:,} weights and biases of {len({w.layer for w in report.weights})} layer(s) tested "
            f"against the spec's, none found changed{reach}"
        )
    if report.divergence and report.divergence.get("parameters") is not None:
        d = report.divergence
        lines.append(
            f"first divergence: layer {d['layer']!r} ({d['path']}, {d['type']}): within every bound, but "
            f"{d['mismatches']} of its {d['elements']:,} parameters {'is' if d['mismatches'] == 1 else 'are'} not the "
            f"spec's; {d['parameters']}"
        )
    elif report.divergence:
        d = report.divergence
        how = " (from its own inputs)" if d.get("from_own_inputs") else ""
        lines.append(
            f"first divergence: layer {d['layer']!r} ({d['path']}, {d['type']}){how}, {d['mismatches']} of "
            f"{d['elements']} elements on {d['case']}, worst {fmt(d['worst_margin'])}x its bound"
        )
    for layer, count in report.ambiguous.items():
        if count:
            lines.append(f"{layer}: {count} step output(s) within rounding of the step, where either value is correct")
    return lines


def print_report(report: Report, console: Console | None = None) -> None:
    """The report for people: problems, the table, what failed and where, the verdict, notes."""
    console = console or OutputConsole()
    for problem in report.problems:
        console.print(f"[bold red]problem:[/bold red] {escape(problem)}", highlight=False)
    if report.outputs:
        console.print(table(report))
    for line in verdict_lines(report):
        console.print(line, highlight=False, markup=False)
    verdict = "[green]PASS[/green]" if report.passed else "[bold red]FAIL[/bold red]"
    outputs = len(dict.fromkeys(o.name for o in report.outputs))
    runners = len(dict.fromkeys(o.candidate for o in report.outputs))
    by = f" by {runners} runners" if runners > 1 else ""
    console.print(
        f"{verdict}: {outputs} output(s){by} over {len(report.cases)} input batch(es) ({escape(report.inputs)}); "
        f"{escape(tolerance_line(report))}",
        highlight=False,
    )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def text(report: Report) -> str:
    """The report as `print_report` shows it, as plain text (no colour, no wrapping)."""
    buffer = io.StringIO()
    print_report(report, OutputConsole(file=buffer, force_terminal=False, highlight=False))
    return buffer.getvalue()


def json_safe(value: Any) -> Any:
    """JSON has no infinity or NaN: such numbers (an unbounded error ratio) are written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_json(report: Report) -> str:
    return json.dumps(json_safe(report.to_dict()), indent=2, allow_nan=False) + "\n"


def template_dir() -> Path:
    """Where the Jinja2 templates are: inside the installed package, or beside it in a source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "report.md.j2").is_file():
            return candidate
    raise NNSpecError("nnspec's templates are missing from this installation; reinstall nnspec")


def templates(*, autoescape: bool = False, trim: bool = False, trailing_newline: bool = True) -> jinja2.Environment:
    """nnspec's templates, an undefined name an error: `autoescape` for XML (the user's names and text go into it),
    `trim` for templates of source code (a block tag's line leaves no blank line)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        keep_trailing_newline=trailing_newline,
        trim_blocks=trim,
        lstrip_blocks=trim,
    )


def environment() -> jinja2.Environment:
    """The reports' templates (Markdown, HTML), with the helpers they use."""
    env = templates()
    env.globals.update(
        margin_name=MARGIN, fmt=fmt, where=where, tolerance_line=tolerance_line, verdict_lines=verdict_lines
    )
    return env


def markdown(report: Report) -> str:
    return environment().get_template("report.md.j2").render(report=report)


def junit(report: Report) -> str:
    """JUnit XML for one report."""
    return junit_suites([(report.model, report.to_dict())])


def junit_suites(items: list[tuple[str, dict[str, Any] | str | None]]) -> str:
    """JUnit XML, a test suite per spec: a test case per output and candidate runner and per layer step,
    a failing case for interface problems, and an error case for a spec that could not be checked."""
    from xml.etree import ElementTree as ET

    root = ET.Element("testsuites")
    for name, data in items:
        suite = ET.SubElement(root, "testsuite", name=name)
        cases = failures = errors = 0
        if not isinstance(data, dict):
            case = ET.SubElement(suite, "testcase", classname=name, name="spec")
            ET.SubElement(case, "error", message=str(data or "could not be checked")).text = str(data or "")
            cases = errors = 1
        else:
            if data["problems"]:
                case = ET.SubElement(suite, "testcase", classname=name, name="model interface")
                ET.SubElement(case, "failure", message=data["problems"][0]).text = "\n".join(data["problems"])
                cases, failures = 1, 1
            if data.get("compared_with_export"):
                case = ET.SubElement(suite, "testcase", classname=name, name="file vs the spec's export")
                cases += 1
                if data["differences"] and data.get("exact_file"):
                    failures += 1
                    messages = [d["message"] for d in data["differences"]]
                    ET.SubElement(case, "failure", message=messages[0]).text = "\n".join(messages)
                elif data["differences"]:
                    ET.SubElement(case, "system-out").text = "\n".join(d["message"] for d in data["differences"])
            for o in [*data["outputs"], *data.get("steps", [])]:
                label = f"{o['name']} [{o['candidate']} vs {o['reference']}]"
                if o["reference"] == STEP_REFERENCE:
                    label = f"layer {o['name']} step [{o['candidate']}]"
                case = ET.SubElement(suite, "testcase", classname=name, name=label)
                cases += 1
                margin = o["worst_margin"]
                summary = (
                    f"max abs error {fmt(o['max_abs_error'])}, max ulps {fmt(o['max_ulps'])}, "
                    f"worst {MARGIN} {fmt(margin)} at {where(o['worst_at'])}"
                )
                if not o["passed"]:
                    failures += 1
                    message = f"{o['mismatches']} of {o['elements']} elements beyond the allowed error; {summary}"
                    ET.SubElement(case, "failure", message=message).text = message
                ET.SubElement(case, "system-out").text = summary
            for w in data.get("weights", []):
                case = ET.SubElement(
                    suite, "testcase", classname=name, name=f"layer {w['layer']} parameters [{w['candidate']}]"
                )
                cases += 1
                summary = f"{w['tested']} parameters tested over {w['rows']} rows, largest z {w['max_abs_z']:.3g} (threshold {w['threshold']:.3g})"
                if w["flagged"]:
                    failures += 1
                    worst = w["worst"]
                    entry = f"{worst['param']}[{', '.join(map(str, worst['index']))}]" if worst else ""
                    message = (
                        f"{w['flagged']} parameter(s) found changed; worst {entry}: the model applies {worst['applied']:.8g}, the spec says {worst['spec']:.8g}"
                        if worst
                        else summary
                    )
                    ET.SubElement(case, "failure", message=message).text = message
                ET.SubElement(case, "system-out").text = summary
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def html(report: Report) -> str:
    """A self-contained HTML page (no external files) with an error histogram per output."""
    from .harness import HISTOGRAM_BINS

    env = environment()
    env.autoescape = True
    return env.get_template("report.html.j2").render(report=report, bins=HISTOGRAM_BINS)
