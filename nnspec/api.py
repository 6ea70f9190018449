"""The Python API: load a spec, get its NumPy and ONNX forms, and cross-check them."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import BackendUnavailable, ModelFileError, NNSpecError
from .evaluator import NumpyModel
from .graph import build_graph
from .harness import (
    Report,
    Tolerance,
    cross_check,
    fixed_batch,
    interface_problems,
)
from .inputs import DEFAULT_BATCH_SIZES, Case, given_cases, non_finite_notes, random_cases, random_origin
from .ir import Graph
from .limits import PROTOBUF_MAX_BYTES, Limits, human_bytes
from .power import power_rows, pre_activation_name
from .runners import (
    ChunkedRunner,
    ModelNotRunnable,
    NumpyRunner,
    RenamedRunner,
    Runner,
    make_runner,
    onnxruntime_max_opset,
    onnxruntime_version,
)
from .spec import Spec, read_spec
from .spec import from_dict as _validate_dict

if TYPE_CHECKING:
    import onnx

    from .onnxio.export import Export
    from .onnxio.model import Model

DEFAULT_OPSET = 17  # kept equal to nnspec.onnxio.export.DEFAULT_OPSET; repeated here so `import nnspec` needs no onnx

SpecLike = Spec | str | Path


def load(path: str | Path, *, limits: Limits | None = None) -> Spec:
    """Read a spec file and validate it completely: structure, names, shapes, limits and weights."""
    spec = read_spec(path, limits)
    spec._graph = build_graph(spec, limits)
    return spec


def from_dict(data: Mapping[str, Any], base_dir: str | Path | None = None, *, limits: Limits | None = None) -> Spec:
    """Validate a spec given as a parsed JSON object; weight files resolve inside `base_dir`."""
    spec = _validate_dict(data, base_dir)
    spec._graph = build_graph(spec, limits)
    return spec


def graph(spec: SpecLike) -> Graph:
    """The resolved network of a spec (built once and cached on the spec)."""
    if not isinstance(spec, Spec):
        spec = load(spec)
    if spec._graph is None:
        spec._graph = build_graph(spec)
    return spec._graph


def to_numpy(spec: SpecLike) -> NumpyModel:
    """A callable NumPy model; see NumpyModel for the calling convention."""
    return NumpyModel(graph(spec))


def check_opset(opset: int) -> None:
    """Refuse opsets outside what both onnx and the installed onnxruntime support."""
    from .onnxio.export import MIN_OPSET, max_opset

    top = min(max_opset(), onnxruntime_max_opset())
    if not MIN_OPSET <= opset <= top:
        raise NNSpecError(
            f"expected an opset from {MIN_OPSET} to {top} (the newest the installed onnx and onnxruntime "
            f"both run), found {opset}"
        )


def to_onnx(spec: SpecLike, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The spec as an ONNX model (checked by onnx.checker with full_check), carrying the spec without its
    weights in its metadata (`nnspec.spec`), so that `nnspec import` gives back this very spec."""
    return export(spec, opset).proto()


def export(spec: SpecLike, opset: int = DEFAULT_OPSET) -> Export:
    """What `to_onnx` returns, its numbers held apart as the spec's own arrays (`nnspec.onnxio.export.Export`):
    what `write_onnx` writes and runners run, with no copy of a weight."""
    from .onnxio.export import export as lower
    from .onnxio.export import set_structure

    if not isinstance(spec, Spec):
        spec = load(spec)
    g = graph(spec)
    exported = lower(g, opset)
    set_structure(exported.model, structure(spec, g))
    return exported


def external_data_file(path: str | Path) -> Path:
    """Where `write_onnx` puts the external data of the model `path`: `model.onnx` -> `model.onnx.data`."""
    path = Path(path)
    return path.with_name(f"{path.name}.data")


