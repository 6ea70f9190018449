"""The spec stage through the Python API: every bad spec raises a SpecError that names the place.

Each case starts from the valid party neuron (tests/conftest.py), breaks one thing, and checks the
error's class, its path (`layers[1].weights`), and that its message says what was expected and what
was found. Cases with files (weights, paths, pickles) build them under tmp_path.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import math
import os
import pickle
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PARTY  # the party neuron, shared by every stage

import nnspec
from nnspec import activations
from nnspec.errors import LimitError, SpecError, SpecErrors, WeightError
from nnspec.fields import Init
from nnspec.layers import LAYERS

# Two layers, so that a shape error can point at the previous layer: `hidden` has 5 outputs.
ALL_TYPES = ", ".join(sorted(LAYERS))  # an unknown type's message lists every registered one

TWO_LAYERS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "two",
    "inputs": [{"name": "p", "shape": [3]}],
    "layers": [
        {"type": "dense", "name": "hidden", "units": 5, "activation": "relu", "weights": {"init": "ones"}},
        {"type": "dense", "name": "out", "units": 2, "weights": {"init": "ones"}},
    ],
}

Edit = Callable[[dict[str, Any]], object]


def refused(data: dict[str, Any], base_dir: Path | None = None) -> SpecError:
    """The one SpecError that `nnspec.from_dict` raises for `data`."""
    with pytest.raises(SpecError) as info:
        nnspec.from_dict(data, base_dir)
    return info.value


def assert_names_place(exc: SpecError, path: str, *fragments: str) -> None:
    """One problem, at `path`, in the form `<path>: expected ..., found ...`, containing `fragments`."""
    problems = exc.errors if isinstance(exc, SpecErrors) else [exc]
    assert len(problems) == 1, str(exc)
    assert exc.path == path, str(exc)
    text = str(exc)
    assert text.startswith(f"{path}: expected "), text
    assert ", found " in text or "; found " in text, text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"


def layer(**changes: Any) -> Edit:
    """Change keys of the first layer; a value of None removes the key."""

    def edit(spec: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                spec["layers"][0].pop(key, None)
            else:
                spec["layers"][0][key] = value

    return edit


def top(**changes: Any) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                spec.pop(key, None)
            else:
                spec[key] = value

    return edit


def first_input(**changes: Any) -> Edit:
    return lambda spec: spec["inputs"][0].update(changes)


def then(*edits: Edit) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        for e in edits:
            e(spec)

    return edit


def add_layer(**fields: Any) -> Edit:
    return lambda spec: spec["layers"].append(fields)


# --- structure: format, types, keys, sizes, parameter types -----------------------------------

STRUCTURE_CASES = [
    pytest.param(top(format="nnspec/0"), "format", ["'nnspec/1'", "'nnspec/0'"], id="unknown-format"),
    pytest.param(
        top(format="nnspec/2"), "format", ["'nnspec/2'", "newer version", "upgrade nnspec"], id="newer-format"
    ),
    pytest.param(top(format=1), "format", ["'nnspec/1'", "found 1"], id="format-not-a-string"),
    pytest.param(top(format=None), "format", ["'format'", "required", "found none"], id="format-missing"),
    pytest.param(top(name=None), "name", ["'name'", "found none"], id="name-missing"),
    pytest.param(top(name="my model"), "name", ["'my model'"], id="name-with-space"),
    pytest.param(top(dtype="float16"), "dtype", ["'float32' or 'float64'", "'float16'"], id="unknown-dtype"),
    pytest.param(top(description=3), "description", ["a string", "found 3"], id="description-not-a-string"),
    pytest.param(
        layer(type="dens"),
        "layers[0].type",
        ["did you mean 'dense'", ALL_TYPES, "'dens'"],
        id="unknown-layer-type",
    ),
    pytest.param(layer(type=None), "layers[0].type", ["'type'", ALL_TYPES, "found none"], id="layer-type-missing"),
    pytest.param(layer(type=7), "layers[0].type", [ALL_TYPES, "found a number"], id="layer-type-not-a-string"),
    pytest.param(
        add_layer(type="lstm"),
        "layers[1].type",
        ["'lstm'", ALL_TYPES],
        id="unknown-layer-type-second-layer",
    ),
    pytest.param(
        lambda s: s["layers"].append(3), "layers[1]", ["a layer object", "found a number"], id="layer-not-an-object"
    ),
    pytest.param(
        layer(activation="sigmoud"),
        "layers[0].activation",
        ["did you mean 'sigmoid'", "'sigmoud'", "relu, relu6, satlin"],
        id="unknown-activation",
    ),
    pytest.param(
        layer(activation="tansg"),
        "layers[0].activation",
        ["did you mean 'tansig'", "aliases:"],
        id="unknown-activation-close-to-alias",
    ),
    pytest.param(
        layer(activation="ReLU"), "layers[0].activation", ["did you mean 'relu'"], id="unknown-activation-wrong-case"
    ),
    pytest.param(
        layer(activation={"name": "leaky_rleu", "alpha": 0.1}),
        "layers[0].activation.name",
        ["did you mean 'leaky_relu'"],
        id="unknown-activation-in-object",
    ),
    pytest.param(
        layer(activation={"alpha": 0.1}),
        "layers[0].activation",
        ['"name"', "found keys ['alpha']"],
        id="activation-object-without-name",
    ),
    pytest.param(
        layer(activation=3),
        "layers[0].activation",
        ["activation name or object", "found a number"],
        id="activation-a-number",
    ),
    pytest.param(
        layer(activation=None, activaton="relu"),
        "layers[0].activaton",
        ["did you mean 'activation'", "'activaton'", "units, activation, weights"],
        id="unknown-key-activaton",
    ),
    pytest.param(top(ouputs=["decide"]), "ouputs", ["did you mean 'outputs'", "'ouputs'"], id="unknown-key-top-level"),
    pytest.param(
        first_input(shap=[2]), "inputs[0].shap", ["did you mean 'shape'", "name, shape"], id="unknown-key-in-input"
    ),
    pytest.param(layer(unit=1), "layers[0].unit", ["did you mean 'units'"], id="unknown-key-in-layer"),
    pytest.param(
        add_layer(type="activation", activaton="relu"),
        "layers[1].activaton",
        ["did you mean 'activation'", "type, name, inputs, activation"],
        id="unknown-key-in-activation-layer",
    ),
    pytest.param(
        layer(activation={"name": "leaky_relu", "alpah": 0.1}),
        "layers[0].activation.alpah",
        ["did you mean 'alpha'", "leaky_relu"],
        id="unknown-key-in-activation-object",
    ),
    pytest.param(
        layer(activation={"name": "relu", "alpha": 0.1}),
        "layers[0].activation.alpha",
        ["relu takes none", "'alpha'"],
        id="parameter-for-activation-without-any",
    ),
    pytest.param(
        layer(weights={"file": "w.npz", "kye": "W"}),
        "layers[0].weights.kye",
        ["did you mean 'key'", "file, key"],
        id="unknown-key-in-file-ref",
    ),
    pytest.param(
        layer(weights={"init": "uniform", "seed": 1, "hihg": 1.0}),
        "layers[0].weights.hihg",
        ["did you mean 'high'", "init, seed, low, high"],
        id="unknown-key-in-init",
    ),
    pytest.param(
        layer(weights={"init": "zeros", "seed": 1}),
        "layers[0].weights.seed",
        ["'seed'", "init"],
        id="seed-for-unseeded-init",
    ),
    pytest.param(top(layers=[]), "layers", ["at least 1", "found 0"], id="empty-layers"),
    pytest.param(top(inputs=[]), "inputs", ["at least 1", "found 0"], id="empty-inputs"),
    pytest.param(top(layers={}), "layers", ["a list", "found an object"], id="layers-not-a-list"),
    pytest.param(first_input(shape=[0]), "inputs[0].shape[0]", [">= 1", "found 0"], id="input-shape-zero"),
    pytest.param(first_input(shape=[2, -3]), "inputs[0].shape[1]", [">= 1", "found -3"], id="input-shape-negative"),
    pytest.param(first_input(shape=[]), "inputs[0].shape", ["at least 1", "found 0"], id="input-shape-empty"),
    pytest.param(first_input(shape="2"), "inputs[0].shape", ["a list", "found '2'"], id="input-shape-a-string"),
    pytest.param(first_input(shape=[2.0]), "inputs[0].shape[0]", ["an integer", "found 2.0"], id="input-shape-float"),
    pytest.param(layer(units=0), "layers[0].units", [">= 1", "found 0"], id="units-zero"),
    pytest.param(layer(units=-1), "layers[0].units", [">= 1", "found -1"], id="units-negative"),
    pytest.param(layer(units="3"), "layers[0].units", ["an integer", "found '3'"], id="units-a-string"),
    pytest.param(layer(units=3.5), "layers[0].units", ["an integer", "found 3.5"], id="units-fractional"),
    pytest.param(layer(units=True), "layers[0].units", ["an integer", "found true"], id="units-boolean"),
    pytest.param(layer(units=[1]), "layers[0].units", ["an integer", "found a list"], id="units-a-list"),
    pytest.param(
        layer(activation={"name": "leaky_relu", "alpha": "x"}),
        "layers[0].activation.alpha",
        ["a number", "found a string"],
        id="alpha-a-string",
    ),
    pytest.param(
        layer(activation={"name": "elu", "alpha": True}),
        "layers[0].activation.alpha",
        ["a number", "found a boolean"],
        id="alpha-boolean",
    ),
    pytest.param(
        layer(activation={"name": "leaky_relu", "alpha": math.nan}),
        "layers[0].activation.alpha",
        ["finite", "nan"],
        id="alpha-nan",
    ),
    pytest.param(
        layer(activation={"name": "gelu", "approximate": "fast"}),
        "layers[0].activation.approximate",
        ["'none', 'tanh'", "'fast'"],
        id="gelu-approximate-unknown",
    ),
    pytest.param(layer(inputs="p"), "layers[0].inputs", ["a list", "found 'p'"], id="layer-inputs-a-string"),
    pytest.param(top(outputs=[]), "outputs", ["at least 1", "found 0"], id="outputs-empty"),
    pytest.param(layer(weights=None), "layers[0].weights", ["'weights'", "found none"], id="weights-missing"),
    pytest.param(
        layer(weights="w.npy"), "layers[0].weights", ['{"file": ...}', "found a string"], id="weights-a-bare-path"
    ),
    pytest.param(
        layer(weights={"path": "w.npy"}),
        "layers[0].weights",
        ['{"file": ...}', "['path']"],
        id="weights-object-of-unknown-kind",
    ),
    pytest.param(
        layer(weights={"file": "w.csv"}),
        "layers[0].weights.file",
        [".npy or .npz", "'w.csv'"],
        id="weights-file-not-npy",
    ),
    pytest.param(
        layer(weights={"file": "w.npz"}),
        "layers[0].weights.key",
        ["'key'", "several arrays", "found none"],
        id="npz-without-key",
    ),
    pytest.param(
        layer(weights={"file": "w.npy", "key": "W"}),
        "layers[0].weights.key",
        ['no "key"', "found 'W'"],
        id="npy-with-key",
    ),
    pytest.param(
        layer(weights={"init": "glorot"}),
        "layers[0].weights.init",
        ["did you mean 'glorot_uniform'", "he_normal"],
        id="unknown-initializer",
    ),
    pytest.param(
        layer(weights={"init": "uniform", "seed": -1}),
        "layers[0].weights.seed",
        ["integer seed", "found -1"],
        id="seed-negative",
    ),
    pytest.param(
        layer(weights={"init": "normal", "seed": "1"}),
        "layers[0].weights.seed",
        ["integer seed", "found '1'"],
        id="seed-a-string",
    ),
    pytest.param(
        layer(weights={"init": "normal", "seed": 1.5}),
        "layers[0].weights.seed",
        ["integer seed", "found 1.5"],
        id="seed-fractional",
    ),
    pytest.param(
        layer(weights={"init": "uniform", "seed": 1, "low": 1, "high": 1}),
        "layers[0].weights.high",
        ["low < high", "low=1.0"],
        id="uniform-empty-range",
    ),
    pytest.param(
        layer(weights={"init": "normal", "seed": 1, "std": -1}),
        "layers[0].weights.std",
        ["std >= 0", "found -1"],
        id="normal-negative-std",
    ),
    pytest.param(
        layer(weights={"init": "constant"}),
        "layers[0].weights.value",
        ["'value'", "found none"],
        id="constant-without-value",
    ),
]


@pytest.mark.parametrize(("edit", "path", "fragments"), STRUCTURE_CASES)
def test_bad_structure_is_refused_naming_the_place(edit: Edit, path: str, fragments: list[str]) -> None:
    spec = copy.deepcopy(PARTY)
    edit(spec)
    exc = refused(spec)
    assert_names_place(exc, path, *fragments)


@pytest.mark.parametrize("kind", [k for k, params in Init.KINDS.items() if "seed" in params])
def test_seeded_initializer_without_seed_is_refused(kind: str) -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = {"init": kind}
    exc = refused(spec)
    assert_names_place(exc, "layers[0].weights.seed", "'seed'", kind, "found none")


def test_unknown_activation_lists_every_valid_name() -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["activation"] = "no_such_function"
    text = str(refused(spec))
    for name in activations.ALIASES:  # canonical names and aliases alike
        assert name in text, name


def test_typo_of_a_key_is_refused_not_ignored() -> None:
    """`activaton` must not silently leave the layer linear."""
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["activaton"] = "sigmoid"
    exc = refused(spec)
    assert exc.path == "layers[0].activaton"


def test_several_problems_are_reported_together() -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["units"] = 0
    spec["inputs"][0]["shap"] = [2]
    exc = refused(spec)
    assert isinstance(exc, SpecErrors)
    assert sorted(e.path for e in exc.errors) == ["inputs[0].shap", "layers[0].units"]
    assert "2 problems" in str(exc)


def test_spec_that_is_not_an_object_is_refused(write_spec) -> None:
    path = write_spec("[1, 2]")
    with pytest.raises(SpecError, match="expected a JSON object at the top level, found a list"):
        nnspec.load(path)


# --- shapes, numbers, names, references (the graph stage) --------------------------------------

GRAPH_CASES = [
    pytest.param(
        layer(weights=[[1, 2, 3]]),
        "layers[0].weights",
        ["expected shape [1, 2]", "found [1, 3]", "input 'p' has 2 outputs"],
        WeightError,
        id="weights-wrong-shape",
    ),
    pytest.param(
        layer(weights=[[1], [2]]),
        "layers[0].weights",
        ["expected shape [1, 2]", "found [2, 1]"],
        WeightError,
        id="weights-transposed",
    ),
    pytest.param(
        layer(weights=[-4, 1]),
        "layers[0].weights",
        ["expected shape [1, 2]", "found [2]"],
        WeightError,
        id="weights-missing-a-dimension",
    ),
    pytest.param(
        layer(bias=[1, 2]),
        "layers[0].bias",
        ["expected shape [1]", "found [2]", "units = 1"],
        WeightError,
        id="bias-wrong-shape",
    ),
    pytest.param(
        layer(bias=[[2]]),
        "layers[0].bias",
        ["expected shape [1]", "found [1, 1]"],
        WeightError,
        id="bias-extra-dimension",
    ),
    pytest.param(
        layer(weights=[[1, 2], [3]]),
        "layers[0].weights",
        ["rectangular", "unequal length"],
        SpecError,
        id="weights-ragged",
    ),
    pytest.param(
        layer(weights=[["a", "b"]]), "layers[0].weights", ["numbers", "found strings"], SpecError, id="weights-strings"
    ),
    pytest.param(
        layer(weights=[[True, False]]),
        "layers[0].weights",
        ["numbers", "found booleans"],
        SpecError,
        id="weights-booleans",
    ),
    pytest.param(layer(weights=[[1, None]]), "layers[0].weights", ["numbers", "null"], SpecError, id="weights-null"),
    pytest.param(
        layer(weights=[[math.nan, 1]]),
        "layers[0].weights",
        ["finite", "found nan at index [0, 0]"],
        SpecError,
        id="weights-nan",
    ),
    pytest.param(
        layer(bias=[-math.inf]), "layers[0].bias", ["finite", "found -inf at index [0]"], SpecError, id="bias-infinite"
    ),
    pytest.param(
        layer(weights=[[1, 1e39]]),
        "layers[0].weights",
        ["finite", "1e+39 at index [0, 1]", "float32"],
        WeightError,
        id="weights-overflow-float32",
    ),
    pytest.param(
        layer(bias={"init": "constant", "value": -1e39}),
        "layers[0].bias",
        ["finite", "-1e+39", "float32"],
        WeightError,
        id="constant-init-overflow-float32",
    ),
    pytest.param(
        layer(weights={"init": "constant", "value": math.inf}),
        "layers[0].weights.value",
        ["finite", "inf"],
        SpecError,
        id="constant-init-infinite",
    ),
    pytest.param(
        layer(name="p"),
        "layers[0].name",
        ["unique name", "'p'", "inputs[0]"],
        SpecError,
        id="duplicate-input-and-layer-name",
    ),
    pytest.param(
        add_layer(type="activation", name="decide", activation="relu"),
        "layers[1].name",
        ["unique name", "'decide'", "layers[0]"],
        SpecError,
        id="duplicate-layer-names",
    ),
    pytest.param(
        lambda s: s["inputs"].append({"name": "p", "shape": [1]}),
        "inputs[1].name",
        ["unique name", "'p'", "inputs[0]"],
        SpecError,
        id="duplicate-input-names",
    ),
    pytest.param(
        layer(inputs=["q"]),
        "layers[0].inputs[0]",
        ["found unknown 'q'", "input or an earlier layer (p)"],
        SpecError,
        id="layer-reads-unknown-name",
    ),
    pytest.param(
        layer(inputs=["P"]), "layers[0].inputs[0]", ["did you mean 'p'"], SpecError, id="layer-reads-misspelt-input"
    ),
    pytest.param(
        layer(inputs=["p", "p"]),
        "layers[0].inputs",
        ["expected 1 source", "found 2"],
        SpecError,
        id="dense-reads-two-sources",
    ),
    pytest.param(
        then(layer(inputs=["later"]), add_layer(type="activation", name="later", activation="relu")),
        "layers[0].inputs[0]",
        ["'later'", "layers[1]", "runs later"],
        SpecError,
        id="layer-reads-a-later-layer",
    ),
    pytest.param(
        then(add_layer(type="activation", name="act", activation="relu", inputs=["act"])),
        "layers[1].inputs[0]",
        ["'act'", "this layer itself"],
        SpecError,
        id="layer-reads-itself",
    ),
    pytest.param(
        top(outputs=["decid"]),
        "outputs[0]",
        ["did you mean 'decide'", "found unknown layer 'decid'"],
        SpecError,
        id="output-unknown",
    ),
    pytest.param(top(outputs=["p"]), "outputs[0]", ["'p'", "network input"], SpecError, id="output-names-an-input"),
    pytest.param(
        top(outputs=["decide", "decide"]),
        "outputs[1]",
        ["once", "'decide' again", "outputs[0]"],
        SpecError,
        id="output-listed-twice",
    ),
]


@pytest.mark.parametrize(("edit", "path", "fragments", "kind"), GRAPH_CASES)
def test_bad_network_is_refused_naming_the_place(
    edit: Edit, path: str, fragments: list[str], kind: type[SpecError]
) -> None:
    spec = copy.deepcopy(PARTY)
    edit(spec)
    exc = refused(spec)
    assert isinstance(exc, kind), type(exc)
    assert_names_place(exc, path, *fragments)


def test_shape_error_says_the_previous_layer_has_how_many_outputs() -> None:
    spec = copy.deepcopy(TWO_LAYERS)
    spec["layers"][1]["weights"] = [[1.0] * 4, [1.0] * 4]
    exc = refused(spec)
    assert isinstance(exc, WeightError)
    assert_names_place(
        exc, "layers[1].weights", "expected shape [2, 5]", "found [2, 4]", "layer 'hidden' has 5 outputs"
    )


def test_bias_error_on_second_layer_names_its_units() -> None:
    spec = copy.deepcopy(TWO_LAYERS)
    spec["layers"][1]["bias"] = [0.0] * 5
    exc = refused(spec)
    assert_names_place(exc, "layers[1].bias", "expected shape [2]", "found [5]", "units = 2")


def test_unnamed_layer_shape_error_names_it_by_position() -> None:
    spec = copy.deepcopy(TWO_LAYERS)
    del spec["layers"][0]["name"]
    spec["layers"][1]["weights"] = [[1.0] * 3] * 2
    exc = refused(spec)
    assert_names_place(exc, "layers[1].weights", "expected shape [2, 5]", "found [2, 3]", "has 5 outputs")


def test_float32_overflow_is_allowed_in_a_float64_spec() -> None:
    """1e39 is refused for float32 because it overflows, not because it is large."""
    spec = copy.deepcopy(PARTY)
    spec["dtype"] = "float64"
    spec["layers"][0]["weights"] = [[1e39, 1]]
    assert nnspec.to_numpy(nnspec.from_dict(spec))(np.array([[1.0, 0.0]])).item() == 1e39 + 2


# --- JSON text: malformed documents, NaN and Infinity literals ---------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            '{\n  "format": "nnspec/1",\n  "name": "x",,\n  "inputs": []\n}',
            ["line 3, column 15", "found ','"],
            id="stray-comma",
        ),
        pytest.param(
            '{\n  "format": "nnspec/1"\n  "name": "x"\n}',
            ["line 3, column 3", 'found \'"name": "x"\''],
            id="missing-comma",
        ),
        pytest.param('{"format": "nnspec/1", "name": "x"', ["line 1, column 35", "end of the file"], id="truncated"),
        pytest.param("", ["found an empty file"], id="empty-file"),
        pytest.param(
            '{"format": "nnspec/1",\n "layers": [{"weights": [[NaN, 1]]}]}',
            ["line 2, column 27", "finite number", "found NaN"],
            id="nan-literal",
        ),
        pytest.param(
            '{"format": "nnspec/1",\n "layers": [{"bias": [Infinity]}]}',
            ["line 2, column 23", "found Infinity"],
            id="infinity-literal",
        ),
        pytest.param(
            '{"format": "nnspec/1",\n "layers": [{"bias": [-Infinity]}]}',
            ["line 2", "found -Infinity"],
            id="negative-infinity-literal",
        ),
        pytest.param(
            '{"format": "nnspec/1",\n "layers": [{"bias": [1e999]}]}',
            ["line 2, column 23", "found '1e999'", "too large"],
            id="number-overflows-double",
        ),
    ],
)
def test_malformed_json_names_line_and_column(write_spec, text: str, fragments: list[str]) -> None:
    path = write_spec(text)
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    message = str(info.value)
    assert info.value.source == str(path)
    assert message.startswith(f"{path}: malformed JSON"), message
    assert "expected" in message and "found" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_spec_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        nnspec.load(tmp_path / "absent.json")


def test_folder_given_as_spec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="expected a spec file, found a folder"):
        nnspec.load(tmp_path)


# --- weight files: missing, misnamed, outside the folder, pickled, damaged ---------------------


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """The spec's folder, one level below tmp_path so that `..` has somewhere to go."""
    folder = tmp_path / "spec"
    folder.mkdir()
    return folder


