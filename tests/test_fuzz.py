"""Fuzzing: mutated specs and random bytes always end in exit 0 or a clean exit 2, never a traceback.

Mutants start from every layer type's examples (the registry) and the specs in specs/. Half are rough
(wrong kinds, missing and extra keys, huge and negative numbers, deep nesting, long and unicode strings,
NaN literals, keys written twice, stray quotes and brackets); half are gentle (one or two plausible values
in the fields the layer types own: windows, padding, strides, groups, axes, perms, shapes with -1, rates,
epsilons, parameters, `inputs` lists, input shapes and dtypes), so that many stay valid and also go
through `show` and `check`. Every command must end in 0, a clean 2, or (check) 1, within 5 s.

CI runs a fixed, derandomized sample; a longer run is
`NNSPEC_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py --hypothesis-profile=dev -q`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import PARTY, SPECS, THREE_LAYER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec.layers import LAYERS

EXAMPLES = int(os.environ.get("NNSPEC_FUZZ_EXAMPLES", "300"))
# A spec validates in milliseconds; 5 s per example is a hang, not a slow machine.
PER_EXAMPLE_SECONDS = 5.0
# `nnspec check` runs on the mutants that stay valid, when their values are this small (in elements, all
# layers together): the check's cost grows with them, and a large valid network is not a hang.
CHECK_MAX_ELEMENTS = 20_000

# The seeds: the conftest networks, every layer type's examples (the registry), and the specs in specs/
# (their weight files are copied next to each mutant, so that file-backed seeds start valid).
SEEDS: list[dict[str, Any]] = [
    PARTY,
    THREE_LAYER,
    *(example for layer_type in LAYERS.values() for example in layer_type.examples),
    *(json.loads(path.read_text()) for path in sorted(SPECS.glob("*.json"))),
]
SEED_FILES = [path for path in sorted(SPECS.iterdir()) if path.suffix in (".npy", ".npz")]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
special = st.sampled_from(
    [
        -1,
        0,
        10**12,
        1e308,
        -1e308,
        "",
        "x" * 5000,
        "ünïcødé/名前",
        [],
        {},
        [[[[[[[[1]]]]]]]],
        {"init": "uniform", "seed": -1},
        {"file": "../../etc/passwd"},
        {"file": "/etc/passwd.npy"},
        {"name": "leaky_relu", "alpha": "x"},
    ]
)

# --- values aimed at the layer types' own fields --------------------------------------------------------

# Each field has plausible values (a mutant often stays valid, so that show and check run on it: shapes,
# windows, groups, axes and parameters that almost fit) and hostile ones (wrong kinds, huge and negative
# numbers, strings that are nearly right). A mutant is either gentle (plausible values only) or rough.
wrong_kinds = st.sampled_from([2.0, 2.5, "3", True, False, None, [[1]], {}, "same", [1.0], [True], 1e308])
huge = st.sampled_from([-1, 0, 1000, 2**31, 2**63, -(2**63), 10**12, 10**30])
# Valid but extreme: a stride or dilation this large still fits a window (its one output starts at 0), and
# int64 and the byte strides of an array end near here.
extreme = st.sampled_from([2**31, 2**53 + 1, 2**60, 2**61, 2**62, 2**63 - 1, 2**63, 2**64])
small = st.integers(1, 4)
sizes = st.integers(-2, 9) | huge
per_axis = st.one_of(small, small, st.lists(small, min_size=1, max_size=2), extreme)
padding = st.one_of(
    st.sampled_from(["valid", "same"]),
    st.integers(0, 3),
    st.lists(st.integers(0, 3), min_size=1, max_size=4),
    st.lists(st.integers(0, 3) | extreme, min_size=1, max_size=2),
)
names_of_padding = st.sampled_from(["SAME", "same_lower", "full", "causal", "", "valid "])
permutations = st.integers(1, 5).flatmap(lambda rank: st.permutations(list(range(rank))))
reshape_sizes = st.lists(st.sampled_from([-1, 1, 2, 3, 4, 6, 8, 12]), min_size=1, max_size=4)
parameters = st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=6) | st.sampled_from(
    [
        {"init": "zeros"},
        {"init": "ones"},
        {"init": "constant", "value": -1.0},
        {"init": "constant", "value": 0},
        {"init": "constant", "value": 3.4e38},
        {"init": "uniform", "seed": 1, "low": -1, "high": 1},
        {"init": "uniform", "seed": 1, "low": 0, "high": 2},
        {"init": "normal", "seed": 2, "std": 0},
        {"init": "normal", "seed": 2, "mean": 1, "std": 0},
        {"init": "glorot_uniform", "seed": 3},
        {"init": "he_normal", "seed": 4},
        [-1.0, 0.0, 1.0],
        [0.0, 0.0, 0.0],
        [1e-45, 0.0],
        [3.4028235e38, 1.0, 1.0],
    ]
)
bad_parameters = st.sampled_from([[], [[1.0, 2.0], [3.0]], [[[1.0]]], {"init": "constant", "value": 3.5e38}])
activations = st.sampled_from(
    [
        "relu",
        "relu6",
        "hard_swish",
        "softmax",
        "log_softmax",
        "gelu",
        "tanh",
        "hardlim",
        {"name": "gelu", "approximate": "tanh"},
        {"name": "leaky_relu", "alpha": 3e38},
        {"name": "elu", "alpha": -1e30},
    ]
)
layer_types = st.sampled_from(sorted(LAYERS))

# Field name -> (plausible values, hostile values); a targeted mutation sets one layer's field, present or not.
LAYER_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "type": (layer_types, st.sampled_from(["conv3d", "max_pool3d", "Conv2D", "maxpool2d", ""])),
    "kernel_size": (per_axis, sizes | st.lists(sizes, max_size=5)),
    "pool_size": (per_axis, sizes | st.lists(sizes, max_size=5)),
    "strides": (per_axis, sizes | st.lists(sizes, max_size=5)),
    "dilation": (per_axis, sizes | st.lists(sizes, max_size=5)),
    "padding": (padding, names_of_padding | sizes | st.lists(sizes, max_size=6)),
    "groups": (small, sizes),
    "filters": (st.integers(1, 6), sizes),
    "units": (st.integers(1, 6), sizes),
    "ceil_mode": (st.booleans(), st.sampled_from([0, 1, 2, "true", None, []])),
    "count_include_pad": (st.booleans(), st.sampled_from([0, 1, 2, "true", None, []])),
    "axis": (st.integers(-4, 4), st.integers(-7, 7) | huge),
    "perm": (
        permutations,
        permutations.map(lambda p: [-1 - p[0], *p[1:]]) | st.lists(st.integers(-6, 6), max_size=6),
    ),
    "shape": (reshape_sizes, st.lists(st.sampled_from([-1, 0, -2, 2**40, 2**63, 10**30]), max_size=5)),
    "rate": (st.floats(0, 0.99), st.floats(-1, 2, allow_nan=False) | st.sampled_from([1, 0.9999999999, 5e-324])),
    "epsilon": (
        st.sampled_from([0, 0.0, 5e-324, 1e-45, 1e-12, 1e-5, 0.1, 1]) | st.floats(0, 10),
        st.sampled_from([-1e-5, 3.4028235e38, 3.4028236e38, 3.5e38, 1e308, "1e-5"]),
    ),
    "input_dim": (st.integers(1, 20), sizes),
    "output_dim": (st.integers(1, 5), sizes),
    "weights": (parameters, bad_parameters),
    "bias": (parameters, bad_parameters),
    "mean": (parameters, bad_parameters),
    "variance": (parameters, bad_parameters),
    "scale": (parameters, bad_parameters),
    "offset": (parameters, bad_parameters),
    "activation": (activations, st.sampled_from(["Relu", "nope", {"name": "relu6", "alpha": 1}])),
}
input_shapes = (
    st.lists(st.integers(1, 9), min_size=1, max_size=4),
    st.lists(st.sampled_from([0, -1, 1, 2, 10**6, 2**63]), max_size=4),
)
dtypes = (
    st.sampled_from(["int64", "int32", "float32", "float64"]),
    st.sampled_from(["int8", "uint8", "int16", "bool", "float16", "INT64", "", "int", "complex64"]),
)


def _value(draw: st.DrawFn, choices: tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]], gentle: bool) -> Any:
    """A plausible value, or (rough mutants) a hostile one or the wrong kind; a copy, so that later mutations do
    not change the strategies' own sample values."""
    plausible, hostile = choices
    pool = plausible if gentle else plausible | hostile | wrong_kinds
    return copy.deepcopy(draw(pool))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _entries(spec: Any, key: str) -> list[dict[str, Any]]:
    """The objects in the mutant's list `key` ("inputs" or "layers"), as far as it still has them."""
    entries = spec.get(key) if isinstance(spec, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _names(spec: Any) -> list[str]:
    """The names a layer's `inputs` may refer to: network inputs and layers."""
    found = _entries(spec, "inputs") + _entries(spec, "layers")
    return [e["name"] for e in found if isinstance(e.get("name"), str)]


def _retarget_field(draw: st.DrawFn, spec: Any, gentle: bool) -> None:
    """Set one field of one layer to a value aimed at it: mostly a field its type has, sometimes any."""
    layers = _entries(spec, "layers")
    if not layers:
        return
    layer = draw(st.sampled_from(layers))
    kind = layer.get("type")
    own = LAYERS[kind].spec.model_fields if isinstance(kind, str) and kind in LAYERS else {}
    relevant = sorted(set(own) & (set(LAYER_FIELDS) | {"inputs"}) - {"type"})
    if relevant and (gentle or draw(st.integers(0, 3))):
        field = draw(st.sampled_from(relevant))
    else:  # a field of another type (refused as unknown), or another type (its own fields then missing)
        field = draw(st.sampled_from([*LAYER_FIELDS, "inputs"]))
    if field == "inputs":  # merges read two or more, every other layer one: known names, unknown ones, itself
        known = st.sampled_from(_names(spec) or ["x"])
        unknown = st.sampled_from(["nope", "x" * 200, ""])
        lists = st.lists(known, min_size=1, max_size=4) if gentle else st.lists(known | unknown, max_size=5)
        layer["inputs"] = _value(draw, (lists, st.just([])), gentle)
    else:
        layer[field] = _value(draw, LAYER_FIELDS[field], gentle)


def _retarget_input(draw: st.DrawFn, spec: Any, gentle: bool) -> None:
    """Change a network input's per-sample shape or its dtype (integer ids, other strings)."""
    inputs = _entries(spec, "inputs")
    if inputs:
        target = draw(st.sampled_from(inputs))
        if draw(st.integers(0, 3)):
            target["shape"] = _value(draw, input_shapes, gentle)
        else:
            target["dtype"] = _value(draw, dtypes, gentle)


NUMBER = re.compile(r"(?<=[\[ ,:])-?\d+(\.\d+)?([eE][-+]?\d+)?(?=[\],}])")
KEY = re.compile(r'"[A-Za-z_]+": ')


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    spec = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    if draw(st.booleans()):  # gentle: one or two plausible values in the layers' and inputs' own fields
        for _ in range(draw(st.integers(1, 2))):
            retarget = draw(st.sampled_from([_retarget_field, _retarget_field, _retarget_field, _retarget_input]))
            retarget(draw, spec, gentle=True)
        return json.dumps(spec)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(spec) if p]
        if not paths:
            break
        action = draw(st.sampled_from(["replace", "special", "delete", "add", "field", "field", "input"]))
        if action == "field":
            _retarget_field(draw, spec, gentle=False)
            continue
        if action == "input":
            _retarget_input(draw, spec, gentle=False)
            continue
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        else:
            parent[path[-1]] = copy.deepcopy(draw(json_values if action == "replace" else special))
    text = json.dumps(spec)
    if draw(st.integers(0, 9)) == 0 and (numbers := list(NUMBER.finditer(text))):  # literals JSON does not allow
        match = draw(st.sampled_from(numbers))
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "01", "1.", ".5"]))
        text = text[: match.start()] + literal + text[match.end() :]
    if draw(st.integers(0, 19)) == 0:  # deep nesting
        text = "[" * 5000 + "]" * 5000
    if draw(st.integers(0, 9)) == 0 and (keys := list(KEY.finditer(text))):  # a key written twice: refused
        match = draw(st.sampled_from(keys))
        text = text[: match.start()] + match.group() + '"twice", ' + text[match.start() :]
    if draw(st.integers(0, 4)) == 0:  # byte-level damage around the tokens the pre-parse scan reads
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = (
                text[:at] + draw(st.sampled_from(['"', "\\", "[", "]", "{", "}", ":", ",", '\\"', "\\u00"])) + text[at:]
            )
    return text