def write_onnx(
    exported: Export,
    path: str | Path,
    *,
    external_data: bool | None = None,
    written: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write the model to `path` (atomically) and return the files written.

    One self-contained file, or, with `external_data` (None: when one file would exceed protobuf's 2 GiB),
    the model with its tensors of 1 KiB or more in one data file beside it (`external_data_file`), named
    by a relative location. Either way the numbers go from the spec's arrays to the file, uncopied. The
    files are written under temporary names and renamed into place when complete, the data file first.
    `written(n)` is told of every n bytes written (for a progress bar).
    """
    from . import limits
    from .files import atomic_write_all

    path = Path(path)
    if external_data is None:
        external_data = exported.size() > limits.PROTOBUF_MAX_BYTES
    if not external_data:
        pieces = exported.pieces()
        return atomic_write_all([(path, lambda f: _write_pieces(f, pieces, written))])
    data_file = external_data_file(path)
    proto, data = exported.external(data_file.name)
    return atomic_write_all([(data_file, lambda f: _write_pieces(f, data, written)), (path, proto)])


def _write_pieces(f: IO[bytes], pieces: Sequence[bytes | memoryview], written: Callable[[int], None] | None) -> None:
    for piece in pieces:
        f.write(piece)
        if written is not None:
            written(memoryview(piece).nbytes)


def structure(spec: Spec, g: Graph) -> str:
    """The spec as canonical JSON with each weight field (weights, bias, mean, ...) written as `true`: what
    a compiled model records of its spec, its numbers being the model's own initializers."""
    weights = {node.index: set(node.params) for node in g.nodes if node.params}
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"layers": weights})  # type: ignore[dict-item]
    for index, keys in weights.items():
        data["layers"][index].update(dict.fromkeys(sorted(keys), True))
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _model_bytes(model: Any) -> tuple[Model, str, Path | None]:
    """The model, a label and the folder its external data may be read from (a file's own folder; None for
    a model given in memory), for an ONNX model given as a ModelProto, bytes, ModelData or Export, or a path."""
    from .onnxio.export import Export
    from .onnxio.model import ModelData

    if isinstance(model, bytes | bytearray):
        return bytes(model), "ONNX bytes", None
    if isinstance(model, ModelData | Export):
        return (model if isinstance(model, ModelData) else model.data()), "ONNX model", None
    if isinstance(model, str | Path):
        path = Path(model)
        try:
            size = path.stat().st_size
            if size > PROTOBUF_MAX_BYTES:  # protobuf could not parse it: refused unread
                raise ModelFileError(
                    f"expected a self-contained ONNX model of at most 2 GiB (protobuf's limit for one message), "
                    f"found a {human_bytes(size)} file",
                    source=str(path),
                )
            return path.read_bytes(), str(path), path.parent
        except FileNotFoundError:
            raise ModelFileError("no such file", source=str(path)) from None
        except OSError as exc:
            raise ModelFileError(f"cannot read: {exc.strerror}", source=str(path)) from None
    from .onnxio.export import to_bytes

    return to_bytes(model), "ONNX model", None


def _adapter(renamed: Mapping[str, str], outputs: Collection[str], rows: int | None) -> Callable[[Runner], Runner]:
    """How a candidate runner is wrapped: spec names to the model's (`renamed`, keyed by spec input or output
    name) and back, and batches run in chunks of `rows` (a model's fixed first dim)."""
    ins = {k: v for k, v in renamed.items() if k not in outputs}
    outs = {k: v for k, v in renamed.items() if k in outputs}

    def adapt(runner: Runner) -> Runner:
        if renamed:
            runner = RenamedRunner(runner, ins, outs)
        return runner if rows is None else ChunkedRunner(runner, rows)

    return adapt


def _candidates(
    kinds: Sequence[str], data: Model, provider: str, label: str, *, given: bool, notes: list[str]
) -> dict[str, Runner]:
    """The candidate runners by kind. A given model that onnxruntime cannot load is run by onnx's reference
    evaluator instead (noted); a fresh export keeps the error, which names --runner onnx-reference."""
    made: dict[str, Runner] = {}
    for kind in dict.fromkeys(kinds):
        if kind in made:  # onnx-reference, already standing in for onnxruntime
            continue
        try:
            made[kind] = make_runner(kind, data, provider, label)
        except ModelNotRunnable as exc:
            if not (given and kind == "onnxruntime"):
                raise
            ort = f"onnxruntime {onnxruntime_version()}"
            try:
                made.setdefault("onnx-reference", make_runner("onnx-reference", data, provider, label))
            except ModelNotRunnable as also:
                raise BackendUnavailable(
                    f"no runner can run this model: {ort} cannot ({exc.reason}), nor can onnx's reference evaluator "
                    f"({also.reason})",
                    source=label,
                ) from None
            notes.append(f"{ort} cannot run this model ({exc.reason}): checked with onnx's reference evaluator instead")
    return made


