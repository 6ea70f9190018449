"""The `nnspec` command line: a thin layer over the Python API. Exit codes: 0 ok, 1 disagreement, 2 bad input."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import typer
from rich.markup import escape
from typer.core import TyperCommand

from . import api
from ._version import __version__
from .errors import NNSpecError, suggest
from .files import atomic_write, json_text, load_arrays, save_arrays
from .harness import tolerance_value
from .limits import human_bytes
from .render import MARGIN, OutputConsole
from .runners import PROVIDERS, RUNNERS

if TYPE_CHECKING:
    from .batch import FolderResult, Shard
    from .ir import Graph


class Command(TyperCommand):
    """Help that reads like other command-line tools': `nnspec check [OPTIONS] SPEC`, arguments by their
    metavar, and the global `--limit` (which may follow the command) listed with each command's options."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [p.metavar or p.name.upper() for p in self.get_params(ctx) if p.param_type_name == "argument"]  # type: ignore[union-attr]

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [(p.metavar or p.name.upper(), p.help or "") for p in params if p.param_type_name == "argument"]  # type: ignore[union-attr, attr-defined]
        options = [r for p in params if p.param_type_name == "option" and (r := p.get_help_record(ctx))]
        options.insert(len(options) - 1, (LIMIT_FLAG, LIMIT_HELP))  # before --help
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        with formatter.section("Options"):
            formatter.write_dl(options)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help text, as other command-line tools print it
    pretty_exceptions_show_locals=False,
    help="Write a network down once as data, compile it to ONNX, and prove both forms compute the same thing.",
    epilog="Exit codes: 0 ok, 1 the model disagrees with its spec, 2 invalid input. Output to a pipe or a file "
    "(a CI log) is not wrapped; set COLUMNS to wrap it at that width.",
)
command = functools.partial(app.command, cls=Command)
out = OutputConsole(highlight=False)
err = OutputConsole(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

LIMIT_FLAG = "--limit NAME=VALUE"
LIMIT_HELP = "Set a resource limit for this command, e.g. --limit max-spec-bytes=512MiB (repeatable; `nnspec limits` lists them)."
BACKENDS = ("numpy", "onnxruntime")


def choice(option: str, choices: Sequence[str]) -> Callable[[str], str]:
    """A parser for an option that takes one of `choices`: a plain message naming them otherwise."""

    def parse(value: str) -> str:
        if value not in choices:
            raise typer.BadParameter(f"expected one of {', '.join(choices)}; found {value!r}{suggest(value, choices)}")
        return value

    return parse


def integer(minimum: int | None = None) -> Callable[[str], int]:
    """A parser for an integer option, at least `minimum` when given."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise typer.BadParameter(f"expected an integer, found {value!r}") from None
        if minimum is not None and number < minimum:
            raise typer.BadParameter(f"expected an integer >= {minimum}, found {number}")
        return number

    return parse


def tolerance(name: str) -> Callable[[str], float]:
    """A parser for --rtol/--atol: a finite number >= 0, as every way into a tolerance requires."""

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise typer.BadParameter(f"expected a finite number >= 0, found {value!r}") from None
        try:
            return tolerance_value(number, name)
        except NNSpecError as exc:
            raise typer.BadParameter(exc.message.removeprefix(f"{name}: ")) from None

    return parse


def reports_errors(command: F) -> F:
    """Turn nnspec's errors into one message on stderr and their exit code; tracebacks are for bugs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NNSpecError as exc:
            # The message quotes the user's own text (names, keys, values): never read it as markup.
            err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except MemoryError:
            # The limits are meant to refuse such input from its declared sizes; say which ones to lower.
            err.print(
                "[bold red]error:[/bold red] out of memory: this input needs more memory than the machine has; lower "
                "the resource limits (`nnspec limits`) so that it is refused before it is read",
                markup=True,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"nnspec {__version__}")
        raise typer.Exit()


# Limits set with --limit in this process, so that `nnspec limits` can say where a value came from.
_set_on_command_line: set[str] = set()


def _apply_limits(ctx: typer.Context, items: list[str]) -> None:
    """`--limit max-spec-bytes=512MiB`: set for this command (and the worker processes it starts) via the
    environment variable each limit is read from; restored when the command ends."""
    from .errors import unknown
    from .limits import Limits, env_var, parse_value

    names = Limits.names()
    saved = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name = key.strip().lower().replace("-", "_")
        if not sep or name not in names:
            if not sep:
                raise NNSpecError(f"--limit: expected NAME=VALUE such as max-spec-bytes=512MiB, found {item!r}")
            raise NNSpecError(f"--limit: {unknown('limit', key.strip(), [n.replace('_', '-') for n in names])}")
        value = parse_value(name, raw, f"--limit {item}")
        saved.setdefault(name, os.environ.get(env_var(name)))
        os.environ[env_var(name)] = str(value)
        _set_on_command_line.add(name)

    def restore() -> None:
        for name, before in saved.items():
            _set_on_command_line.discard(name)
            if before is None:
                os.environ.pop(env_var(name), None)
            else:
                os.environ[env_var(name)] = before

    ctx.call_on_close(restore)


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("-V", "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    limit: Annotated[list[str] | None, typer.Option("--limit", metavar="NAME=VALUE", help=LIMIT_HELP)] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            metavar="N",
            parser=integer(minimum=1),
            help="Threads for onnxruntime and NumPy's BLAS (default: theirs, one per core; in a folder check, "
            "the cores shared out among the --jobs processes).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a network down once as data, compile it to ONNX, and prove both forms compute the same thing."""
    if limit:
        reports_errors(_apply_limits)(ctx, limit)
    if threads is not None:
        from .threads import limited

        global _threads
        _threads = threads
        ctx.with_resource(limited(threads))
        ctx.call_on_close(_forget_threads)


# --threads as given, for the worker processes of a folder check (this process applies it in main_options).
_threads: int | None = None


def _forget_threads() -> None:
    global _threads
    _threads = None


SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="The spec file (JSON, format nnspec/1).", show_default=False)
]
OpsetOpt = Annotated[int, typer.Option("--opset", metavar="N", parser=integer(), help="ONNX opset to target.")]
ProviderOpt = Annotated[
    str,
    typer.Option(
        "--provider",
        metavar="[cpu|cuda]",
        parser=choice("--provider", PROVIDERS),
        help="onnxruntime's execution provider (cuda needs onnxruntime-gpu and a GPU).",
    ),
]
STDOUT = "-"  # a report option's file name that means standard output