def _assert_clean(result: Any, codes: tuple[int, ...] = (0, 2)) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, (result.exit_code, result.output)
    assert "Traceback (most recent call last)" not in result.output  # a spec may well name a key "Traceback"
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), result.stderr


def _small(path: Path) -> bool:
    """True when a valid spec's values (inputs and every layer's output, per sample) are few enough to check."""
    graph = nnspec.graph(nnspec.load(path))
    return sum(math.prod(t.shape) for t in (*graph.inputs, *graph.nodes)) <= CHECK_MAX_ELEMENTS


def run_mutant(cli: Any, folder: Path, text: str) -> list[tuple[str, Any]]:
    """Every command a mutant goes through, with its result: validate and compile always; show, and check
    when it is small, for a mutant that is still valid."""
    for path in SEED_FILES:
        shutil.copy(path, folder / path.name)
    path = folder / "spec.json"
    path.write_text(text)
    results = [("validate", cli("validate", path))]
    results.append(("compile", cli("compile", path, "-o", folder / "m.onnx", "--no-check")))
    if results[0][1].exit_code == 0:
        results.append(("show", cli("show", path)))
        if _small(path):
            results.append(("check", cli("check", path)))
    return results


@settings(
    max_examples=EXAMPLES,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=mutated_specs())
def test_mutated_specs_end_cleanly(cli, tmp_path_factory, text: str) -> None:
    """validate, compile (--no-check), show and check end in 0 or a clean 2 (check: 1 for a disagreement)."""
    folder = tmp_path_factory.mktemp("fuzz")
    results = run_mutant(cli, folder, text)
    for command, result in results:
        _assert_clean(result, (0, 1, 2) if command == "check" else (0, 2))
    compiled = dict(results)["compile"]
    assert (folder / "m.onnx").exists() == (compiled.exit_code == 0)


