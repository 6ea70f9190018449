"""Bad input through the command line: exit code 2, one clear message naming the place, no traceback,
and no output file, for every kind of problem the issue lists and every command that reads a spec.

The spec-stage wording is tested in detail in test_spec.py; here each case checks what a user of the
CLI sees: the path of the problem (`layers[1].weights`), "expected ... found ...", and an untouched
output folder.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PARTY  # the party neuron, shared by every stage

from nnspec.errors import NNSpecError
from nnspec.files import atomic_write
from nnspec.layers import LAYERS

TWO_INPUTS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "pair",
    "inputs": [{"name": "a", "shape": [2]}, {"name": "b", "shape": [3]}],
    "layers": [
        {"type": "dense", "name": "from_a", "units": 1, "weights": {"init": "ones"}, "inputs": ["a"]},
        {"type": "dense", "name": "from_b", "units": 1, "weights": {"init": "ones"}, "inputs": ["b"]},
    ],
    "outputs": ["from_a", "from_b"],
}

Setup = Callable[[Path], None]


class Workspace:
    """tmp_path/spec holds the spec and its files, tmp_path/out receives outputs, tmp_path/data inputs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec_dir = root / "spec"
        self.out = root / "out"
        self.data = root / "data"
        for folder in (self.spec_dir, self.out, self.data):
            folder.mkdir()
        np.savez(self.data / "x.npz", p=np.ones((3, 2)))

    def write(self, spec: dict[str, Any] | str) -> Path:
        path = self.spec_dir / "model.json"
        path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
        return path

    def outputs(self) -> list[str]:
        """Everything in the output folder, temporary files included."""
        return sorted(p.name for p in self.out.iterdir())


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def assert_refused(result: Any, *fragments: str, one_line: bool = True) -> str:
    """Exit 2 with one clean message on stderr that contains `fragments`; returns the message."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("error: "), message
    assert "Warning" not in message, message
    if one_line:
        assert "\n" not in message, message
    assert "expected" in message and "found" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- every spec problem, through every command that reads a spec -------------------------------


def party_with(**layer_changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0].update(layer_changes)
    return spec


def spec_with(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(PARTY), **changes}


def with_input(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(PARTY)
    spec["inputs"][0].update(changes)
    return spec


def two_layers(**second: Any) -> dict[str, Any]:
    spec = copy.deepcopy(PARTY)
    spec["layers"] = [
        {"type": "dense", "name": "hidden", "units": 5, "weights": {"init": "ones"}},
        {"type": "dense", "name": "out", "units": 1, "weights": {"init": "ones"}, **second},
    ]
    return spec


def npy(name: str, array: np.ndarray, **kwargs: Any) -> Setup:
    return lambda folder: np.save(folder / name, array, **kwargs)


def npz(name: str, **arrays: np.ndarray) -> Setup:
    return lambda folder: np.savez(folder / name, **arrays)


def outside_file(folder: Path) -> None:
    np.save(folder.parent / "w.npy", np.array([[-4.0, 1.0]]))


def symlink_outside(folder: Path) -> None:
    outside_file(folder)
    os.symlink(folder.parent / "w.npy", folder / "w.npy")


def nothing(folder: Path) -> None:
    pass


RAW_NAN = '{"format": "nnspec/1", "name": "x",\n "inputs": [{"name": "p", "shape": [2]}],\n "layers": [{"type": "dense", "units": 1, "weights": [[NaN, 1]]}]}'
RAW_BIG = RAW_NAN.replace("NaN", "1e999")
RAW_F32 = RAW_NAN.replace("NaN", "1e39")

SPEC_CASES = [
    pytest.param(
        '{\n  "format": "nnspec/1",\n  "name": "x",,\n}',
        nothing,
        ["malformed JSON", "line 3, column 15", "found ','"],
        id="malformed-json",
    ),
    pytest.param("", nothing, ["malformed JSON", "empty file"], id="empty-file"),
    pytest.param(RAW_NAN, nothing, ["line 3, column 56", "found NaN"], id="nan-literal"),
    pytest.param(RAW_BIG, nothing, ["line 3, column 56", "found '1e999'"], id="number-overflows-double"),
    pytest.param(
        RAW_F32, nothing, ["layers[0].weights: expected finite", "1e+39", "float32"], id="number-overflows-float32"
    ),
    pytest.param("[]", nothing, ["JSON object at the top level", "found a list"], id="top-level-list"),
    pytest.param(
        spec_with(format="nnspec/0"), nothing, ["format: expected 'nnspec/1', found 'nnspec/0'"], id="unknown-format"
    ),
    pytest.param(
        spec_with(format="nnspec/2"), nothing, ["format: expected 'nnspec/1'", "'nnspec/2'", "newer"], id="newer-format"
    ),
    pytest.param(
        party_with(type="dens"),
        nothing,
        ["layers[0].type: expected", ", ".join(sorted(LAYERS)), "did you mean 'dense'"],
        id="unknown-layer-type",
    ),
    pytest.param(
        party_with(activation="sigmod"),
        nothing,
        ["layers[0].activation: expected", "tanh", "did you mean 'sigmoid'"],
        id="unknown-activation",
    ),
    pytest.param(
        party_with(activaton="relu"),
        nothing,
        ["layers[0].activaton: expected", "did you mean 'activation'"],
        id="unknown-key-in-layer",
    ),
    pytest.param(
        spec_with(ouptuts=["decide"]),
        nothing,
        ["ouptuts: expected", "did you mean 'outputs'"],
        id="unknown-key-top-level",
    ),
    pytest.param(
        with_input(shpae=[2]), nothing, ["inputs[0].shpae: expected", "did you mean 'shape'"], id="unknown-key-in-input"
    ),
    pytest.param(
        party_with(activation={"name": "elu", "apha": 1}),
        nothing,
        ["layers[0].activation.apha: expected", "did you mean 'alpha'"],
        id="unknown-key-in-activation",
    ),
    pytest.param(
        party_with(weights={"fiel": "w.npy"}),
        nothing,
        ["layers[0].weights: expected", "['fiel']", "did you mean 'file'"],
        id="misspelt-file-key",
    ),
    pytest.param(
        party_with(weights={"file": "w.npz", "kee": "W"}),
        nothing,
        ["layers[0].weights.kee: expected", "did you mean 'key'"],
        id="unknown-key-in-file-ref",
    ),
    pytest.param(
        party_with(weights={"init": "normal", "seed": 1, "mena": 0}),
        nothing,
        ["layers[0].weights.mena: expected", "did you mean 'mean'"],
        id="unknown-key-in-init",
    ),
    pytest.param(
        party_with(weights={"init": "glorot_uniform"}),
        nothing,
        ["layers[0].weights.seed: expected a 'seed'", "found none"],
        id="seeded-init-without-seed",
    ),
    pytest.param(spec_with(layers=[]), nothing, ["layers: expected at least 1", "found 0"], id="empty-layers"),
    pytest.param(
        with_input(shape=[0]), nothing, ["inputs[0].shape[0]: expected", ">= 1", "found 0"], id="input-shape-zero"
    ),
    pytest.param(party_with(units=0), nothing, ["layers[0].units: expected", ">= 1", "found 0"], id="units-zero"),
    pytest.param(
        party_with(units="3"), nothing, ["layers[0].units: expected an integer, found '3'"], id="units-a-string"
    ),
    pytest.param(
        party_with(units=3.5), nothing, ["layers[0].units: expected an integer, found 3.5"], id="units-fractional"
    ),
    pytest.param(
        party_with(units=True), nothing, ["layers[0].units: expected an integer, found true"], id="units-boolean"
    ),
    pytest.param(
        party_with(activation={"name": "leaky_relu", "alpha": "x"}),
        nothing,
        ["layers[0].activation.alpha: expected a number, found a string"],
        id="alpha-a-string",
    ),
    pytest.param(
        two_layers(weights=[[1, 2, 3, 4]]),
        nothing,
        ["layers[1].weights: expected shape [1, 5]", "found [1, 4]", "layer 'hidden' has 5 outputs"],
        id="weights-wrong-shape",
    ),
    pytest.param(
        two_layers(bias=[1, 2]),
        nothing,
        ["layers[1].bias: expected shape [1]", "found [2]", "units = 1"],
        id="bias-wrong-shape",
    ),
    pytest.param(
        party_with(weights=[[1, 2], [3]]), nothing, ["layers[0].weights: expected a rectangular"], id="weights-ragged"
    ),
    pytest.param(
        party_with(name="p"),
        nothing,
        ["layers[0].name: expected a unique name", "'p'", "inputs[0]"],
        id="duplicate-input-and-layer",
    ),
    pytest.param(
        two_layers(name="hidden"),
        nothing,
        ["layers[1].name: expected a unique name", "'hidden'", "layers[0]"],
        id="duplicate-layers",
    ),
    pytest.param(
        party_with(inputs=["q"]),
        nothing,
        ["layers[0].inputs[0]: expected", "found unknown 'q'"],
        id="unknown-layer-input",
    ),
    pytest.param(
        two_layers(inputs=["out"]),
        nothing,
        ["layers[1].inputs[0]: expected", "'out'", "itself"],
        id="layer-reads-itself",
    ),
    pytest.param(
        spec_with(outputs=["decid"]), nothing, ["outputs[0]: expected", "did you mean 'decide'"], id="unknown-output"
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        nothing,
        ["layers[0].weights.file: expected a file 'w.npy'", "found no such file"],
        id="missing-weight-file",
    ),
    pytest.param(
        party_with(weights={"file": "w.npz", "key": "W"}),
        npz("w.npz", W1=np.ones((1, 2))),
        ["layers[0].weights.key: expected", "did you mean 'W1'"],
        id="npz-missing-key",
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        npy("w.npy", np.array([[np.nan, 1.0]])),
        ["layers[0].weights: expected finite", "found nan", "'w.npy'"],
        id="nan-in-npy",
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        npy("w.npy", np.ones((2, 1))),
        ["layers[0].weights: expected shape [1, 2]", "found [2, 1]"],
        id="npy-wrong-shape",
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        npy("w.npy", np.array([["a", "b"]])),
        ["layers[0].weights: expected real numbers", "<U1"],
        id="npy-of-strings",
    ),
    pytest.param(
        party_with(weights={"file": "../w.npy"}),
        outside_file,
        ["layers[0].weights.file: expected a path inside", "'../w.npy'"],
        id="path-to-parent",
    ),
    pytest.param(
        party_with(weights={"file": "/etc/hostname.npy"}),
        nothing,
        ["layers[0].weights.file: expected a path relative", "absolute path"],
        id="absolute-path",
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        symlink_outside,
        ["layers[0].weights.file: expected a path inside", "leaves it"],
        id="symlink-outside",
    ),
    pytest.param(
        party_with(weights={"file": "w.npy"}),
        npy("w.npy", np.array([[None, 1.0]], dtype=object), allow_pickle=True),
        ["layers[0].weights: expected real numbers", "Python objects"],
        id="object-npy",
    ),
    pytest.param(
        party_with(weights={"file": "w.npz", "key": "W"}),
        npz("w.npz", W=np.array([[None, 1.0]], dtype=object)),
        ["layers[0].weights: expected real numbers", "Python objects"],
        id="object-npz",
    ),
    pytest.param(
        with_input(shape=[100_000])
        | {"layers": [{"type": "dense", "units": 100_000, "weights": {"init": "uniform", "seed": 1}}]},
        nothing,
        ["layers[0].weights: expected at most", "NNSPEC_MAX_WEIGHT_BYTES", "37.3 GiB"],
        id="network-too-large",
    ),
]

COMMANDS: dict[str, Callable[[Path, Workspace], list[Any]]] = {
    "validate": lambda spec, ws: ["validate", spec],
    "compile": lambda spec, ws: ["compile", spec, "-o", ws.out / "model.onnx"],
    "compile-no-check": lambda spec, ws: ["compile", spec, "--no-check", "-o", ws.out / "model.onnx"],
    "run": lambda spec, ws: ["run", spec, "--input", ws.data / "x.npz", "-o", ws.out / "y.npz"],
    "check": lambda spec, ws: ["check", spec, "--json", ws.out / "report.json", "--markdown", ws.out / "report.md"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("spec", "setup", "fragments"), SPEC_CASES)
def test_bad_spec_exits_2_with_a_message_and_no_file(
    cli, ws: Workspace, spec: Any, setup: Setup, fragments: list[str], command: str
) -> None:
    path = ws.write(spec)
    setup(ws.spec_dir)
    result = cli(*COMMANDS[command](path, ws))
    message = assert_refused(result, *fragments)
    assert message.startswith(f"error: {path}: "), message
    assert result.stdout == ""
    assert ws.outputs() == []


def test_compile_to_the_default_name_writes_nothing(cli, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws.out)
    result = cli("compile", ws.write(party_with(units=0)))
    assert_refused(result, "layers[0].units")
    assert ws.outputs() == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(lambda spec, ws: ["compile", spec, "-o", ws.out / "old.onnx"], id="compile"),
        pytest.param(lambda spec, ws: ["run", spec, "--input", ws.data / "x.npz", "-o", ws.out / "old.onnx"], id="run"),
        pytest.param(lambda spec, ws: ["check", spec, "--json", ws.out / "old.onnx"], id="check-json"),
        pytest.param(lambda spec, ws: ["check", spec, "--markdown", ws.out / "old.onnx"], id="check-markdown"),
    ],
)
def test_failed_command_leaves_an_existing_output_untouched(cli, ws: Workspace, args: Callable[..., list[Any]]) -> None:
    old = ws.out / "old.onnx"
    old.write_bytes(b"the model from last week")
    stamp = old.stat().st_mtime_ns
    result = cli(*args(ws.write(party_with(activation="sigmod")), ws))
    assert_refused(result, "did you mean 'sigmoid'")
    assert old.read_bytes() == b"the model from last week" and old.stat().st_mtime_ns == stamp
    assert ws.outputs() == ["old.onnx"]


def test_several_problems_are_listed_together(cli, ws: Workspace) -> None:
    spec = party_with(units=0)
    spec["inputs"][0]["shap"] = [2]
    result = cli("validate", ws.write(spec))
    message = assert_refused(
        result, "2 problems", "layers[0].units: expected", "inputs[0].shap: expected", one_line=False
    )
    assert len(message.splitlines()) == 3


def test_markup_like_text_in_a_spec_is_printed_as_written(cli, ws: Workspace) -> None:
    """Messages quote the user's text; the terminal renderer must not eat `[bold]` or `[nan]`."""
    result = cli("validate", ws.write(spec_with(**{"[bold]notes": "x"})))
    assert_refused(result, "[bold]notes: expected", "found unknown key '[bold]notes'")