@command(short_help="Check a spec completely, writing nothing.")
@reports_errors
def validate(spec: SpecArg) -> None:
    """Check a spec completely (structure, names, shapes, weights) without writing anything.

    Exit 0 when valid, 2 when not.
    """
    s = api.load(spec)
    g = api.graph(s)
    out.print(
        f"ok: {spec} is a valid {s.format} spec: model {g.name!r}, {len(g.inputs)} input(s), {len(g.nodes)} layer(s), "
        f"{g.parameter_count} parameters, outputs: {', '.join(o.name for o in g.outputs)}"
    )


@command(short_help="Summarize a spec for review, layer by layer.")
@reports_errors
def show(
    spec: SpecArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarize a spec for review: each layer as a = f(W p + b), and where its numbers come from.

    Per layer: what it computes, its output shape, each parameter's origin (inline, file, initializer) and range.

    Then the totals, and the network's sha256, which compiled models carry as nnspec.spec_sha256.
    """
    from rich.table import Table

    from .summary import summarize

    s = api.load(spec)
    info = summarize(s, api.graph(s))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return

    def dims(shape: list[Any]) -> str:
        return f"[{', '.join(map(str, shape))}]"

    inputs = ", ".join(f"{i['name']} {dims(i['shape'])}" for i in info["inputs"])
    out.print(f"[bold]{escape(info['model'])}[/bold] ({info['format']}, {info['dtype']}); inputs: {escape(inputs)}")
    if info["description"]:
        out.print(escape(info["description"]))
    table = Table()
    for column in ("#", "layer", "computes", "output", "params", "mult-adds"):
        right = column in ("#", "params", "mult-adds")
        table.add_column(column, no_wrap=column != "computes", justify="right" if right else "left")
    table.add_column("numbers from (range)")
    for layer in info["layers"]:
        numbers = "\n".join(
            f"{key} {dims(p['shape'])}: {p['source']}"
            + (f" ({p['min']:.3g} .. {p['max']:.3g})" if p["min"] is not None else "")
            for key, p in layer["params"].items()
        )
        table.add_row(
            str(layer["index"]),
            escape(layer["name"]),
            escape(layer["computes"]),
            dims(layer["shape"]),
            f"{layer['parameters']:,}" if layer["parameters"] else "-",
            f"{layer['multiply_adds']:,}" if layer["multiply_adds"] else "-",
            escape(numbers) or "-",
        )
    out.print(table)
    out.print(
        f"{info['parameters']:,} parameters ({human_bytes(info['weight_bytes'])} as {info['dtype']}); "
        f"{info['multiply_adds']:,} multiply-adds per sample; outputs: {escape(', '.join(info['outputs']))}"
    )
    out.print(f"sha256 {info['sha256']} (written into compiled models as nnspec.spec_sha256)")


@command("compile", short_help="Cross-check a spec, then write its ONNX model (or a NumPy module).")
@reports_errors
def compile_(
    spec: SpecArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="Where to write the model (default: <name>.onnx; with --emit numpy, <name>.py).",
        ),
    ] = None,
    opset: OpsetOpt = api.DEFAULT_OPSET,
    no_check: Annotated[bool, typer.Option("--no-check", help="Skip the cross-check before writing.")] = False,
    external_data: Annotated[
        bool,
        typer.Option(
            "--external-data",
            help="Write the weights to one data file beside the model (<OUT>.data); automatic above 2 GiB.",
        ),
    ] = False,
    emit: Annotated[
        str,
        typer.Option(
            "--emit",
            metavar="[onnx|numpy]",
            parser=choice("--emit", ("onnx", "numpy")),
            help="onnx: an ONNX model; numpy: a standalone Python module that needs NumPy alone, its arrays in "
            "<OUT>.npz beside it.",
        ),
    ] = "onnx",
) -> None:
    """Compile a spec to ONNX (or, with --emit numpy, to a Python module); unless --no-check, first prove the
    result agrees with the NumPy evaluator.

    Exit 1, writing nothing, when the check fails.
    """
    s = api.load(spec)
    g = api.graph(s)
    if emit == "numpy":
        _compile_numpy(spec, g, output, no_check=no_check, external_data=external_data)
        return
    if not no_check:
        api.check_opset(opset)
    exported = api.export(s, opset)
    target = output if output is not None else Path(f"{g.name}.onnx")
    summary = ""
    if not no_check:
        from .progress import stages

        with stages(err, "checking") as tell:
            report = api.check(s, onnx_model=exported, tell=tell)
        if not report.passed:
            from .render import print_report

            print_report(report, err)
            err.print(
                f"[bold red]not written:[/bold red] {target} (the ONNX model disagrees with the spec)", markup=True
            )
            raise typer.Exit(1)
        worst = max((o.max_abs_error for o in report.outputs), default=0.0)
        summary = f"; cross-check passed on {len(report.cases)} batches (max abs error {worst:.3g})"
    if target.is_dir():
        raise NNSpecError(f"{target} is a folder; give a file name such as {target / (g.name + '.onnx')}")
    if not target.parent.is_dir() and str(target.parent):
        raise NNSpecError(f"folder {target.parent} does not exist")
    from .progress import bar

    total = exported.size()
    # A bar where writing takes a while: about a second per GB at page-cache speed, longer on a slow disk.
    with bar(err, total if total >= PROGRESS_BYTES else 0, f"writing {target.name}") as done:
        written = api.write_onnx(exported, target, external_data=external_data or None, written=done)
    files = " and ".join(str(path) for path in reversed(written))
    size = human_bytes(sum(path.stat().st_size for path in written))
    out.print(f"wrote {files} (opset {opset}, {g.parameter_count} parameters, {size}){summary}")
    stale = api.external_data_file(target)
    if stale not in written and stale.exists():  # left by an earlier compile with external data: not removed
        err.print(f"note: {stale} is not used by the new {target.name} (it holds its weights); delete it")


def _compile_numpy(spec: Path, g: Graph, output: Path | None, *, no_check: bool, external_data: bool) -> None:
    """`compile --emit numpy`: the module and its .npz, written after the generated module passes the check."""
    from .emit import compile_numpy

    if external_data:
        raise NNSpecError("--external-data is for --emit onnx; a NumPy module's arrays are always in its .npz")
    target = output if output is not None else Path(f"{g.name}.py")
    command = f"nnspec compile {spec} --emit numpy -o {target}"
    report, written = compile_numpy(g, target, command=command, check=not no_check)
    if report is not None and not report.passed:
        from .render import print_report

        print_report(report, err)
        err.print(
            f"[bold red]not written:[/bold red] {target} (the generated module disagrees with the spec)", markup=True
        )
        raise typer.Exit(1)
    summary = ""
    if report is not None:
        worst = max((o.max_abs_error for o in report.outputs), default=0.0)
        summary = f"; cross-check passed on {len(report.cases)} batches (max abs error {worst:.3g})"
    size = human_bytes(sum(path.stat().st_size for path in written))
    out.print(f"wrote {written[1]} and {written[0]} ({g.parameter_count} parameters, {size}){summary}", markup=False)


@command("import", short_help="Lift an ONNX model into a reviewable spec and its weights.")
@reports_errors
def import_(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="The ONNX model file (.onnx).", show_default=False)],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="The spec to write (.json); its weights go beside it in one .npz of the same stem.",
            show_default=False,
        ),
    ],
    outputs: Annotated[
        list[str] | None,
        typer.Option(
            "--outputs",
            metavar="NAME",
            help="Import only what computes this graph output (repeatable; default: every output).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="The spec's name (default: the model's graph name).", show_default=False
        ),
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Skip the cross-check of the imported spec against the model.")
    ] = False,
) -> None:
    """Lift an ONNX model into a spec: every layer as data, every weight bit for bit in SPEC's .npz.

    Unless --no-check, the imported spec is then checked against the very file it came from. Exit 0 when
    written; 1, writing nothing, when the check fails; 2, writing nothing, for a model that cannot be lifted
    (every node the format has no layer for is listed).
    """
    done = api.import_onnx(model, output, outputs=outputs, name=name, check_model=not no_check)
    if done.spec is None:
        from .render import print_report

        assert done.report is not None
        print_report(done.report, err)
        err.print(
            f"[bold red]not written:[/bold red] {output} (the imported spec disagrees with {model.name})", markup=True
        )
        raise typer.Exit(1)
    g = api.graph(done.spec)
    summary = f"; checked against {model.name}: PASS on {len(done.report.cases)} batches" if done.report else ""
    out.print(
        f"wrote {output} and {output.with_suffix('.npz').name} ({len(g.nodes)} layers, {g.parameter_count:,} "
        f"parameters){summary}",
        markup=False,
    )
    for note in done.notes:
        out.print(f"  {note}", markup=False)


@command(short_help="Run a spec's model on arrays from a file.")
@reports_errors
def run(
    spec: SpecArg,
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            metavar="PATH",
            help=".npy or .csv (a single-input model), .npz or .json keyed by input name.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help=".npy (one output), .npz or .json keyed by output name, or .csv (a row per sample); default: print.",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", metavar="[numpy|onnxruntime]", parser=choice("--backend", BACKENDS), help="Which form to run."
        ),
    ] = "numpy",
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            metavar="[cpu|cuda]",
            parser=choice("--provider", PROVIDERS),
            help="onnxruntime's execution provider, with --backend onnxruntime (default: cpu).",
            show_default=False,
        ),
    ] = None,
    opset: OpsetOpt = api.DEFAULT_OPSET,
) -> None:
    """Run a spec's model on arrays from a file and print or save its outputs."""
    from .feeds import check_feeds
    from .files import OUTPUT_SUFFIXES

    if provider is not None and backend != "onnxruntime":
        raise NNSpecError(
            f"--provider {provider} applies to --backend onnxruntime; the {backend} backend runs on the CPU"
        )
    s = api.load(spec)
    g = api.graph(s)
    if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise NNSpecError(f"expected an output file ending in {', '.join(OUTPUT_SUFFIXES)}, found {output.name!r}")
    feeds = check_feeds(g, load_arrays(input, g.inputs))
    if backend == "numpy":
        results = api.to_numpy(s).run(feeds)
    else:
        from .runners import OnnxRuntimeRunner

        api.check_opset(opset)
        results = OnnxRuntimeRunner(api.export(s, opset).data(), provider or "cpu").run(feeds)
    if output is not None:
        save_arrays(output, results)
        out.print(f"wrote {output} ({', '.join(f'{k} {list(v.shape)}' for k, v in results.items())})", markup=False)
        return
    for name, value in results.items():  # every number: a run's output is data, not a preview
        out.print(f"{name} = {np.array2string(value, threshold=value.size + 1)}", markup=False)


SpecOrFolderArg = Annotated[
    Path,
    typer.Argument(
        metavar="SPEC",
        help="The spec file, or a folder: every spec (*.json) in it and below it.",
        show_default=False,
    ),
]


def _report_option(flag: str, what: str) -> Any:
    return typer.Option(flag, metavar="PATH", help=f"Also write the report as {what} ('-': to stdout, no table).")


@command(short_help="Prove that the ONNX form computes the spec.")
@reports_errors
def check(
    spec: SpecOrFolderArg,
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", metavar="PATH", help="Check this existing ONNX file instead of a fresh export."),
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs",
            metavar="PATH",
            help="Inputs to use (.npy, .npz, .csv or .json) instead of seeded random batches.",
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            "--rtol",
            metavar="R",
            parser=tolerance("--rtol"),
            help="Relative tolerance, replacing the derived bound: |a - b| <= atol + rtol |b|.",
        ),
    ] = None,
    atol: Annotated[
        float | None,
        typer.Option("--atol", metavar="A", parser=tolerance("--atol"), help="Absolute tolerance (see --rtol)."),
    ] = None,
    json_path: Annotated[Path | None, _report_option("--json", "JSON")] = None,
    markdown: Annotated[Path | None, _report_option("--markdown", "Markdown (for CI job summaries)")] = None,
    junit: Annotated[
        Path | None, _report_option("--junit", "JUnit XML (a test case per output, runner and layer step)")
    ] = None,
    html: Annotated[Path | None, _report_option("--html", "a self-contained HTML page with error histograms")] = None,
    repro: Annotated[
        Path | None,
        typer.Option(
            "--repro",
            metavar="DIR",
            help="On failure, write a minimal reproduction of the first diverging layer here.",
        ),
    ] = None,
    runner: Annotated[
        list[str] | None,
        typer.Option(
            "--runner",
            metavar="[onnxruntime|onnx-reference]",
            parser=choice("--runner", RUNNERS),
            help="Candidate runner (default: onnxruntime); repeatable.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", parser=integer(), help="Seed of the random input batches.")
    ] = 0,
    provider: ProviderOpt = "cpu",
    opset: OpsetOpt = api.DEFAULT_OPSET,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            metavar="N",
            parser=integer(minimum=1),
            help="A folder's specs are checked in this many processes (default: one per CPU).",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="GLOB",
            help="In a folder, leave out files whose path (relative to it) or name matches, e.g. 'inputs/*'; "
            "repeatable.",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="In a folder, check only the K-th of N disjoint shares of its specs (for a CI matrix of N jobs; "
            "K from 1).",
            show_default=False,
        ),
    ] = None,
    exact_file: Annotated[
        bool,
        typer.Option(
            "--exact-file",
            help="With --onnx, for a model nnspec compiled: also fail when the file differs in any bit from a "
            "fresh export of the spec (always reported).",
        ),
    ] = False,
) -> None:
    """Prove that the ONNX form computes what the spec says: run both on the same inputs, compare every output.

    Exit 0 when they agree, 1 when they do not, 2 on invalid input.

    A folder: check every spec in it and below it (JSON without a "format" or "layers" key, such as input
    files, is skipped and listed); exit 1 if any disagrees, else 2 if any is invalid, else 0.
    """
    from . import render

    reports = {"--json": json_path, "--markdown": markdown, "--junit": junit, "--html": html}
    to_stdout = [flag for flag, path in reports.items() if path is not None and str(path) == STDOUT]
    if len(to_stdout) > 1:
        raise NNSpecError(f"only one report can go to stdout ('-'), found {' and '.join(to_stdout)}")
    runners = tuple(runner or ("onnxruntime",))
    if spec.is_dir():
        one_spec = (
            ("--onnx", onnx),
            ("--inputs", inputs),
            ("--markdown", markdown),
            ("--html", html),
            ("--repro", repro),
            ("--exact-file", True if exact_file else None),
        )
        for flag, value in one_spec:
            if value is not None:
                raise NNSpecError(f"{flag} applies to one spec, but {spec} is a folder; check that spec alone")
        api.check_opset(opset)
        from . import batch

        code = _check_folder(
            spec,
            jobs,
            json_path,
            junit,
            exclude or [],
            None if shard is None else batch.Shard.parse(shard),
            rtol=rtol,
            atol=atol,
            seed=seed,
            provider=provider,
            opset=opset,
            runners=runners,
        )
        raise typer.Exit(code)
    for flag, value in (("--exclude", exclude), ("--shard", shard)):
        if value:
            raise NNSpecError(f"{flag} applies to a folder, but {spec} is a file")
    if exact_file and onnx is None:
        raise NNSpecError("--exact-file compares a given model file (--onnx) with the spec's export")
    s = api.load(spec)
    g = api.graph(s)
    feeds = load_arrays(inputs, g.inputs) if inputs is not None else None
    from .progress import stages

    with stages(err, f"checking {spec.name}") as tell:
        report = api.check(
            s,
            onnx_model=onnx,
            inputs=feeds,
            rtol=rtol,
            atol=atol,
            seed=seed,
            provider=provider,
            opset=opset,
            repro=repro,
            runners=runners,
            exact_file=exact_file,
            tell=tell,
        )
    writers: dict[str, Callable[[], str]] = {
        "--json": lambda: render.to_json(report),
        "--markdown": lambda: render.markdown(report),
        "--junit": lambda: render.junit_suites([(str(spec), report.to_dict())]),
        "--html": lambda: render.html(report),
    }
    if not to_stdout:
        render.print_report(report, out)
    for flag, path in reports.items():
        if path is not None:
            _write_report(path, writers[flag])
    raise typer.Exit(0 if report.passed else 1)