def _one_layer(name: str, shape: list[int], layer: dict[str, Any]) -> dict[str, Any]:
    return {"format": "nnspec/1", "name": name, "inputs": [{"name": "x", "shape": shape}], "layers": [layer]}


# What long fuzz runs found (tracebacks from strides, dilations and 'same' padding too large for int64, for an
# array's byte strides, or for memory; fixed in b3c2240), as minimal specs: each must end cleanly like any mutant.
FOUND = {
    # ONNX attributes are int64: onnx.helper.make_attribute raises "Value out of range" (compile, check)
    "conv1d-strides-2^63": _one_layer(
        "conv_strides",
        [1, 4],
        {"type": "conv1d", "name": "c", "filters": 1, "kernel_size": 2, "strides": 2**63, "weights": [[[1.0, 1.0]]]},
    ),
    "max_pool1d-strides-2^63": _one_layer(
        "pool_strides", [1, 4], {"type": "max_pool1d", "name": "p", "pool_size": 2, "strides": 2**63}
    ),
    # "same" pads of about dilation x (k - 1): ONNX shape inference overflows int64 in check_model (compile, check)
    "conv1d-same-dilation-2^62": _one_layer(
        "conv_same_dilation",
        [1, 4],
        {
            "type": "conv1d",
            "name": "c",
            "filters": 1,
            "kernel_size": 3,
            "dilation": 2**62,
            "padding": "same",
            "weights": [[[1.0, 1.0, 1.0]]],
        },
    ),
    # byte strides beyond int64 in Window.view's as_strided: OverflowError (check's bound, run's kernel)
    "conv1d-strides-2^61": _one_layer(
        "conv_strides",
        [1, 4],
        {"type": "conv1d", "name": "c", "filters": 1, "kernel_size": 2, "strides": 2**61, "weights": [[[1.0, 1.0]]]},
    ),
    "avg_pool1d-strides-2^61": _one_layer(
        "pool_strides", [1, 4], {"type": "avg_pool1d", "name": "p", "pool_size": 2, "strides": 2**61}
    ),
    # the padded input Window.view allocates is beyond any size: ValueError "array is too big" (check, run)
    "conv2d-same-dilation-2^31": _one_layer(
        "conv_same_dilation",
        [1, 3, 3],
        {
            "type": "conv2d",
            "name": "c",
            "filters": 1,
            "kernel_size": 2,
            "dilation": 2**31,
            "padding": "same",
            "weights": [[[[1.0, 1.0], [1.0, 1.0]]]],
        },
    ),
}


