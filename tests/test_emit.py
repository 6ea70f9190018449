"""`nnspec compile --emit numpy`: a standalone module that runs nnspec's own kernels, bit for bit, with NumPy alone."""

from __future__ import annotations

import ast
import copy
import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnspec
from nnspec import emit
from nnspec.activations import REGISTRY, Choice
from nnspec.inputs import random_cases
from nnspec.layers import LAYERS
from nnspec.layers.base import takes_varargs

SPECS = Path(__file__).resolve().parent.parent / "specs"


def _every_spec() -> list[Any]:
    """Every registry example and every spec in specs/ (its data files, which have no "format", left out)."""
    found = [
        pytest.param(copy.deepcopy(example), None, id=f"{name}-{example['name']}")
        for name, entry in sorted(LAYERS.items())
        for example in entry.examples
    ]
    for path in sorted(SPECS.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "format" in data:
            found.append(pytest.param(data, SPECS, id=path.name))
    return found


EVERY_SPEC = _every_spec()


def _same(want: np.ndarray, got: np.ndarray) -> bool:
    """Bit for bit: dtype, shape and every byte (NaN included)."""
    return want.dtype == got.dtype and want.shape == got.shape and want.tobytes() == got.tobytes()


def _outputs(result: Any, graph: Any) -> dict[str, np.ndarray]:
    return result if isinstance(result, dict) else {graph.outputs[0].name: result}


def _module_name(param: Any) -> str:
    return "m_" + "".join(c if c.isalnum() else "_" for c in param.id)


# --- the registry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_has_a_kernel_a_generated_module_can_hold(name):
    """Its kernel is a module-level function whose source, and that of everything it reads, can be copied."""
    entry = LAYERS[name]
    kernel = entry.kernel
    assert inspect.isfunction(kernel) and kernel.__closure__ is None, f"{name}: the kernel is a closure"
    assert kernel.__qualname__ == kernel.__name__, f"{name}: the kernel is not defined at module level"
    assert callable(entry.prepare)
    if not takes_varargs(kernel):  # one input, the prepared arguments after it
        assert entry.spec.arity == (1, 1), name
    definitions = emit.Definitions()
    definitions.definition(kernel)
    assert kernel.__name__ in definitions.sources


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_emits_one_line_per_layer(name):
    """Each example's layers of this type are each one call of its kernel, with the formula as the comment."""
    entry = LAYERS[name]
    for example in entry.examples:
        graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(example)))
        source = emit.emit_numpy(graph, "m").source
        for node in graph.nodes:
            if node.op == name:
                line = f"{entry.kernel.__name__}("
                comment = f"  # {node.name} = {entry.formula(node)}"
                assert any(line in text and text.endswith(comment) for text in source.splitlines()), (node.name, name)


def test_a_kernel_with_a_closure_is_refused_by_name():
    def scaled(x):
        return x * factor

    factor = 2.0
    with pytest.raises(emit.EmitError, match="lambda or a closure"):
        emit.Definitions().definition(scaled)


# --- the module, in a fresh process with NumPy alone -----------------------------------------------------------

BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, sys

    ALLOWED = set(sys.argv[3].split(","))

    class NumpyAlone(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            root = name.split(".")[0]
            if root == "numpy" or root in sys.stdlib_module_names or root in ALLOWED:
                return None
            raise ImportError(f"only numpy and the standard library may be imported, not {name!r}")

    sys.meta_path.insert(0, NumpyAlone())
    import numpy as np

    folder, feeds_file = sys.argv[1], sys.argv[2]
    sys.path.insert(0, folder)
    out = {}
    with np.load(feeds_file, allow_pickle=False) as feeds:
        cases = {}
        for key in feeds.files:
            module, case, name = key.split("|")
            cases.setdefault((module, case), {})[name] = feeds[key]
    for (module, case), arrays in cases.items():
        result = importlib.import_module(module).run(**arrays)
        for name, value in (result.items() if isinstance(result, dict) else [("", result)]):
            out[f"{module}|{case}|{name}"] = value
    assert "nnspec" not in sys.modules
    outside = {m.split(".")[0] for m in sys.modules} - ALLOWED - set(sys.stdlib_module_names) - {"numpy"}
    # startup hooks of the environment (__main__, _distutils_hack, an editable install's finder) are no imports of
    # the modules'
    out["__outside__"] = np.array(sorted(m for m in outside if not m.startswith("_")))
    np.savez(folder + "/results.npz", **out)
    """
)


def test_every_spec_runs_in_a_fresh_process_with_numpy_alone_bit_for_bit(tmp_path):
    """Every example and spec, written as files, imported in a process where only NumPy and the standard library
    can be imported: its outputs are the evaluator's, bit for bit, on the check's kinds of batch."""
    feeds, expected, modules = {}, {}, []
    for param in EVERY_SPEC:
        data, base = param.values
        spec = nnspec.from_dict(copy.deepcopy(data), base)
        graph = nnspec.graph(spec)
        name = _module_name(param)
        emitted = emit.emit_numpy(graph, name)
        emit.write_emitted(emitted, tmp_path / f"{name}.py")
        modules.append(name)
        model = nnspec.to_numpy(spec)
        for k, case in enumerate(random_cases(graph, 1, [1, 5])):
            for input_name, array in case.feeds.items():
                feeds[f"{name}|{k}|{input_name}"] = array
            result = model.run(case.feeds)
            single = len(graph.outputs) == 1
            for output, value in result.items():
                expected[f"{name}|{k}|{'' if single else output}"] = value
    np.savez(tmp_path / "feeds.npz", **feeds)
    run = subprocess.run(
        [sys.executable, "-I", "-c", BLOCKER, str(tmp_path), str(tmp_path / "feeds.npz"), ",".join(modules)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(tmp_path / "results.npz", allow_pickle=False) as results:
        assert list(results["__outside__"]) == []
        got = {key: results[key] for key in results.files if key != "__outside__"}
    assert set(got) == set(expected)
    differ = [key for key in expected if not _same(expected[key], got[key])]
    assert not differ, differ[:5]
    assert not list(tmp_path.glob(".*.tmp"))  # every temporary file was renamed into place


@pytest.mark.parametrize(("data", "base"), EVERY_SPEC)
def test_the_module_imports_numpy_and_the_standard_library_only(data, base):
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(data), base))
    tree = ast.parse(emit.emit_numpy(graph, "m").source)
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"numpy"} | set(sys.stdlib_module_names), imported
    assert "nnspec" not in imported


@pytest.mark.parametrize(("data", "base"), EVERY_SPEC)
def test_each_layer_is_one_line_with_its_formula(data, base):
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(data), base))
    source = emit.emit_numpy(graph, "m").source
    body = source[source.index("def run(") : source.index("\n\n\n", source.index("def run("))]
    lines = [line.strip() for line in body.splitlines() if "  # " in line and " = " in line.split("  # ")[0]]
    assert len(lines) == len(graph.nodes)
    for line, node in zip(lines, graph.nodes, strict=True):
        assert line.endswith(f"  # {node.name} = {LAYERS[node.op].formula(node)}"), line


def test_the_weights_are_read_without_pickle_and_checked_against_the_spec(tmp_path, three_layer, party):
    graph = nnspec.graph(nnspec.from_dict(three_layer))
    source = emit.emit_numpy(graph, "three").source
    loads = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "np.load"
    ]
    assert loads and all(
        any(
            k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False for k in c.keywords
        )
        for c in loads
    )
    written = emit.write_emitted(emit.emit_numpy(graph, "three"), tmp_path / "three.py")
    assert written == [tmp_path / "three.npz", tmp_path / "three.py"]
    with np.load(tmp_path / "three.npz", allow_pickle=False) as npz:  # no object arrays: nothing to unpickle
        assert sorted(npz.files) == sorted([*emit.emit_numpy(graph, "three").arrays, emit.FINGERPRINT_KEY])
    # another spec's arrays beside the module are refused, not used
    emit.write_emitted(emit.emit_numpy(nnspec.graph(nnspec.from_dict(party)), "other"), tmp_path / "other.py")
    (tmp_path / "other.npz").replace(tmp_path / "three.npz")
    module = _import(tmp_path / "three.py")
    with pytest.raises(ValueError, match="another spec"):
        module.run(np.zeros((1, 3), np.float32))


def _import(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_importing_reads_no_file(tmp_path, three_layer):
    emit.write_emitted(emit.emit_numpy(nnspec.graph(nnspec.from_dict(three_layer)), "lazy"), tmp_path / "lazy.py")
    (tmp_path / "lazy.npz").unlink()
    module = _import(tmp_path / "lazy.py")  # loads lazily: no .npz needed to import
    assert module.OUTPUTS == ("l3",) and module.INPUTS == {"p": ((3,), "float32", None)}
    with pytest.raises(FileNotFoundError):
        module.run(np.zeros((1, 3), np.float32))


# --- calling it -----------------------------------------------------------------------------------------------


def _loaded(data: dict[str, Any], base: Path | None = None) -> tuple[Any, Any, Any]:
    spec = nnspec.from_dict(copy.deepcopy(data), base)
    graph = nnspec.graph(spec)
    return emit.emit_numpy(graph, "m").load("/nowhere/m.py"), nnspec.to_numpy(spec), graph


def test_one_input_one_output_as_to_numpy_calls_it(three_layer):
    module, model, _ = _loaded(three_layer)
    x = np.random.default_rng(0).standard_normal((6, 3))  # float64, cast to the spec's float32 on the way in
    assert _same(model(x), module.run(x))
    assert _same(model(p=x), module.run(p=x))
    assert _same(module.run(x), module.run(x.tolist()))


def test_several_inputs_and_outputs_by_name():
    module, model, graph = _loaded(json.loads((SPECS / "two_heads.json").read_text()), SPECS)
    rng = np.random.default_rng(1)
    feeds = {"features": rng.standard_normal((4, 4)), "context": rng.standard_normal((4, 2))}
    want, got = model(**feeds), module.run(**feeds)
    assert isinstance(got, dict) and list(got) == [o.name for o in graph.outputs]
    assert all(_same(want[name], got[name]) for name in want)
    with pytest.raises(ValueError, match="by keyword"):
        module.run(feeds["features"])
    with pytest.raises(ValueError, match="'context'"):
        module.run(features=feeds["features"])
    with pytest.raises(ValueError, match="found also 'mood'"):
        module.run(**feeds, mood=feeds["context"])
    with pytest.raises(ValueError, match=r"expected 4 samples"):
        module.run(features=feeds["features"], context=feeds["context"][:2])


def test_inputs_are_checked_with_clear_messages(three_layer):
    module, _, _ = _loaded(three_layer)
    with pytest.raises(ValueError, match=r"input 'p': expected shape \['N', 3\], found \[3\]"):
        module.run(np.zeros(3))
    with pytest.raises(ValueError, match="expected real numbers"):
        module.run(np.zeros((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="empty batch"):
        module.run(np.zeros((0, 3)))


def test_a_number_too_large_for_the_dtype_is_refused_as_the_evaluator_refuses_it(three_layer):
    """1e39 does not fit in float32: the evaluator refuses it (it would become inf); so does the module, naming
    the input and the index. An infinity given as such is a value, run like any other."""
    module, model, _ = _loaded(three_layer)
    x = np.zeros((2, 3))
    x[1, 2] = 1e39
    with pytest.raises(nnspec.NNSpecError, match=r"fit in float32, found 1e\+39 at index \[1, 2\]"):
        model(x)
    with pytest.raises(
        ValueError, match=r"input 'p': expected values that fit in float32, found 1e\+39 at index \[1, 2\]"
    ):
        module.run(x)
    x[1, 2] = np.inf
    assert _same(model(x), module.run(x))


def test_integer_ids_in_and_checked():
    module, model, _ = _loaded(json.loads((SPECS / "text_classifier.json").read_text()), SPECS)
    ids = np.random.default_rng(2).integers(0, 50, size=(3, 16))
    want = model(ids)
    assert all(_same(want[k], v) for k, v in module.run(ids).items())
    assert all(_same(want[k], v) for k, v in module.run(ids.astype(np.float64)).items())  # whole floats are ids
    with pytest.raises(ValueError, match=r"ids in \[0, 50\), found 50"):
        module.run(np.full((1, 16), 50))
    with pytest.raises(ValueError, match=r"ids in \[0, 50\), found -1"):
        module.run(np.full((1, 16), -1))
    with pytest.raises(ValueError, match="integer ids"):
        module.run(np.full((1, 16), 0.5))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_activation_with_its_parameters_changed_runs_bit_for_bit(dtype):
    """Each registered activation (parameters moved off their defaults) on a batch with its edges and extremes."""
    layers = []
    for name, entry in sorted(REGISTRY.items()):
        params = {k: (v.values[-1] if isinstance(v, Choice) else 0.37) for k, v in entry.params.items()}
        layers.append(
            {"type": "activation", "name": f"a_{name}", "inputs": ["x"], "activation": {"name": name, **params}}
        )
    data = {"format": "nnspec/1", "name": "acts", "dtype": dtype, "inputs": [{"name": "x", "shape": [9]}]}
    data |= {"layers": layers, "outputs": [layer["name"] for layer in layers]}
    module, model, _ = _loaded(data)
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal((50, 9)) * s for s in (0.1, 3, 60)])
    x = np.concatenate([x, [[0, 1, -1, 3, -3, 1e3, -1e3, 1e30, -1e30]]]).astype(dtype)
    want, got = model(x), module.run(x)
    differ = [name for name in want if not _same(want[name], got[name])]
    assert not differ


def test_the_module_is_the_same_every_time(three_layer):
    graph = nnspec.graph(nnspec.from_dict(three_layer))
    assert emit.emit_numpy(graph, "m").source == emit.emit_numpy(graph, "m").source


def test_names_that_are_no_python_names_or_clash_get_variables_of_their_own():
    data = {
        "format": "nnspec/1",
        "name": "odd",
        "inputs": [{"name": "in.put", "shape": [3]}],
        "layers": [
            {"type": "dense", "name": "dense", "units": 3, "weights": {"init": "ones"}, "activation": "softmax"},
            {"type": "dense", "name": "softmax", "units": 2, "weights": {"init": "ones"}, "activation": "softmax"},
            {"type": "activation", "name": "w", "activation": "relu"},
            {"type": "activation", "name": "class", "inputs": ["softmax"], "activation": "tanh"},
        ],
        "outputs": ["w", "class"],
    }
    module, model, _ = _loaded(data)
    x = np.random.default_rng(4).standard_normal((2, 3))
    want, got = model(x), module.run(**{"in.put": x})
    assert all(_same(want[k], got[k]) for k in want)


# --- the command ----------------------------------------------------------------------------------------------


def test_compile_emit_numpy_writes_the_module_and_its_npz(cli, write_spec, three_layer, tmp_path):
    out = tmp_path / "three.py"
    result = cli("compile", write_spec(three_layer), "--emit", "numpy", "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "three.npz" in result.stdout and "cross-check passed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "three.npz", "three.py"]  # no temporary left
    source = out.read_text()
    assert "--emit numpy -o" in source and nnspec.graph(nnspec.from_dict(three_layer)).fingerprint in source
    x = np.random.default_rng(5).standard_normal((7, 3)).astype(np.float32)
    assert _same(nnspec.to_numpy(nnspec.from_dict(three_layer))(x), _import(out).run(x))


def test_compile_emit_numpy_default_output_is_name_in_cwd(cli, write_spec, party, tmp_path, monkeypatch):
    spec = write_spec(party, "spec.json")
    work = tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("compile", spec, "--emit", "numpy")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in work.iterdir()) == ["party.npz", "party.py"]


def test_compile_writes_nothing_and_exits_1_when_the_module_disagrees(
    cli, write_spec, three_layer, tmp_path, monkeypatch
):
    """A kernel of the generated module changed (W by 1.01): the check fails, nothing is written."""
    original = emit.emit_numpy

    def faulty(graph, module, command=None):
        emitted = original(graph, module, command)
        assert "n = x @ weights_t" in emitted.source
        emitted.source = emitted.source.replace("n = x @ weights_t", "n = x @ (weights_t * 1.01)")
        return emitted

    monkeypatch.setattr(emit, "emit_numpy", faulty)
    spec = write_spec(three_layer)
    result = cli("compile", spec, "--emit", "numpy", "-o", tmp_path / "bad.py")
    assert result.exit_code == 1, result.output
    assert "not written" in result.stderr and "FAIL" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


def test_compile_emit_numpy_refusals_exit_2(cli, write_spec, party, tmp_path):
    spec = write_spec(party)
    bad = write_spec({**party, "layers": [{"type": "dense", "units": 0, "weights": [[1, 2]]}]}, "bad.json")
    assert cli("compile", bad, "--emit", "numpy", "-o", tmp_path / "m.py").exit_code == 2
    result = cli("compile", spec, "--emit", "numpy", "-o", tmp_path / "m.txt")
    assert result.exit_code == 2 and ".py" in result.stderr
    result = cli("compile", spec, "--emit", "numpy", "--external-data", "-o", tmp_path / "m.py")
    assert result.exit_code == 2 and "--external-data" in result.stderr
    assert cli("compile", spec, "--emit", "wasm").exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "model.json"]