def _write_report(path: Path, render: Callable[[], str]) -> None:
    """A report to its file (atomically), or to stdout for '-'."""
    if str(path) == STDOUT:
        sys.stdout.write(render())
        sys.stdout.flush()
    else:
        atomic_write(path, render().encode())


def _check_folder(
    folder: Path,
    jobs: int | None,
    json_path: Path | None,
    junit: Path | None,
    exclude: list[str],
    shard: Shard | None,
    **check_kwargs: Any,
) -> int:
    """`nnspec check DIR`: check every spec (or a shard's), print one summary table (or a report to stdout),
    return the exit code."""
    from .batch import check_paths, exit_code, find_specs, to_json
    from .render import junit_suites

    found = find_specs(folder, exclude)
    specs = found.specs if shard is None else shard.select(found.specs, folder)
    from .progress import bar

    with bar(err, len(specs), "checking specs") as done:
        results = check_paths(specs, jobs=jobs, threads=_threads, done=done, **check_kwargs)
    on_stdout = any(p is not None and str(p) == STDOUT for p in (json_path, junit))
    if not on_stdout:
        if results:
            share = "" if shard is None else f"shard {shard}: {len(specs)} of {len(found.specs)} specs"
            _print_folder(folder, results, share)
        else:  # more shards than specs: this one has nothing to check, which is no failure
            out.print(f"shard {shard} of {folder}: no specs (the folder has {len(found.specs)})", markup=False)
    left_out = (
        (found.skipped, 'JSON file(s) that are not specs (no "format" or "layers" key)'),
        (found.excluded, "file(s) matching --exclude"),
    )
    for paths, why in left_out:
        if paths:
            names = ", ".join(p.relative_to(folder).as_posix() for p in paths)
            (err if on_stdout else out).print(f"skipped {len(paths)} {why}: {names}", markup=False, highlight=False)
    if junit is not None:
        suites = [
            (r.path.relative_to(folder).as_posix(), r.report if r.report is not None else r.error) for r in results
        ]
        _write_report(junit, lambda: junit_suites(suites))
    if json_path is not None:
        _write_report(json_path, lambda: to_json(results))
    return exit_code(results)