@pytest.mark.parametrize("spec", FOUND.values(), ids=FOUND)
def test_found_specs_end_cleanly(cli, tmp_path: Path, spec: dict[str, Any]) -> None:
    """The fuzzer's finds, kept: validate, compile, show and check end in 0, a clean 2, or (check) 1."""
    for command, result in run_mutant(cli, tmp_path, json.dumps(spec)):
        _assert_clean(result, (0, 1, 2) if command == "check" else (0, 2))


@settings(
    max_examples=EXAMPLES // 3,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=2000))
def test_random_bytes_end_cleanly(cli, tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "spec.json"
    path.write_bytes(data)
    _assert_clean(cli("validate", path))


# --- files from other people: weight files and input files, damaged byte by byte ---------------------


def _valid_file(kind: str, slot: str) -> bytes:
    """A valid file of `kind` for the party neuron's weights ([1, 2]) or its input p ([N, 2])."""
    import io

    import numpy as np

    array = np.array([[-4.0, 1.0]]) if slot == "weights" else np.array([[1.0, 3.0], [0.0, 0.0]])
    buffer = io.BytesIO()
    if kind == "npy":
        np.save(buffer, array)
    elif kind == "npz":
        np.savez_compressed(buffer, **{"w" if slot == "weights" else "p": array})
    elif kind == "csv":
        return b"a,b\n1,3\n0,0\n"
    else:
        return b'{"p": [[1, 3], [0, 0]]}'
    return buffer.getvalue()


@st.composite
def damaged(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few bytes flipped, inserted, deleted, or the file cut short."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@settings(
    max_examples=EXAMPLES // 2,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), kind=st.sampled_from(["npy", "npz", "csv", "json"]), slot=st.sampled_from(["weights", "input"]))
def test_damaged_weight_and_input_files_end_cleanly(cli, tmp_path_factory, data, kind: str, slot: str) -> None:
    """A weight file (.npy/.npz) or an input file (all four formats) damaged at random: exit 0 or a clean 2."""
    if slot == "weights" and kind in ("csv", "json"):
        kind = "npy" if kind == "csv" else "npz"
    folder = tmp_path_factory.mktemp("files")
    blob = data.draw(damaged(_valid_file(kind, slot)))
    spec = copy.deepcopy(PARTY)
    if slot == "weights":
        (folder / f"w.{kind}").write_bytes(blob)
        spec["layers"][0]["weights"] = {"file": f"w.{kind}", **({"key": "w"} if kind == "npz" else {})}
        (folder / "spec.json").write_text(json.dumps(spec))
        _assert_clean(cli("validate", folder / "spec.json"))
    else:
        (folder / f"x.{kind}").write_bytes(blob)
        (folder / "spec.json").write_text(json.dumps(spec))
        _assert_clean(cli("run", folder / "spec.json", "--input", folder / f"x.{kind}"))


@settings(
    max_examples=EXAMPLES // 4,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_damaged_onnx_models_end_cleanly(cli, tmp_path_factory, data) -> None:
    """`nnspec check --onnx` on a compiled model damaged at random: agreement (0), a disagreement (1)
    reported as such, or a clean refusal (2); never a traceback."""
    from nnspec.onnxio.export import to_bytes

    folder = tmp_path_factory.mktemp("models")
    (folder / "spec.json").write_text(json.dumps(THREE_LAYER))
    blob = data.draw(damaged(to_bytes(nnspec.to_onnx(nnspec.from_dict(THREE_LAYER)))))
    (folder / "model.onnx").write_bytes(blob)
    result = cli("check", folder / "spec.json", "--onnx", folder / "model.onnx")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), result.stderr


FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "onnx"
_IMPORT_SOURCES = ("torch_lenet.onnx", "torch_layernorm_gelu_opset14.onnx", "sklearn_mlp_regressor.onnx")


@settings(
    max_examples=EXAMPLES // 4,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), source=st.sampled_from(_IMPORT_SOURCES))
def test_damaged_models_import_cleanly(cli, tmp_path_factory, data, source: str) -> None:
    """`nnspec import` on exporters' models (and a compiled one) damaged at random: imported and checked (0),
    a check that fails (1), or a clean refusal (2) that writes nothing; never a traceback."""
    from nnspec.onnxio.export import to_bytes

    fixtures = Path(__file__).parent / "fixtures" / "onnx"
    original = (
        (fixtures / source).read_bytes()
        if data.draw(st.booleans())
        else to_bytes(nnspec.to_onnx(nnspec.from_dict(THREE_LAYER)))
    )
    folder = tmp_path_factory.mktemp("imports")
    (folder / "model.onnx").write_bytes(data.draw(damaged(original)))
    result = cli("import", folder / "model.onnx", "-o", folder / "spec.json")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code:
        assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"], "nothing written"
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), result.stderr


@settings(
    max_examples=EXAMPLES // 2,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), source=st.sampled_from(sorted(p.name for p in FIXTURE_MODELS.glob("*.onnx"))))
def test_models_with_odd_attributes_import_cleanly(tmp_path_factory, data, source: str) -> None:
    """Exporters' models with attributes changed at random (kernel sizes, strides, pads, axes, epsilons,
    auto_pad): lifted, or refused with a clean error naming the node; never an exception of another kind."""
    import onnx

    from nnspec.errors import NNSpecError
    from nnspec.onnxio.importer import Staged, lift_model

    model = onnx.load(FIXTURE_MODELS / source)
    nodes = [n for n in model.graph.node if n.attribute]
    for _ in range(data.draw(st.integers(1, 3))):
        attr = data.draw(st.sampled_from([a for n in nodes for a in n.attribute]))
        if attr.type == onnx.AttributeProto.INT:
            attr.i = data.draw(st.integers(-3, 6))
        elif attr.type == onnx.AttributeProto.INTS:
            del attr.ints[:]
            attr.ints.extend(data.draw(st.lists(st.integers(-2, 5), max_size=5)))
        elif attr.type == onnx.AttributeProto.FLOAT:
            attr.f = data.draw(st.sampled_from([0.0, -0.0, -1.0, 0.5, 1e30, float("nan"), float("inf")]))
        elif attr.type == onnx.AttributeProto.STRING:
            attr.s = data.draw(st.sampled_from([b"SAME_LOWER", b"SAME_UPPER", b"VALID", b"NOTSET", b"tanh", b"x"]))
    folder = tmp_path_factory.mktemp("odd")
    (folder / "m.onnx").write_bytes(model.SerializeToString())
    try:
        Staged(lift_model(folder / "m.onnx"), folder / "s.json").discard()
    except NNSpecError:
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]
