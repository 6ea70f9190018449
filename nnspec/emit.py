"""`nnspec compile --emit numpy`: a spec as a standalone Python module that needs NumPy alone.

The module runs the very code the evaluator runs. Each layer is one call of its type's kernel
(`LayerType.kernel`) with the arguments its `prepare` part gives for the node, the kernel's source and that of
every helper it reads copied in (found from the globals its bytecode loads, each once); arrays go into the
`.npz` beside the module, keyed `<layer>.<argument>`. The module is rendered from `templates/numpy_module.py.j2`
and, like an ONNX model, cross-checked against the evaluator before it is written (`compile_numpy`).
"""

from __future__ import annotations
import __future__

import builtins
import dataclasses
import dis
import functools
import importlib
import inspect
import io
import json
import keyword
import re
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ._version import __version__
from .errors import NNSpecError
from .feeds import id_ranges
from .ir import Graph, Node
from .layers import LAYERS
from .layers.base import takes_varargs

TEMPLATE = "numpy_module.py.j2"
RUNNER_NAME = "generated"
FINGERPRINT_KEY = "nnspec.spec_sha256"  # in the .npz: which spec its arrays were prepared for
# Names the template itself defines or uses at module level, and the local names of `run`: never a value's name.
TEMPLATE_NAMES = frozenset(
    {"run", "weights", "_inputs", "_WEIGHTS", "INPUTS", "OUTPUTS", "WEIGHTS_FILE", "SPEC_NAME", "SPEC_SHA256"}
    | {"NNSPEC_VERSION", "w", "args", "kwargs", "annotations"}
)
# The imports the template's own code needs (its kernels' may add more).
TEMPLATE_IMPORTS = {"np": "import numpy as np", "os": "import os"}


class EmitError(NNSpecError):
    """A layer's kernel or arguments cannot be written as standalone source (a bug in a layer type, not the spec)."""


@dataclass
class Emitted:
    """A generated module: its source, and the arrays of its .npz keyed `<layer>.<argument>`."""

    source: str
    arrays: dict[str, np.ndarray]
    fingerprint: str
    outputs: tuple[str, ...]

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """What the .npz holds: the arrays, and the spec's fingerprint (a str array, no pickle needed)."""
        return {**self.arrays, FINGERPRINT_KEY: np.array(self.fingerprint)}

    def load(self, path: str | Path) -> types.ModuleType:
        """The module, executed from this source as if at `path`, its arrays handed over from memory (nothing is
        read from or written to disk): what the check runs before the files are written."""
        path = Path(path)
        module = types.ModuleType(f"nnspec_generated_{id(self):x}")
        module.__file__ = str(path)
        # in sys.modules while it runs, as an import would have it: dataclasses looks a class's module up there
        sys.modules[module.__name__] = module
        try:
            exec(compile(self.source, str(path), "exec"), module.__dict__)
        finally:
            del sys.modules[module.__name__]
        module._WEIGHTS = dict(self.arrays)  # what `weights()` would read from the .npz
        return module


# --- the source of what the kernels call ----------------------------------------------------------------------


def _allowed_module(name: str) -> bool:
    """NumPy, or the standard library: all a generated module may import."""
    root = name.split(".")[0]
    return root == "numpy" or root in sys.stdlib_module_names