def test_missing_spec_file(cli, ws: Workspace) -> None:
    result = cli("validate", ws.spec_dir / "absent.json")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "absent.json: no such file" in result.stderr


def test_invalid_limit_in_the_environment(cli, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", "lots")
    result = cli("compile", ws.write(PARTY), "-o", ws.out / "model.onnx")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "NNSPEC_MAX_WEIGHT_BYTES" in result.stderr and "'lots'" in result.stderr
    assert ws.outputs() == []


def test_weight_limit_from_the_environment(cli, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_MAX_WEIGHT_BYTES", "8")
    result = cli("compile", ws.write(PARTY), "-o", ws.out / "model.onnx")
    assert_refused(result, "layers[0].bias: expected at most 8 B", "found 12 B as float32")
    assert ws.outputs() == []


# Object arrays must never be unpickled: the payload creates a file when it is, so these tests notice.


class _CreatesFileWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def evil(marker: Path, shape: tuple[int, ...] = (1, 2)) -> np.ndarray:
    array = np.zeros(shape, dtype=object)
    array.flat[0] = _CreatesFileWhenUnpickled(marker)
    return array


def test_the_pickle_payload_works(tmp_path: Path) -> None:
    np.savez(tmp_path / "evil.npz", W=evil(tmp_path / "marker"))
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as archive:
        archive["W"]
    assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("command", ["validate", "compile", "check"])
def test_pickled_weights_are_never_unpickled(cli, ws: Workspace, command: str) -> None:
    marker = ws.root / "marker"
    np.savez(ws.spec_dir / "w.npz", W=evil(marker))
    path = ws.write(party_with(weights={"file": "w.npz", "key": "W"}))
    result = cli(*COMMANDS[command](path, ws))
    assert_refused(result, "layers[0].weights", "never unpickles")
    assert not marker.exists(), "a weight file was unpickled"


# --- input files for run and check --inputs ----------------------------------------------------

INPUT_CASES = [
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.ones((3, 5))),
        ["input 'p'", "expected shape ['N', 2]", "found [3, 5]"],
        id="wrong-shape",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.ones(2)),
        ["input 'p'", "expected shape ['N', 2]", "found [2]", "batch dimension"],
        id="missing-batch-dimension",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.ones((0, 2))),
        ["input 'p'", "at least one sample", "empty batch"],
        id="empty-batch",
    ),
    pytest.param(
        PARTY,
        "x.npz",
        npz("x.npz", q=np.ones((3, 2))),
        ["input 'p'", "found none", "given: 'q'"],
        id="npz-missing-name",
    ),
    pytest.param(
        PARTY,
        "x.npz",
        npz("x.npz", p=np.ones((3, 2)), extra=np.ones(3)),
        ["inputs only (p)", "found also 'extra'"],
        id="npz-extra-name",
    ),
    pytest.param(
        TWO_INPUTS,
        "x.npz",
        npz("x.npz", a=np.ones((3, 2))),
        ["input 'b'", "shape ['N', 3]", "found none"],
        id="npz-missing-second-input",
    ),
    pytest.param(
        TWO_INPUTS,
        "x.npz",
        npz("x.npz", a=np.ones((3, 2)), b=np.ones((4, 3))),
        ["input 'b'", "expected 3 samples", "found 4"],
        id="batch-sizes-differ",
    ),
    pytest.param(
        TWO_INPUTS,
        "x.npy",
        npy("x.npy", np.ones((3, 2))),
        ["expected a .npz", "2 inputs: a, b", "found a .npy"],
        id="npy-for-two-inputs",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.array([[None, 1]], dtype=object), allow_pickle=True),
        ["real numbers", "found Python objects", "never unpickles"],
        id="object-npy",
    ),
    pytest.param(
        PARTY,
        "x.npz",
        npz("x.npz", p=np.array([[None, 1]], dtype=object)),
        ["real numbers", "found Python objects", "x.npz['p']"],
        id="object-npz",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.array([["a", "b"]])),
        ["input 'p'", "real numbers", "found dtype <U1"],
        id="string-dtype",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.array([[True, False]])),
        ["input 'p'", "real numbers", "found dtype bool"],
        id="boolean-dtype",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.array([[1 + 2j, 0]])),
        ["input 'p'", "real numbers", "complex"],
        id="complex-dtype",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        npy("x.npy", np.array([[1e39, 0]])),
        ["input 'p'", "fit in float32", "found 1e+39"],
        id="too-large-for-float32",
    ),
    pytest.param(
        PARTY,
        "x.npy",
        lambda d: (d / "x.npy").write_bytes(b"\x80\x04not numpy"),
        ["expected a .npy array", "not one"],
        id="not-an-npy-file",
    ),
    pytest.param(
        PARTY,
        "x.npz",
        lambda d: (d / "x.npz").write_bytes(b"not a zip"),
        ["expected a .npz (zip) file"],
        id="not-an-npz-file",
    ),
    pytest.param(
        PARTY,
        "x.txt",
        lambda d: (d / "x.txt").write_text("1,2\n"),
        ["expected a .npy, .npz, .csv or .json file", "'x.txt'"],
        id="wrong-extension",
    ),
    pytest.param(PARTY, "absent.npy", nothing, ["expected an input file", "no such file"], id="missing-file"),
]


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(("spec", "name", "setup", "fragments"), INPUT_CASES)
def test_input_file_that_does_not_fit(
    cli, ws: Workspace, spec: dict[str, Any], name: str, setup: Setup, fragments: list[str], command: str
) -> None:
    setup(ws.data)
    path = ws.write(spec)
    if command == "run":
        args = ["run", path, "--input", ws.data / name, "-o", ws.out / "y.npz"]
    else:
        args = ["check", path, "--inputs", ws.data / name, "--json", ws.out / "report.json"]
    message = assert_refused(cli(*args), *fragments)
    if "fit in float32" not in message:  # the cast to the spec's dtype happens after the file is read
        assert message.startswith(f"error: {ws.data / name}: "), message
    assert ws.outputs() == []


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(
    "save", [pytest.param(np.savez, id="stored"), pytest.param(np.savez_compressed, id="compressed")]
)
def test_damaged_input_npz(cli, ws: Workspace, save: Callable[..., None], command: str) -> None:
    save(ws.data / "x.npz", p=np.arange(2000.0).reshape(1000, 2))
    with zipfile.ZipFile(ws.data / "x.npz") as archive:
        info = archive.getinfo("p.npy")
    data = bytearray((ws.data / "x.npz").read_bytes())
    middle = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    (ws.data / "x.npz").write_bytes(bytes(data))
    option = "--input" if command == "run" else "--inputs"
    result = cli(
        command, ws.write(PARTY), option, ws.data / "x.npz", "-o" if command == "run" else "--json", ws.out / "y.npz"
    )
    assert_refused(result, f"{ws.data / 'x.npz'}: expected an intact .npz file", "x.npz['p'] damaged")
    assert ws.outputs() == []