def check(
    spec: SpecLike,
    *,
    onnx_model: Any = None,
    inputs: Mapping[str, Any] | Any | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    provider: str = "cpu",
    opset: int = DEFAULT_OPSET,
    repro: str | Path | None = None,
    runners: Sequence[str] = ("onnxruntime",),
    exact_file: bool = False,
    tell: Callable[[str], None] | None = None,
) -> Report:
    """Prove that the ONNX form computes what the spec says: run both on the same inputs, compare every output.

    Args:
        spec: a loaded `Spec`, or the path of a spec file.
        onnx_model: an existing model to check (a `onnx.ModelProto`, its bytes, or a path; a file's
            external data is read from its own folder only) instead of a fresh export of the spec.
        inputs: arrays keyed by input name, each `[N, *shape]` (one array will do for a single-input
            model), instead of the seeded random batches.
        rtol, atol: a flat tolerance, `|candidate - reference| <= atol + rtol * |reference|`, instead of
            the derived bound; each a finite number >= 0 (a missing one is 0).
        seed, batch_sizes: the seeded random batches (used when `inputs` is None).
        provider: onnxruntime's execution provider, "cpu" or "cuda".
        opset: the ONNX opset of the fresh export.
        repro: a folder to write a minimal reproduction to when a layer is found to diverge.
        runners: candidate runners, "onnxruntime" and/or "onnx-reference".
        exact_file: for a model nnspec compiled, also fail when its file differs in any bit from a fresh
            export of the spec (always reported, in `Report.differences`).
        tell: told the stage under way as the check goes (for a progress display; `nnspec check` shows it).

    Returns:
        A `Report`: `.passed`, per output `.outputs` (with `.worst_margin`, the largest error divided by
        the error allowed there; above 1 fails), `.steps` (each layer against its own step), `.notes`;
        `str(report)` renders it as text, `nnspec.render` as JSON, Markdown, JUnit or HTML.

    Raises:
        NNSpecError: invalid spec, inputs, tolerance or model file (`InputDataError`, `SpecError`, ...).
    """
    from .onnxio.export import elem_type_of
    from .onnxio.export import export as lower
    from .onnxio.model import ModelData, interface, open_model

    tol = Tolerance() if rtol is None and atol is None else Tolerance.given(rtol, atol)
    if not isinstance(spec, Spec):
        spec = load(spec)
    g = graph(spec)
    notes: list[str] = []
    problems: list[str] = []
    # Layer outputs are tensors named after the layers in models nnspec compiles; in other models a
    # tensor of that name may hold something else, so only nnspec's models are checked layer by layer.
    stepwise = True
    adapt = _adapter({}, (), None)  # a fresh export has the spec's names and takes any batch size
    data: Model
    if onnx_model is None:
        check_opset(opset)
        data, label = lower(g, opset).data(), f"fresh export (opset {opset})"
    else:
        data, label, folder = _model_bytes(onnx_model)
        given_model, given = open_model(data, label, folder)
        data = given if given.weights else given.proto
        iface = interface(given_model)
        problems = interface_problems(g, iface, elem_type_of(g.dtype))
        recorded = iface["metadata"].get("nnspec.spec_sha256")
        if recorded and recorded != g.fingerprint:
            compiled_from = iface["graph_name"]
            notes.append(
                f"the model was compiled from another spec (model {compiled_from!r}): its recorded spec hash differs"
                if compiled_from != g.name
                else f"the model was compiled from a different network named {g.name!r} (another version of this "
                "spec?): its recorded spec hash differs from this spec's"
            )
        elif not recorded:
            notes.append("the model carries no nnspec spec hash (not compiled by nnspec): checked end to end only")
        stepwise = "nnspec.version" in iface["metadata"]
        chunks = None if problems else fixed_batch(g, iface)
        if chunks is not None:
            notes.append(chunks[1])
        adapt = _adapter(g.onnx_names, {o.name for o in g.outputs}, chunks[0] if chunks else None)
    if inputs is not None:
        cases, origin = given_cases(g, inputs), "given"
        notes += non_finite_notes(cases[0].feeds)
    else:
        cases = random_cases(g, seed, batch_sizes)
        origin = random_origin(seed, g)
    reference = NumpyRunner(g)
    if problems:
        return cross_check(g, reference, reference, cases, tol, problems=problems, notes=notes, inputs=origin)
    kinds = _candidates(runners, data, provider, label, given=onnx_model is not None, notes=notes)
    candidates = [adapt(made) for made in kinds.values()]

    def traced(runner: Runner) -> Runner:
        from .onnxio.model import with_outputs

        kind = next(name for name, made in zip(kinds, candidates, strict=True) if made is runner)
        exposed = [n.name for n in g.nodes] + [
            p for n in g.nodes if (p := pre_activation_name(n)) not in (None, n.name)
        ]
        return adapt(make_runner(kind, with_outputs(data, exposed), provider, label))

    # the parameter test's own rows (nnspec.power): enough for the widest layer, run through the traced model only
    extra = power_rows(g)
    wanted = extra and stepwise and tol.mode == "derived"
    power_cases = random_cases(g, seed, [extra], edges=False, single=True) if wanted else []

    def spare_cases() -> list[Case]:  # for dense layers tested two by two (nnspec.power.SPARE_ROWS)
        return random_cases(g, seed, [extra], edges=False, single=True, part=1)

    report = cross_check(
        g,
        reference,
        candidates,
        cases,
        tol,
        traced=traced,
        stepwise=stepwise,
        notes=notes,
        inputs=origin,
        power_cases=power_cases,
        spare_cases=spare_cases if wanted else None,
        tell=tell,
    )
    report.notes.insert(0, f"candidate: {label}")
    report.exact_file = exact_file
    if onnx_model is not None and stepwise and not problems:
        _compare_with_export(report, g, given_model, iface, data.weights if isinstance(data, ModelData) else {})
    elif exact_file and onnx_model is not None:
        report.problems.append("--exact-file: the model carries no nnspec metadata, so there is no export to compare")
    if repro is not None and report.divergence is not None and g.onnx_names:
        report.notes.append("no reproduction written: the model names its values otherwise than the spec (onnx_names)")
    elif repro is not None and report.divergence is not None:
        from .repro import write_repro

        case = next(c for c in cases if c.label == report.divergence["case"])
        values = {**case.feeds, **reference.trace(case.feeds)}
        findings = [
            {**asdict(w.worst), "ratio": w.worst.ratio, "flagged": w.flagged, "rows": w.rows, "threshold": w.threshold}
            for w in report.weights
            if w.layer == report.divergence["layer"] and w.worst is not None
        ]
        write_repro(repro, spec, g, report.divergence["layer"], values, data, findings)
        report.notes.append(f"wrote a reproduction of {report.divergence['path']} to {repro}")
    elif repro is not None:
        report.notes.append("no reproduction written: no layer was found to diverge")
    return report