def load_with_weights(folder: Path, weights: Any, bias: Any = (2,)) -> nnspec.Spec:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = weights
    spec["layers"][0]["bias"] = list(bias) if isinstance(bias, tuple) else bias
    path = folder / "model.json"
    path.write_text(json.dumps(spec))
    return nnspec.load(path)


def refused_weights(folder: Path, weights: Any, bias: Any = (2,)) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_with_weights(folder, weights, bias)
    exc = info.value
    assert exc.source == str(folder / "model.json")
    assert str(exc).startswith(f"{exc.source}: {exc.path}: expected "), str(exc)
    return exc


def test_weights_from_files_load(spec_dir: Path) -> None:
    """The control for the cases below: the same spec with good files is accepted."""
    np.save(spec_dir / "w.npy", np.array([[-4.0, 1.0]]))
    np.savez(spec_dir / "all.npz", W1=np.array([[-4.0, 1.0]]), b1=np.array([2.0]))
    (spec_dir / "sub").mkdir()
    np.save(spec_dir / "sub" / "w.npy", np.array([[-4.0, 1.0]]))
    for weights, bias in [
        ({"file": "w.npy"}, (2,)),
        ({"file": "all.npz", "key": "W1"}, {"file": "all.npz", "key": "b1"}),
        ({"file": "sub/../w.npy"}, (2,)),
        ({"file": "./sub/w.npy"}, (2,)),
    ]:
        model = nnspec.to_numpy(load_with_weights(spec_dir, weights, bias))
        assert model(np.array([[1.0, 3.0]])).tolist() == [[1.0]]