def _folder_verdict(result: FolderResult) -> str:
    if result.passed:
        return "pass"
    if result.exit_code == 2:
        return "invalid"
    return "FAIL" if result.report is not None else "error"  # error: nnspec crashed on this spec


def _print_folder(folder: Path, results: list[FolderResult], share: str = "") -> None:
    """The summary table (`share`: which shard it covers); below it, the full report of each spec that disagrees
    or crashed."""
    from collections import Counter

    from rich.table import Table

    styles = {"pass": "green", "invalid": "yellow", "FAIL": "bold red", "error": "bold red"}
    table = Table(title=f"nnspec check: {folder} ({share or f'{len(results)} specs'})")
    table.add_column("spec")
    table.add_column("result", no_wrap=True)
    table.add_column(f"worst {MARGIN}", justify="right", no_wrap=True)
    table.add_column("failing outputs, or the error")
    for r in results:
        verdict = _folder_verdict(r)
        margin = "-" if r.worst_margin is None else f"{r.worst_margin:.3g}"
        detail = r.summary.removeprefix(f"{r.path}: ")  # the spec column names it already
        name = r.path.relative_to(folder).as_posix()
        table.add_row(escape(name), f"[{styles[verdict]}]{verdict}[/]", margin, escape(detail))
    out.print(table)
    for r in results:
        if r.exit_code == 1:
            out.heading(r.path.as_posix())
            out.out(r.text, highlight=False, end="")
    counts = Counter(_folder_verdict(r) for r in results)
    if counts["pass"] == len(results):
        out.print(f"[green]PASS[/green]: all {len(results)} specs agree", highlight=False)
    else:
        words = {"FAIL": "disagree", "error": "crashed nnspec", "invalid": "invalid"}
        tally = ", ".join(f"{counts[v]} {word}" for v, word in words.items() if counts[v])
        out.print(f"[bold red]FAIL[/bold red]: {tally} ({len(results)} specs)", highlight=False)