def _compare_with_export(
    report: Report, g: Graph, model: onnx.ModelProto, iface: Mapping[str, Any], weights: Mapping[str, Any]
) -> None:
    """A model nnspec compiled (its external data in `weights`) against a fresh export of the spec at its
    opset: every initializer to the bit and every node (nnspec.onnxio.diff). Files from another nnspec
    version, or renamed ones, are not compared (their export may differ for reasons of no consequence); with
    exact_file that is a problem."""
    from ._version import __version__
    from .onnxio.diff import file_differences
    from .onnxio.export import MIN_OPSET, max_opset
    from .onnxio.export import export as lower

    version, opset = iface["metadata"].get("nnspec.version"), iface["opset"]
    if version != __version__:
        why = f"the model was compiled by nnspec {version} (this is {__version__}): not compared with a fresh export"
        (report.problems if report.exact_file else report.notes).append(why)
        return
    if g.onnx_names or opset is None or not MIN_OPSET <= opset <= max_opset():
        report.notes.append(
            "the model was renamed or is at an opset nnspec does not write: not compared with a fresh export"
        )
        return
    fresh = lower(g, opset)
    report.differences = file_differences(model, fresh.model, g, (weights, fresh.arrays))
    report.compared_with_export = True
    if not report.differences:
        report.notes.append(f"the file is the spec's export at opset {opset}: every initializer and node the same")


# The import's own check proves the lift: batches of 1 and 7 and the edge rows run every layer on every
# kind of value. The serving-size batch of 64 that `nnspec check` adds costs ~9x the time and memory on a
# 224x224 CNN (ResNet-18: 15 GB) and proves nothing more about the lift; it is left to `nnspec check`.
IMPORT_BATCH_SIZES = (1, 7)


@dataclass
class Import:
    """What `import_onnx` did: the spec (None when nothing was written), the check, and notes for a reviewer."""

    spec: Spec | None
    report: Report | None
    notes: list[str]
    written: tuple[Path, ...] = ()


def import_onnx(
    model: str | Path,
    output: str | Path,
    *,
    outputs: Sequence[str] | None = None,
    name: str | None = None,
    check_model: bool = True,
) -> Import:
    """Lift the ONNX model at `model` into the spec `output` (.json) and its weights (the .npz beside it).

    Both files are written only when the model lifts and, with `check_model`, the spec checks against the
    very file it came from; else `Import.spec` is None and nothing is written (`Import.report` says why).

    Raises:
        NNSpecError: a damaged file, or nodes the format has no layer for (every one listed).
    """
    from .fields import NAME_RE
    from .onnxio.importer import Staged, lift_model

    output = Path(output)
    if output.suffix.lower() != ".json":
        raise NNSpecError(f"expected a spec file name ending in .json, found {output.name!r}")
    if name is not None and not NAME_RE.match(name):
        raise NNSpecError(f"expected a name of letters, digits, '_', '.', '-' (not first), found {name!r}")
    imported = lift_model(model, outputs=outputs, name=name, weights_file=output.with_suffix(".npz").name)
    staged = Staged(imported, output)
    try:
        report = None
        if check_model:
            report = check(staged.spec, onnx_model=imported.model, batch_sizes=IMPORT_BATCH_SIZES)
            if not report.passed:
                staged.discard()
                return Import(None, report, imported.notes)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    return Import(staged.spec, report, imported.notes, (output, staged.weights))