def test_missing_weight_file(spec_dir: Path) -> None:
    exc = refused_weights(spec_dir, {"file": "absent.npy"})
    assert isinstance(exc, WeightError)
    assert_names_place(
        exc_without_source(exc), "layers[0].weights.file", "'absent.npy'", "found no such file", str(spec_dir.resolve())
    )


def test_weight_file_that_is_a_folder(spec_dir: Path) -> None:
    (spec_dir / "w.npy").mkdir()
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert exc.path == "layers[0].weights.file" and "found a folder" in str(exc)


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        pytest.param("W", "did you mean 'W1'", id="npz-key-prefix"),
        pytest.param("w1", "did you mean 'W1'", id="npz-key-wrong-case"),
        pytest.param("weights", "W1, b1", id="npz-key-unrelated"),
    ],
)
def test_npz_without_the_named_array(spec_dir: Path, key: str, hint: str) -> None:
    np.savez(spec_dir / "all.npz", W1=np.ones((1, 2)), b1=np.ones(1))
    exc = refused_weights(spec_dir, {"file": "all.npz", "key": key})
    assert isinstance(exc, WeightError)
    assert_names_place(
        exc_without_source(exc), "layers[0].weights.key", f"found unknown array {key!r}", hint, "'all.npz'"
    )