@pytest.mark.parametrize("command", ["run", "check"])
def test_pickled_inputs_are_never_unpickled(cli, ws: Workspace, command: str) -> None:
    marker = ws.root / "marker"
    np.save(ws.data / "x.npy", evil(marker, (3, 2)), allow_pickle=True)
    option = "--input" if command == "run" else "--inputs"
    assert_refused(cli(command, ws.write(PARTY), option, ws.data / "x.npy"), "never unpickles")
    assert not marker.exists(), "an input file was unpickled"


def test_input_file_over_the_batch_limit(cli, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "1000")
    np.save(ws.data / "x.npy", np.ones((100, 2)))  # 1600 bytes of float64
    result = cli("run", ws.write(PARTY), "--input", ws.data / "x.npy", "-o", ws.out / "y.npy")
    assert_refused(result, "NNSPEC_MAX_BATCH_BYTES", "at most 1000 B", "1.6 KiB", "[100, 2]")
    assert ws.outputs() == []


def test_compressed_input_that_inflates_past_the_limit(cli, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few kilobytes of .npz claiming 80 MB are refused from the array header, before inflating."""
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", str(1 << 20))
    np.savez_compressed(ws.data / "x.npz", p=np.zeros((5_000_000, 2)))
    assert (ws.data / "x.npz").stat().st_size < 1 << 20
    result = cli("check", ws.write(PARTY), "--inputs", ws.data / "x.npz")
    assert_refused(result, "NNSPEC_MAX_BATCH_BYTES", "x.npz['p']", "76.3 MiB")


# --- writing: atomic, never partial ------------------------------------------------------------


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def write_half_then_fail(f: Any) -> None:
        f.write(b"new but incomplete")
        raise NNSpecError("expected a finished model, found a failure halfway")

    with pytest.raises(NNSpecError):
        atomic_write(target, write_half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_compile_into_a_missing_folder(cli, ws: Workspace) -> None:
    result = cli("compile", ws.write(PARTY), "-o", ws.out / "absent" / "model.onnx")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "does not exist" in result.stderr
    assert ws.outputs() == []


# --- ONNX models from elsewhere: `nnspec check --onnx` ----------------------------------------------


def model_with_external_weights(folder: Path, location: str) -> Path:
    """The party model with its weights moved to external data at `location` (as large models store them)."""
    import onnx

    import nnspec

    model = nnspec.to_onnx(nnspec.from_dict(PARTY))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../outside/secret.bin", "/etc/hostname"])
def test_models_that_name_external_files_are_refused_unread(cli, tmp_path: Path, location: str) -> None:
    """A model may point its weights at any file; nnspec refuses one outside the model's folder before onnx's
    checker or onnxruntime, which would resolve the path, see the model (their messages differ from this one).
    (External data inside the folder is read: tests/test_external_data.py.)"""
    for folder in ("inner", "outside"):
        (tmp_path / folder).mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(np.zeros(2, np.float32).tobytes())
    spec = tmp_path / "party.json"
    spec.write_text(json.dumps(PARTY))
    result = cli("check", spec, "--onnx", model_with_external_weights(tmp_path / "inner", location))
    assert_refused(
        result, "expected tensor 'decide.weights' stored in a file inside the model's folder", repr(location)
    )


def test_onnx_file_over_protobuf_limit_is_refused_unread(cli, tmp_path: Path) -> None:
    spec = tmp_path / "party.json"
    spec.write_text(json.dumps(PARTY))
    huge = tmp_path / "huge.onnx"
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # a sparse file: 3 GiB declared, nothing written
    assert_refused(cli("check", spec, "--onnx", huge), "at most 2 GiB", "found a 3.0 GiB file")