def positive_number(value: str) -> float:
    """A parser for --lr: a finite number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise typer.BadParameter(f"expected a number > 0, found {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise typer.BadParameter(f"expected a finite number > 0, found {value}")
    return number


@command(short_help="Learn a spec's weights from examples by gradient descent.")
@reports_errors
def train(
    spec: SpecArg,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="PATH",
            help="The examples: .npz or .json keyed by input names (features) and output names (targets), or .csv "
            "with a header (--target names the target columns).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="The trained spec to write (.json); its weights go beside it in one .npz of the same stem.",
            show_default=False,
        ),
    ],
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="COLUMN",
            help="A .csv file's target column (repeatable, in the output's order); the other columns, in order, are "
            "the input's features.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs",
            metavar="N",
            parser=integer(minimum=1),
            help="Passes over the examples (1000: enough for the seed's small networks, the party neuron and XOR).",
        ),
    ] = 1000,
    lr: Annotated[
        float,
        typer.Option(
            "--lr",
            metavar="R",
            parser=positive_number,
            help="Learning rate: each step moves a weight by -R dL/dw (0.1: small enough not to overshoot on inputs "
            "of size ~1).",
        ),
    ] = 0.1,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            metavar="B",
            parser=integer(minimum=1),
            help="Examples per step (default: all of them, the seed's plain gradient descent; fewer: mini-batches, "
            "shuffled each epoch by --seed).",
            show_default=False,
        ),
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            "--loss",
            metavar="[mse|cross_entropy]",
            parser=choice("--loss", ("mse", "cross_entropy")),
            help="The cost: mse, the squared error per example (summed over an output's elements) averaged over the "
            "examples, for any output (the seed's); cross_entropy, for sigmoid or softmax outputs.",
        ),
    ] = "mse",
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            metavar="S",
            parser=integer(minimum=0),
            help="Seed of the mini-batch shuffle: the same seed gives the same weights, byte for byte.",
        ),
    ] = 0,
) -> None:
    """Learn a spec's weights from examples by gradient descent on a cost, and write the trained spec.

    Starts from the spec's own weights (inline, files or seeded initializers), backpropagates the cost through
    every layer in float64, and writes TRAINED.json with every weight in TRAINED.npz beside it, both atomically;
    the trained spec validates, compiles and checks like any other. Exit 0 when written; 2, writing nothing, for
    an invalid spec or data file, a layer no gradient passes through (a step activation), or a run that diverges.
    """
    from . import train as training

    s = api.load(spec)
    g = api.graph(s)
    training.check_trainable(g, loss, s.source)
    examples = training.load_data(data, g, target or [], loss)
    options = training.Options(epochs, lr, batch_size, loss, seed)
    size = examples.count if batch_size is None else min(batch_size, examples.count)
    every = max(1, epochs // 10)
    if out.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=out,
        ) as bar:
            task = bar.add_task("training", total=epochs, loss="-")
            trained = training.train(
                g, examples, options, lambda epoch, value: bar.update(task, completed=epoch, loss=f"{value:.6g}")
            )
    else:

        def log(epoch: int, value: float) -> None:
            if epoch % every == 0 or epoch in (1, epochs):
                out.print(f"epoch {epoch}/{epochs}: loss {value:.6g}", markup=False, highlight=False)

        trained = training.train(g, examples, options, log)
    note = (
        f"Trained by nnspec train on {data.name}: {epochs} epochs of gradient descent ({loss}, lr {lr:g}, "
        f"{size} examples per step, seed {seed}), final loss {trained.final_loss:.6g}."
    )
    written = training.write_trained(s, g, trained, output, note)
    correct = "" if trained.correct is None else f"; classified correctly: {trained.correct} of {trained.count}"
    out.print(
        f"final loss {trained.final_loss:.6g} ({loss} over {trained.count} examples, the weights as stored in "
        f"{g.dtype.name}){correct}",
        markup=False,
        highlight=False,
    )
    out.print(
        f"wrote {' and '.join(map(str, written))} ({', '.join(trained.learned) or 'no parameters'} learned)",
        markup=False,
        highlight=False,
    )


@command(short_help="Upgrade a spec to the current format version.")
@reports_errors
def migrate(
    spec: SpecArg,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="PATH", help="Write the upgraded spec here (default: print it)."),
    ] = None,
) -> None:
    """Upgrade a spec written for an older version of the format to the current one, and validate it."""
    from .migrate import migrate as upgrade
    from .spec import parse_json

    try:
        raw = spec.read_bytes()
    except OSError as exc:
        raise NNSpecError(f"cannot read: {exc.strerror or exc}", source=str(spec)) from None
    data, steps = upgrade(parse_json(raw, str(spec)), str(spec))
    api.from_dict(data, spec.parent)  # the result must be a valid spec of the current format
    text = json_text(data)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, text.encode())
    what = ", ".join(steps) if steps else f"already {data['format']}, nothing to upgrade"
    err.print(f"{spec}: {what}", highlight=False, markup=False)


@command("limits", short_help="Show the resource limits and their reasons.")
@reports_errors
def limits_(
    as_json: Annotated[bool, typer.Option("--json", help="Print the limits as JSON.")] = False,
) -> None:
    """Show the resource limits in force, where each value comes from, and why each default is what it is."""
    from rich.table import Table

    from .limits import Limits, describe, env_var, show

    current = Limits.from_env()
    defaults = Limits()
    rows = []
    for name in Limits.names():
        value = getattr(current, name)
        if name in _set_on_command_line:
            origin = "--limit"
        elif env_var(name) in os.environ:
            origin = "environment"
        else:
            origin = "default"
        rows.append(
            {
                "name": name.replace("_", "-"),  # as --limit and the table spell it
                "field": name,  # as nnspec.Limits spells it
                "value": value,
                "default": getattr(defaults, name),
                "set_by": origin,
                "variable": env_var(name),
                **describe(name),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(show_lines=True)
    table.add_column("limit", no_wrap=True)
    table.add_column("value", no_wrap=True, justify="right")
    table.add_column("set by")
    table.add_column("bounds [dim](why the default)[/dim]")
    for row in rows:
        table.add_row(
            row["name"],
            show(row["field"], row["value"]),
            row["set_by"],
            f"{escape(row['what'])}\n[dim]{escape(row['why'])}[/dim]",
        )
    out.print(table)
    out.print("Set one with NNSPEC_<NAME> (e.g. NNSPEC_MAX_SPEC_BYTES=512MiB) or nnspec --limit max-spec-bytes=512MiB.")


@command(short_help="Draw a spec's network as an SVG picture.")
@reports_errors
def draw(
    spec: SpecArg,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="PATH", help="Where to write the SVG (default: <name>.svg)."),
    ] = None,
) -> None:
    """Draw the network as neurons joined by weighted edges, and write it as SVG.

    Every input and neuron of a small network is a node, every weight an edge (blue, or red and dashed when
    negative; width by size), the activation under each layer. Layers of more than 16 values, and layers
    other than dense, are labelled blocks with their output shape; branches and merges are drawn as such.
    """
    from .draw import svg

    s = api.load(spec)
    g = api.graph(s)
    target = output if output is not None else Path(f"{g.name}.svg")
    data = svg(g).encode()
    atomic_write(target, data)
    out.print(f"wrote {target} ({len(g.inputs)} input(s), {len(g.nodes)} layer(s), {len(data):,} bytes)", markup=False)


@command(short_help="Print the JSON Schema of the spec format.")
def schema() -> None:
    """Print the JSON Schema of the spec format."""
    from .spec import Spec

    sys.stdout.write(json.dumps(Spec.model_json_schema(), indent=2) + "\n")


# Models of at least this many bytes show a progress bar while they are written (on a terminal): 256 MiB takes
# a quarter second at page-cache speed, so smaller ones would only flash one.
PROGRESS_BYTES = 256 << 20

# Options of nnspec itself that users write after the command too.
HOISTED = ("--limit", "--threads")


def hoist_limits(argv: list[str]) -> list[str]:
    """`nnspec check x.json --limit a=b --threads 2` -> `nnspec --limit a=b --threads 2 check x.json`:
    `--limit` and `--threads` are options of nnspec itself, but users write them after the command too."""
    hoisted, rest = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in HOISTED and i + 1 < len(argv):
            hoisted += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in HOISTED)):
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def main() -> None:
    app(args=hoist_limits(sys.argv[1:]), prog_name="nnspec")