def test_weight_file_with_wrong_shape(spec_dir: Path) -> None:
    np.save(spec_dir / "w.npy", np.ones((2, 2)))
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert_names_place(
        exc_without_source(exc), "layers[0].weights", "expected shape [1, 2]", "found [2, 2]", "input 'p' has 2 outputs"
    )


def test_weight_file_of_strings(spec_dir: Path) -> None:
    np.save(spec_dir / "w.npy", np.array([["a", "b"]]))
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert_names_place(exc_without_source(exc), "layers[0].weights", "real numbers", "<U1", "'w.npy'")


@pytest.mark.parametrize("container", ["npy", "npz"])
def test_nan_inside_a_weight_file(spec_dir: Path, container: str) -> None:
    values = np.array([[-4.0, np.nan]])
    if container == "npy":
        np.save(spec_dir / "w.npy", values)
        ref = {"file": "w.npy"}
    else:
        np.savez(spec_dir / "w.npz", W=values)
        ref = {"file": "w.npz", "key": "W"}
    exc = refused_weights(spec_dir, ref)
    assert isinstance(exc, WeightError)
    assert_names_place(exc_without_source(exc), "layers[0].weights", "finite", "found nan at index [0, 1]", "w.np")


def test_float64_file_overflowing_a_float32_spec(spec_dir: Path) -> None:
    np.save(spec_dir / "w.npy", np.array([[1e39, 1.0]]))
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert_names_place(exc_without_source(exc), "layers[0].weights", "1e+39", "float32")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("w.npy", b"not an array at all", id="garbage-npy"),
        pytest.param("w.npy", b"", id="empty-npy"),
        pytest.param("w.npz", b"PK\x03\x04 truncated", id="garbage-npz"),
    ],
)
def test_damaged_weight_file(spec_dir: Path, name: str, content: bytes) -> None:
    (spec_dir / name).write_bytes(content)
    ref = {"file": name} if name.endswith("npy") else {"file": name, "key": "W"}
    exc = refused_weights(spec_dir, ref)
    assert isinstance(exc, WeightError) and exc.path.startswith("layers[0].weights")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _zip_fields(data: bytes, local: tuple[int, int], central: tuple[int, int]) -> bytes:
    """`data` with one 2-byte field set in the first local header and the first central-directory entry."""
    out = bytearray(data)
    for signature, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        struct.pack_into("<H", out, data.index(signature) + offset, value)
    return bytes(out)