def _code_objects(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found += _code_objects(const)
    return found


def _globals_read(source: str, where: str) -> list[str]:
    """The global names a definition's source reads (its bytecode's LOAD_GLOBAL and LOAD_NAME, less what its own
    class bodies define), in order; annotations are strings (PEP 563), so they read nothing."""
    flags = __future__.annotations.compiler_flag
    code = compile(source, where, "exec", flags=flags, dont_inherit=True)
    names: dict[str, None] = {}
    for block in _code_objects(code):
        instructions = list(dis.get_instructions(block))
        stored = {i.argval for i in instructions if i.opname == "STORE_NAME"}
        for i in instructions:
            if i.opname == "IMPORT_NAME":
                raise EmitError(f"{where} imports {i.argval!r} inside a function: import it at module level")
            if i.opname == "LOAD_GLOBAL" or (i.opname == "LOAD_NAME" and i.argval not in stored):
                if not (i.argval.startswith("__") and i.argval.endswith("__")):  # a class body's __name__
                    names[i.argval] = None
    return list(names)


def _float_literal(value: float) -> str:
    if value != value:
        return 'float("nan")'
    if value in (float("inf"), float("-inf")):
        return f'float("{value}")'
    return repr(value)


class Definitions:
    """What a generated module defines at module level: imports, constants, and the source of nnspec's functions
    and classes that its kernels call, each once, every definition after those it needs at import time."""

    def __init__(self) -> None:
        self.imports: dict[str, str] = {}  # bound name -> import statement
        self.constants: dict[str, str] = {}  # name -> literal
        self.sources: dict[str, str] = {}  # name -> source, dependencies first
        self._owners: dict[str, object] = {}  # name -> the object it stands for, to refuse two under one name
        self._visiting: set[int] = set()
        for name, statement in TEMPLATE_IMPORTS.items():
            self._owners[name] = self.imports[name] = statement

    @property
    def names(self) -> set[str]:
        return set(self.imports) | set(self.constants) | set(self.sources)

    def _claim(self, name: str, owner: object, what: str) -> bool:
        """Reserve `name` for `owner`; False when it already is, an error when something else holds it."""
        held = self._owners.get(name, _MISSING)
        if held is _MISSING:
            if name in TEMPLATE_NAMES:
                raise EmitError(f"{what} would be named {name!r}, which the generated module uses for its own")
            self._owners[name] = owner
            return True
        if held is owner or (isinstance(owner, str) and held == owner):
            return False
        raise EmitError(f"two different things would be named {name!r} in the generated module: {what} and another")

    def module(self, name: str, module: types.ModuleType, where: str) -> None:
        if not _allowed_module(module.__name__):
            raise EmitError(f"{where} reads the module {module.__name__!r}: a generated module imports NumPy alone")
        statement = f"import {module.__name__}" + (f" as {name}" if name != module.__name__ else "")
        if self._claim(name, statement, f"the import of {module.__name__}"):
            self.imports[name] = statement

    def library(self, name: str, value: Any, where: str) -> None:
        """A function or class of NumPy or the standard library, imported from where it is public."""
        home, own = getattr(value, "__module__", None), getattr(value, "__name__", None)
        if (
            not home
            or not own
            or not _allowed_module(home)
            or getattr(importlib.import_module(home), own, None) is not value
        ):
            raise EmitError(f"{where} reads {name!r} ({value!r}), which a generated module cannot import")
        statement = f"from {home} import {own}" + (f" as {name}" if name != own else "")
        if self._claim(name, statement, f"the import of {home}.{own}"):
            self.imports[name] = statement

    def constant(self, name: str, value: Any, where: str) -> None:
        text = literal(value)
        if text is None:
            raise EmitError(f"{where} reads the global {name!r}, a {type(value).__name__}, which is no literal")
        if self._claim(name, text, f"the constant {name}"):
            self.constants[name] = text

    def definition(self, value: Callable[..., Any] | type) -> str:
        """Include a function or class of nnspec (and, first, what it reads); its name in the module."""
        name, where = value.__name__, f"{value.__module__}.{value.__qualname__}"
        if value.__qualname__ != name or "<" in name:
            raise EmitError(f"{where} is not defined at module level (a lambda or a closure): no source to copy")
        if name in self.sources and self._owners.get(name) is value:
            return name
        if id(value) in self._visiting:  # a recursive helper: defined once, where its first caller needs it
            return name
        self._visiting.add(id(value))
        try:
            source = inspect.getsource(value)
        except (OSError, TypeError) as exc:
            raise EmitError(f"no source for {where}: {exc}") from None
        home = sys.modules[value.__module__].__dict__
        for read in _globals_read(source, where):
            if read == name:
                continue
            if read not in home:
                if hasattr(builtins, read):
                    continue
                raise EmitError(f"{where} reads {read!r}, which its module does not define")
            self.reference(read, home[read], where)
        self._visiting.discard(id(value))
        if self._claim(name, value, where):
            self.sources[name] = source.rstrip()
        return name

    def reference(self, name: str, value: Any, where: str) -> None:
        """A global that a definition reads, under `name`."""
        if isinstance(value, types.ModuleType):
            self.module(name, value, where)
        elif _is_nnspec(value):
            if value.__name__ != name:
                raise EmitError(f"{where} reads {value.__name__} as {name!r}: an alias a generated module lacks")
            self.definition(value)
        elif callable(value):
            self.library(name, value, where)
        else:
            self.constant(name, value, where)


_MISSING = object()


def _is_nnspec(value: Any) -> bool:
    return (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__.split(".")[0] == "nnspec"


def literal(value: Any) -> str | None:
    """Python source for a plain value (None, bool, int, float, str, and tuples and lists of them), or None."""
    if isinstance(value, np.generic):  # np.float64 is a float, but NumPy promotes with it as a float64
        return None
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python literal too, in double quotes
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        return _float_literal(value)
    if isinstance(value, tuple | list):
        items = [literal(v) for v in value]
        if any(item is None for item in items):
            return None
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"  # type: ignore[arg-type]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"  # type: ignore[arg-type]
    return None


# --- one layer, one line ---------------------------------------------------------------------------------------


@dataclass
class Step:
    """One line of `run`, `target = kernel(inputs..., arguments...)  # comment`, its values by their network names
    until every name the module defines is known (`_Module.lines` then gives them variables)."""

    node: str
    kernel: str
    inputs: list[str]
    arguments: list[str]
    comment: str


@dataclass
class _Module:
    """What the template renders, gathered layer by layer."""

    graph: Graph
    definitions: Definitions = field(default_factory=Definitions)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # module-level objects built at import (a Window)
    local: dict[str, str] = field(default_factory=dict)  # value name -> its variable in `run`

    def variable(self, name: str) -> str:
        """A Python name for a value of the network (an input or a layer's output), unique and free."""
        base = re.sub(r"\W", "_", name)
        if not base or base[0].isdigit():
            base = f"_{base}"
        taken = self.definitions.names | TEMPLATE_NAMES | set(self.local.values()) | set(self.settings)
        candidate = base
        while keyword.iskeyword(candidate) or hasattr(builtins, candidate) or candidate in taken:
            candidate += "_"
        self.local[name] = candidate
        return candidate

    def value(self, node: Node, argument: str, value: Any) -> str:
        """Source for one prepared argument: an array from the .npz, a literal, a function, a setting."""
        where = f"layer {node.name!r} ({node.op}), argument {argument!r}"
        if isinstance(value, np.ndarray):
            key = f"{node.name}.{argument}"
            self.arrays[key] = value
            return f"w[{literal(key)}]"
        return self.expression(value, where, f"{node.name}_{argument}")

    def expression(self, value: Any, where: str, setting: str) -> str:
        """Source for a value that is not an array; `setting` names it if it must be built at import (a Window)."""
        text = literal(value)
        if text is not None:
            return text
        if isinstance(value, np.generic):
            return f"np.{value.dtype.name}({literal(value.item())})"
        if isinstance(value, tuple):
            items = [self.expression(v, where, setting) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(value, functools.partial):
            self.definitions.library("partial", functools.partial, where)
            parts = [self.expression(value.func, where, setting)]
            parts += [self.expression(a, where, setting) for a in value.args]
            parts += [f"{k}={self.expression(v, where, setting)}" for k, v in value.keywords.items()]
            return f"partial({', '.join(parts)})"
        if _is_nnspec(value):
            return self.definitions.definition(value)
        if callable(value) and getattr(np, getattr(value, "__name__", ""), None) is value:
            return f"np.{value.__name__}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and _is_nnspec(type(value)):
            cls = self.definitions.definition(type(value))
            fields = [
                f"{f.name}={self.expression(getattr(value, f.name), where, setting)}"
                for f in dataclasses.fields(value)
                if f.init
            ]
            name = re.sub(r"\W", "_", setting).upper()
            while name in self.settings or name in self.definitions.names or name in TEMPLATE_NAMES:
                name += "_"
            self.settings[name] = f"{cls}({', '.join(fields)})"
            return name
        raise EmitError(f"{where}: a {type(value).__name__} ({value!r}) cannot be written as source")

    def step(self, node: Node) -> Step:
        entry = LAYERS[node.op]
        kernel = self.definitions.definition(entry.kernel)
        arguments = entry.prepare(node)
        _check_signature(entry.kernel, arguments, node)
        rendered = {k: self.value(node, k, v) for k, v in arguments.items()}
        if takes_varargs(entry.kernel):
            parts = [f"{k}={v}" for k, v in rendered.items()]
        else:
            parts = list(rendered.values())
        return Step(node.name, kernel, list(node.inputs), parts, f"{node.name} = {entry.formula(node)}")


def _check_signature(kernel: Callable[..., Any], arguments: Mapping[str, Any], node: Node) -> None:
    """The prepared arguments are the kernel's parameters after its inputs, in order (what both callers assume)."""
    params = list(inspect.signature(kernel).parameters.values())
    if takes_varargs(kernel):
        expected = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    else:
        expected = [p.name for p in params[1:]]
    if list(arguments) != expected:
        raise EmitError(
            f"layer {node.name!r} ({node.op}): prepare gives {list(arguments)}, its kernel "
            f"{kernel.__name__} takes {expected} after its input"
        )


# --- the module -----------------------------------------------------------------------------------------------


def _docstring_text(text: str) -> str:
    """Text safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def environment() -> jinja2.Environment:
    from .render import templates

    env = templates(trim=True)
    env.filters["py"] = literal
    return env


def emit_numpy(graph: Graph, module: str, command: str | None = None) -> Emitted:
    """The graph as the source of a module named `module` (its weights in `<module>.npz`), and those weights.

    `command` is how to regenerate it, for the module's header (default: `nnspec compile <name>.json --emit numpy
    -o <module>.py`).
    """
    gathered = _Module(graph)
    steps = [gathered.step(node) for node in graph.nodes]  # first, so that every module-level name is known
    clash = set(gathered.settings) & gathered.definitions.names
    if clash:
        raise EmitError(f"a layer's setting and a copied definition would share the name {sorted(clash)[0]!r}")
    ranges = id_ranges(graph)
    inputs = [
        {
            "name": info.name,
            "var": gathered.variable(info.name),
            "shape": literal(tuple(info.shape)),
            "dtype": info.dtype or graph.dtype.name,
            "ids": ranges[info.name].size if info.name in ranges else None,
        }
        for info in graph.inputs
    ]
    lines = []
    for step in steps:
        call = [gathered.local[name] for name in step.inputs] + step.arguments
        target = gathered.variable(step.node)
        lines.append({"target": target, "call": f"{step.kernel}({', '.join(call)})", "comment": step.comment})
    outputs = [{"name": o.name, "var": gathered.local[o.name]} for o in graph.outputs]
    defs = gathered.definitions
    imports = sorted(s for s in defs.imports.values() if s.startswith("import "))
    imports += sorted(s for s in defs.imports.values() if s.startswith("from "))
    names = [i.name for i in graph.inputs]
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        example_args = "**arrays"
    else:
        example_args = names[0] if len(names) == 1 else ", ".join(f"{n}={n}" for n in names)
    source = (
        environment()
        .get_template(TEMPLATE)
        .render(
            name=graph.name,
            module=module,
            description=_docstring_text(textwrap.fill(graph.description or "", 100)),
            version=__version__,
            fingerprint=graph.fingerprint,
            command=_docstring_text(command or f"nnspec compile {graph.name}.json --emit numpy -o {module}.py"),
            npz=f"{module}.npz",
            dtype=graph.dtype.name,
            imports=imports,
            constants=defs.constants,
            definitions=list(defs.sources.values()),
            settings=gathered.settings,
            inputs=inputs,
            outputs=outputs,
            output_names=literal(tuple(o.name for o in graph.outputs)),
            steps=lines,
            example_args=example_args,
            fingerprint_key=FINGERPRINT_KEY,
        )
    )
    return Emitted(source, gathered.arrays, graph.fingerprint, tuple(o.name for o in graph.outputs))


# --- as a runner, checked, written -----------------------------------------------------------------------------


class ModuleRunner:
    """A generated module behind the harness's runner interface: feeds by input name -> outputs by name."""

    def __init__(self, module: types.ModuleType, outputs: Sequence[str], name: str = RUNNER_NAME) -> None:
        self.name = name
        self.module = module
        self.outputs = tuple(outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.module.run(**feeds)
        return dict(result) if isinstance(result, dict) else {self.outputs[0]: result}


def check_emitted(graph: Graph, emitted: Emitted, path: str | Path, *, seed: int = 0) -> Any:
    """Cross-check the generated module (loaded from memory as if at `path`) against the evaluator, on the inputs
    and within the derived bound that `nnspec check` uses; the harness's `Report`."""
    from .harness import Tolerance, cross_check
    from .inputs import DEFAULT_BATCH_SIZES, random_cases, random_origin
    from .runners import NumpyRunner

    candidate = ModuleRunner(emitted.load(path), emitted.outputs)
    cases = random_cases(graph, seed, DEFAULT_BATCH_SIZES)
    report = cross_check(graph, NumpyRunner(graph), [candidate], cases, Tolerance(), inputs=random_origin(seed, graph))
    report.notes.insert(0, f"candidate: the generated module {Path(path).name}")
    return report


def weights_file(path: str | Path) -> Path:
    """Where a generated module's arrays go: beside it, with the same stem (`model.py` -> `model.npz`)."""
    return Path(path).with_suffix(".npz")


def write_emitted(emitted: Emitted, path: str | Path) -> list[Path]:
    """Write the .npz, then the module, each atomically (a reader of the new module finds its arrays)."""
    from .files import atomic_write_all

    arrays = emitted.npz_arrays()

    def npz(f: io.BufferedIOBase) -> None:
        np.savez(f, **arrays)

    return atomic_write_all([(weights_file(path), npz), (Path(path), emitted.source.encode("utf-8"))])


def compile_numpy(
    graph: Graph, path: str | Path, *, command: str | None = None, check: bool = True
) -> tuple[Any, list[Path]]:
    """`nnspec compile --emit numpy`: the module for `graph` at `path` (a .py file) and its .npz beside it.

    With `check`, the module is first cross-checked against the evaluator (`check_emitted`); when that fails
    nothing is written. Returns the report (None unchecked) and the files written (none after a failed check).
    """
    path = Path(path)
    if path.suffix != ".py":
        raise NNSpecError(f"expected a module file name ending in .py, found {path.name!r}")
    if path.is_dir():
        raise NNSpecError(f"{path} is a folder; give a file name such as {path / (graph.name + '.py')}")
    if not path.parent.is_dir() and str(path.parent):
        raise NNSpecError(f"folder {path.parent} does not exist")
    emitted = emit_numpy(graph, path.stem, command)
    report = check_emitted(graph, emitted, path) if check else None
    if report is not None and not report.passed:
        return report, []
    return report, write_emitted(emitted, path)