# Files that once raised something other than a clean error (found by tests/test_fuzz.py).
FUZZ_FOUND = [
    pytest.param(
        "w.npy", _npy_bytes(np.ones((1, 2))).replace(b"(1, 2)", b")1, 2)"), "which is not one", id="npy-header-tokens"
    ),
    pytest.param(
        "w.npz", _zip_fields(_npz_bytes(W=np.ones((1, 2))), (4, 109), (6, 109)), "which is not one", id="zip-version"
    ),
    pytest.param("w.npz", _zip_fields(_npz_bytes(W=np.ones((1, 2))), (6, 1), (8, 1)), "encrypted", id="zip-encrypted"),
]


@pytest.mark.parametrize(("name", "content", "fragment"), FUZZ_FOUND)
def test_weight_files_the_fuzzer_found(spec_dir: Path, name: str, content: bytes, fragment: str) -> None:
    (spec_dir / name).write_bytes(content)
    ref = {"file": name} if name.endswith("npy") else {"file": name, "key": "W"}
    exc = refused_weights(spec_dir, ref)
    assert isinstance(exc, WeightError) and exc.path.startswith("layers[0].weights") and fragment in str(exc), exc


def corrupt_member(path: Path, member: str) -> None:
    """Flip bytes in the middle of a zip member's data, leaving the zip's directory intact."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = start + info.compress_size // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "save", [pytest.param(np.savez, id="stored"), pytest.param(np.savez_compressed, id="compressed")]
)
def test_damaged_npz_member(spec_dir: Path, save: Callable[..., None]) -> None:
    save(spec_dir / "w.npz", W=np.arange(2000.0).reshape(1000, 2))
    corrupt_member(spec_dir / "w.npz", "W.npy")
    spec = copy.deepcopy(PARTY)
    spec["layers"][0].update(units=1000, weights={"file": "w.npz", "key": "W"}, bias={"init": "zeros"})
    (spec_dir / "model.json").write_text(json.dumps(spec))
    with pytest.raises(WeightError) as info:
        nnspec.load(spec_dir / "model.json")
    assert_names_place(exc_without_source(info.value), "layers[0].weights", "intact .npz", "w.npz['W'] damaged")


def test_truncated_npy_data(spec_dir: Path) -> None:
    np.save(spec_dir / "w.npy", np.ones((1, 2)))
    data = (spec_dir / "w.npy").read_bytes()
    (spec_dir / "w.npy").write_bytes(data[:-4])
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert exc.path == "layers[0].weights" and "damaged" in str(exc)


def test_npz_member_that_inflates_past_its_declared_shape(spec_dir: Path) -> None:
    """A small compressed member that would inflate to 8 MB is refused from the zip header."""
    with zipfile.ZipFile(spec_dir / "w.npz", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("W.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros((1000, 1000)))
    assert (spec_dir / "w.npz").stat().st_size < 100_000
    exc = refused_weights(spec_dir, {"file": "w.npz", "key": "W"})
    assert_names_place(exc_without_source(exc), "layers[0].weights", "inflates to", "shape [1, 2]")


def exc_without_source(exc: SpecError) -> SpecError:
    """The same error as `nnspec.from_dict` would word it (no file name in front)."""
    copy_ = copy.copy(exc)
    copy_.source = None
    return copy_


# Paths that leave the spec's folder. The target file exists, so only the confinement can refuse it.


def test_parent_path_is_refused(spec_dir: Path) -> None:
    np.save(spec_dir.parent / "w.npy", np.array([[-4.0, 1.0]]))
    exc = refused_weights(spec_dir, {"file": "../w.npy"})
    assert isinstance(exc, WeightError)
    assert_names_place(
        exc_without_source(exc), "layers[0].weights.file", "inside the spec's folder", "'../w.npy'", "leaves it"
    )


def test_parent_path_through_a_subfolder_is_refused(spec_dir: Path) -> None:
    np.save(spec_dir.parent / "w.npy", np.array([[-4.0, 1.0]]))
    (spec_dir / "sub").mkdir()
    exc = refused_weights(spec_dir, {"file": "sub/../../w.npy"})
    assert exc.path == "layers[0].weights.file" and "leaves it" in str(exc)


def test_absolute_path_is_refused(spec_dir: Path) -> None:
    target = spec_dir / "w.npy"  # inside the folder, yet absolute paths are refused outright
    np.save(target, np.array([[-4.0, 1.0]]))
    exc = refused_weights(spec_dir, {"file": str(target)})
    assert_names_place(
        exc_without_source(exc), "layers[0].weights.file", "relative to the spec's folder", "absolute path"
    )


def test_home_relative_path_is_refused(spec_dir: Path) -> None:
    exc = refused_weights(spec_dir, {"file": "~/w.npy"})
    assert exc.path == "layers[0].weights.file" and "absolute path" in str(exc)


def test_symlink_pointing_outside_is_refused(spec_dir: Path) -> None:
    outside = spec_dir.parent / "secret.npy"
    np.save(outside, np.array([[-4.0, 1.0]]))
    os.symlink(outside, spec_dir / "w.npy")
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert_names_place(
        exc_without_source(exc), "layers[0].weights.file", "'w.npy'", "leaves it", str(outside.resolve())
    )


def test_symlinked_folder_pointing_outside_is_refused(spec_dir: Path) -> None:
    elsewhere = spec_dir.parent / "elsewhere"
    elsewhere.mkdir()
    np.save(elsewhere / "w.npy", np.array([[-4.0, 1.0]]))
    os.symlink(elsewhere, spec_dir / "linked", target_is_directory=True)
    exc = refused_weights(spec_dir, {"file": "linked/w.npy"})
    assert exc.path == "layers[0].weights.file" and "leaves it" in str(exc)


def test_symlink_inside_the_folder_is_allowed(spec_dir: Path) -> None:
    np.save(spec_dir / "real.npy", np.array([[-4.0, 1.0]]))
    os.symlink(spec_dir / "real.npy", spec_dir / "w.npy")
    load_with_weights(spec_dir, {"file": "w.npy"})


def test_file_reference_without_a_folder_is_refused() -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = {"file": "w.npy"}
    exc = refused(spec)
    assert_names_place(exc, "layers[0].weights.file", "spec folder", "base_dir")


# Object arrays: loading must never unpickle. The payload creates a file when unpickled, and the
# control below proves that it does, so the tests would notice if nnspec ever called pickle.


class _CreatesFileWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def object_array(marker: Path) -> np.ndarray:
    array = np.empty((1, 2), dtype=object)
    array[0, 0] = _CreatesFileWhenUnpickled(marker)
    array[0, 1] = 1.0
    return array


def test_the_pickle_payload_works(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    np.save(tmp_path / "evil.npy", object_array(marker), allow_pickle=True)
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("container", ["npy", "npz"])
def test_object_array_weights_are_never_unpickled(spec_dir: Path, container: str) -> None:
    marker = spec_dir.parent / "unpickled"
    if container == "npy":
        np.save(spec_dir / "w.npy", object_array(marker), allow_pickle=True)
        ref = {"file": "w.npy"}
    else:
        np.savez(spec_dir / "w.npz", W=object_array(marker))
        ref = {"file": "w.npz", "key": "W"}
    exc = refused_weights(spec_dir, ref)
    assert not marker.exists(), "nnspec unpickled a weight file"
    assert isinstance(exc, WeightError)
    assert_names_place(
        exc_without_source(exc), "layers[0].weights", "real numbers", "Python objects", "never unpickles"
    )


def test_pickle_file_named_npy_is_never_unpickled(spec_dir: Path) -> None:
    marker = spec_dir.parent / "unpickled"
    (spec_dir / "w.npy").write_bytes(pickle.dumps(_CreatesFileWhenUnpickled(marker)))
    exc = refused_weights(spec_dir, {"file": "w.npy"})
    assert not marker.exists(), "nnspec unpickled a weight file"
    assert exc.path == "layers[0].weights" and ".npy" in str(exc)


# --- limits: refused from declared sizes, before anything is allocated -------------------------


def huge_dense(init: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(PARTY)
    spec["inputs"][0]["shape"] = [100_000]
    spec["layers"][0].update(units=100_000, weights=init, bias={"init": "zeros"})
    return spec


@pytest.mark.parametrize(
    "init",
    [
        pytest.param({"init": "uniform", "seed": 0}, id="uniform"),
        pytest.param({"init": "zeros"}, id="zeros"),
        pytest.param({"file": "w.npy"}, id="file"),
    ],
)
def test_huge_network_is_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, init: dict[str, Any]
) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a weight was materialized before the size check")

    monkeypatch.setattr(importlib.import_module("nnspec.graph"), "materialize", must_not_run)
    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as info:
            nnspec.from_dict(huge_dense(init), tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, f"{peak} bytes allocated while refusing"
    assert_names_place(info.value, "layers[0].weights", "NNSPEC_MAX_WEIGHT_BYTES", "37.3 GiB", "[100000, 100000]")


def test_weight_limit_from_environment(monkeypatch: pytest.MonkeyPatch, three_layer: dict[str, Any]) -> None:
    # float32: layers[0] holds 4x3 + 4 numbers (64 bytes), layers[1].weights 5x4 (80 bytes more).
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", "100")
    exc = refused(three_layer)
    assert isinstance(exc, LimitError)
    assert_names_place(exc, "layers[1].weights", "at most 100 B", "found 144 B as float32")


def test_weight_limit_counts_the_dtype(monkeypatch: pytest.MonkeyPatch, three_layer: dict[str, Any]) -> None:
    # float64 doubles every size: layers[0].weights take 96 bytes, its bias 32 more.
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", "100")
    three_layer["dtype"] = "float64"
    exc = refused(three_layer)
    assert_names_place(exc, "layers[0].bias", "found 128 B as float64")


def test_weight_limit_allows_what_fits(monkeypatch: pytest.MonkeyPatch, three_layer: dict[str, Any]) -> None:
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", str((12 + 4 + 20 + 5 + 10) * 4))
    nnspec.from_dict(three_layer)


def test_huge_input_sample_is_refused() -> None:
    spec = copy.deepcopy(PARTY)
    spec["inputs"][0]["shape"] = [100_000, 100_000]
    spec["layers"] = [{"type": "activation", "activation": "relu"}]
    exc = refused(spec)
    assert isinstance(exc, LimitError)
    assert_names_place(exc, "inputs[0].shape", "NNSPEC_MAX_BATCH_BYTES", "37.3 GiB")


def test_huge_layer_output_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "1000")
    spec = copy.deepcopy(PARTY)
    spec["inputs"][0]["shape"] = [1]
    spec["layers"][0].update(units=1000, weights={"init": "ones"}, bias={"init": "zeros"})
    exc = refused(spec)
    assert_names_place(exc, "layers[0]", "NNSPEC_MAX_BATCH_BYTES", "[1000]", "3.9 KiB")


def test_layer_count_limit(monkeypatch: pytest.MonkeyPatch, three_layer: dict[str, Any]) -> None:
    monkeypatch.setenv("NNSPEC_MAX_LAYERS", "2")
    exc = refused(three_layer)
    assert_names_place(exc, "layers", "at most 2 layers", "found 3")


def test_activation_parameter_must_fit_the_dtype(party):
    party["layers"][0]["activation"] = {"name": "leaky_relu", "alpha": 1e300}
    with pytest.raises(nnspec.SpecError) as info:
        nnspec.from_dict(party)
    assert info.value.path == "layers[0].activation.alpha" and "float32" in info.value.message
    assert nnspec.from_dict({**party, "dtype": "float64"}).format == "nnspec/1"  # fits in float64


def test_file_sha256_is_verified_before_use(tmp_path):
    import hashlib

    np.save(tmp_path / "w.npy", np.array([[-4.0, 1.0]]))
    digest = hashlib.sha256((tmp_path / "w.npy").read_bytes()).hexdigest()
    spec = {**PARTY, "layers": [{**PARTY["layers"][0], "weights": {"file": "w.npy", "sha256": digest.upper()}}]}
    loaded = nnspec.from_dict(spec, tmp_path)
    assert loaded.layers[0].weights.sha256 == digest  # normalized to lower case
    np.save(tmp_path / "w.npy", np.array([[-4.5, 1.0]]))  # the file changes under the spec
    with pytest.raises(WeightError) as info:
        nnspec.from_dict(spec, tmp_path)
    assert info.value.path == "layers[0].weights.sha256" and "it has changed" in info.value.message
    bad = {**PARTY, "layers": [{**PARTY["layers"][0], "weights": {"file": "w.npy", "sha256": "abc"}}]}
    with pytest.raises(SpecError) as info:
        nnspec.from_dict(bad, tmp_path)
    assert info.value.path == "layers[0].weights.sha256" and "64 hexadecimal digits" in info.value.message


def test_a_schema_key_is_allowed_and_ignored(cli, tmp_path, party):
    """Editors validate and complete a spec that names its JSON Schema; nnspec ignores the key, and the
    network's sha256 does not change with it."""
    plain, named = tmp_path / "plain.json", tmp_path / "named.json"
    plain.write_text(json.dumps(party))
    named.write_text(json.dumps({"$schema": "./nnspec.schema.json", **party}))
    shown = [json.loads(cli("show", path, "--json").stdout) for path in (plain, named)]
    assert shown[0]["sha256"] == shown[1]["sha256"]
    assert cli("check", named).exit_code == 0
    schema = json.loads(cli("schema").stdout)
    assert schema["additionalProperties"] is False and schema["properties"]["$schema"]["type"] == "string"


@pytest.mark.parametrize("value", [3, None, ["a"]])
def test_a_schema_key_must_be_a_string(cli, tmp_path, party, value):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"$schema": value, **party}))
    result = cli("validate", path)
    assert result.exit_code == 2 and "$schema: expected a string" in result.stderr


def test_schema_key_only_at_the_top(party):
    party["layers"][0]["$schema"] = "x"
    with pytest.raises(nnspec.SpecError, match=r"layers\[0\]"):
        nnspec.from_dict(party)
