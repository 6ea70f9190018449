"""`nnspec train`: learning the seed's examples, reproducibility, the files it writes, and clean refusals."""

from __future__ import annotations

import copy
import inspect
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SPECS

import nnspec
from nnspec import train as training
from nnspec.errors import InputDataError, SpecError


def _examples(spec: Path, data: Path, target: tuple[str, ...] = (), loss: str = "mse") -> tuple:
    s = nnspec.load(spec)
    g = nnspec.graph(s)
    return s, g, training.load_data(data, g, target, loss)


def _predict(spec: Path, features: np.ndarray) -> np.ndarray:
    return np.asarray(nnspec.to_numpy(nnspec.load(spec))(features))


# --- learning ------------------------------------------------------------------------------------------------


def test_the_party_decision_is_learned_from_its_examples(tmp_path):
    """The seed's party neuron, from weights of zero, learns from the examples to decide every one of them."""
    s, g, data = _examples(SPECS / "party_learn.json", SPECS / "party_data.csv", ("go",), "cross_entropy")
    options = training.Options(epochs=1000, lr=0.5, loss="cross_entropy")
    trained = training.train(g, data, options)
    assert trained.losses[0] == pytest.approx(np.log(2))  # p = 1/2 for every example at w = 0, b = 0
    assert trained.losses[-1] < trained.losses[0] / 10
    assert all(b <= a for a, b in zip(trained.losses, trained.losses[1:], strict=False))  # convex: never up
    assert trained.correct == trained.count == 11
    written = training.write_trained(s, g, trained, tmp_path / "party.json", "")
    assert [p.name for p in written] == ["party.npz", "party.json"]
    go = _predict(tmp_path / "party.json", data.features["p"]) > 0.5
    np.testing.assert_array_equal(go, data.targets["go"] > 0.5)
    w = trained.params["go"]["weights"][0]
    assert w[0] < 0 < w[1]  # being tired weighs against going, each friend for it (the seed's signs)


def test_xor_is_learned_by_a_2_4_1_network():
    s, g, data = _examples(SPECS / "xor.json", SPECS / "xor_data.csv", ("y",), "cross_entropy")
    before = np.asarray(nnspec.to_numpy(s)(data.features["p"].astype(np.float32)))
    assert ((before > 0.5) != (data.targets["out"] > 0.5)).any()  # the seeded start does not yet decide XOR
    trained = training.train(g, data, training.Options(epochs=1000, lr=1.0, loss="cross_entropy"))
    assert trained.correct == 4
    assert trained.final_loss < 0.05


def test_mini_batches_learn_too_and_the_loss_goes_down():
    _, g, data = _examples(SPECS / "xor.json", SPECS / "xor_data.csv", ("y",))
    trained = training.train(g, data, training.Options(epochs=2000, lr=0.5, batch_size=1, seed=4))
    assert np.mean(trained.losses[-10:]) < np.mean(trained.losses[:10]) / 10
    assert trained.correct == 4


def test_the_same_seed_gives_the_same_npz_byte_for_byte(cli, tmp_path):
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result = cli(
            "train", SPECS / "xor.json", "--data", SPECS / "xor_data.csv", "--target", "y", "-o", tmp_path / f"{name}.json",
            "--epochs", "50", "--lr", "0.5", "--batch-size", "3", "--seed", seed,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[name] = (tmp_path / f"{name}.npz").read_bytes()
    assert runs["a"] == runs["b"]
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:  # nor the time of writing: np.savez would stamp it in
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert runs["a"] != runs["c"]  # the seed shuffles the mini-batches


def test_float64_specs_are_trained_and_stored_in_float64(tmp_path):
    spec = json.loads((SPECS / "xor.json").read_text()) | {"dtype": "float64"}
    (tmp_path / "xor64.json").write_text(json.dumps(spec))
    s, g, data = _examples(tmp_path / "xor64.json", SPECS / "xor_data.csv", ("y",))
    trained = training.train(g, data, training.Options(epochs=5))
    assert {a.dtype for ps in trained.params.values() for a in ps.values()} == {np.dtype(np.float64)}


# --- the command ---------------------------------------------------------------------------------------------


def test_cli_trains_writes_both_files_and_the_result_checks(cli, tmp_path):
    out = tmp_path / "trained.json"
    result = cli(
        "train", SPECS / "party_learn.json", "--data", SPECS / "party_data.csv", "--target", "go", "-o", out,
        "--loss", "cross_entropy", "--lr", "0.5", "--epochs", "300",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "epoch 1/300: loss 0.693147"  # not a terminal: a log line per 30 epochs
    assert sum(line.startswith("epoch ") for line in lines) == 11
    assert "classified correctly: 11 of 11" in result.stdout and "final loss" in result.stdout
    document = json.loads(out.read_text())
    assert document["layers"][0]["weights"] == {"file": "trained.npz", "key": "go.weights"}
    assert document["layers"][0]["bias"] == {"file": "trained.npz", "key": "go.bias"}
    assert "Trained by nnspec train on party_data.csv" in document["description"]
    with np.load(tmp_path / "trained.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["go.bias", "go.weights"] and npz["go.weights"].dtype == np.float32
    assert cli("check", out).exit_code == 0
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_npz_and_json_data_keyed_by_name(cli, tmp_path):
    p = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 5.0]])
    go = np.array([[1.0], [0.0], [1.0]])
    np.savez(tmp_path / "d.npz", p=p, go=go)
    (tmp_path / "d.json").write_text(json.dumps({"p": p.tolist(), "go": go.reshape(-1).tolist()}))
    for data in ("d.npz", "d.json"):
        result = cli("train", SPECS / "party_learn.json", "--data", tmp_path / data, "-o", tmp_path / "t.json")
        assert result.exit_code == 0, result.output


def test_class_indices_are_one_hot_targets_for_softmax(tmp_path):
    spec = {
        "format": "nnspec/1",
        "name": "three_classes",
        "inputs": [{"name": "x", "shape": [2]}],
        "layers": [
            {"type": "dense", "name": "probs", "units": 3, "activation": "softmax", "weights": {"init": "zeros"}}
        ],
    }
    (tmp_path / "s.json").write_text(json.dumps(spec))
    (tmp_path / "d.csv").write_text("a,b,label\n1,0,0\n0,1,1\n-1,-1,2\n")
    _, g, data = _examples(tmp_path / "s.json", tmp_path / "d.csv", ("label",), "cross_entropy")
    np.testing.assert_array_equal(data.targets["probs"], np.eye(3))
    assert training.train(g, data, training.Options(epochs=200, lr=1.0, loss="cross_entropy")).correct == 3


def test_cli_defaults_are_the_trainers():
    from nnspec.cli import train

    defaults = {name: p.default for name, p in inspect.signature(train).parameters.items()}
    assert defaults["epochs"] == training.DEFAULT_EPOCHS
    assert defaults["lr"] == training.DEFAULT_LR
    assert defaults["loss"] == training.DEFAULT_LOSS
    assert defaults["batch_size"] is None and defaults["seed"] == 0


# --- refusals ------------------------------------------------------------------------------------------------

PARTY_ARGS = ("train", SPECS / "party_learn.json", "--data")


@pytest.mark.parametrize(
    ("csv", "target", "message"),
    [
        (
            "tired,friends,go\n0,1,1\n",
            "going",
            "expected a target column named 'going', found none; the columns are tired, friends, go",
        ),
        (
            "tired,friends,hungry,go\n0,1,0,1\n",
            "go",
            "expected 2 feature column(s) for input 'p' (every column not named by --target), found 3: tired, friends, hungry",
        ),
        (
            "tired,friends,go\n0,1,1\n1,lots,1\n",
            "go",
            "line 3, column 'friends': expected a finite number, found 'lots'",
        ),
        (
            "tired,friends,go\n0,1,1\n1,,1\n",
            "go",
            "line 3, column 'friends': expected a finite number, found an empty cell",
        ),
        ("tired,friends,go\n0,nan,1\n", "go", "line 2, column 'friends': expected a finite number, found 'nan'"),
        ("0,1,1\n", "go", "line 1: expected a header naming every column"),
        ("tired,friends,go\n0,1\n", "go", "line 2: expected 3 cells, as the header has, found 2"),
    ],
    ids=[
        "unknown-target-column",
        "wrong-feature-count",
        "non-numeric-cell",
        "empty-cell",
        "nan",
        "no-header",
        "short-line",
    ],
)
def test_bad_csv_data_exits_2_naming_file_and_place(cli, tmp_path, csv, target, message):
    data = tmp_path / "bad.csv"
    data.write_text(csv)
    result = cli(*PARTY_ARGS, data, "--target", target, "-o", tmp_path / "t.json")
    assert result.exit_code == 2, result.output
    assert f"{data}: {message}" in result.stderr
    assert not (tmp_path / "t.json").exists()


def test_csv_without_target_lists_the_columns(cli, tmp_path):
    result = cli(*PARTY_ARGS, SPECS / "party_data.csv", "-o", tmp_path / "t.json")
    assert result.exit_code == 2
    assert (
        "expected --target naming the target column(s) of output 'go', found none given; the columns are tired, friends, go"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"p": [[0, 1]], "go": [1], "q": [1]},
            "expected keys naming the spec's inputs (p) and outputs (go), found unknown key 'q'",
        ),
        ({"p": [[0, 1]], "Go": [1]}, "unknown key 'Go' (did you mean 'go'?)"),
        ({"p": [[0, 1]]}, "expected a target for output 'go' (shape ['N', 1]), found none"),
        ({"p": [[0, 1, 2]], "go": [1]}, "input 'p': expected shape ['N', 2], found [1, 3]"),
        ({"p": [[0, 1], [1, 1]], "go": [1]}, "target 'go': expected 2 examples, as the features have, found 1"),
        ({"p": [[0, 1]], "go": [[1, 0]]}, "target 'go': expected shape ['N', 1], found [1, 2]"),
    ],
    ids=["unknown-key", "misspelt-key", "missing-target", "feature-shape", "sample-count", "target-shape"],
)
@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_bad_keyed_data_exits_2_naming_the_key(cli, tmp_path, arrays, message, suffix):
    data = tmp_path / f"bad{suffix}"
    if suffix == ".npz":
        np.savez(data, **{k: np.array(v, dtype=np.float64) for k, v in arrays.items()})
    else:
        data.write_text(json.dumps(arrays))
    result = cli(*PARTY_ARGS, data, "-o", tmp_path / "t.json")
    assert result.exit_code == 2, result.output
    assert f"{data}: " in result.stderr and message in result.stderr


def test_a_spec_given_as_data_is_refused(cli, tmp_path):
    result = cli(*PARTY_ARGS, SPECS / "party.json", "-o", tmp_path / "t.json")
    assert result.exit_code == 2
    assert "found a spec" in result.stderr


def test_a_step_activation_exits_2_naming_the_layer(cli, tmp_path, party):
    party["layers"][0]["activation"] = "hardlim"
    (tmp_path / "step.json").write_text(json.dumps(party))
    result = cli(
        "train", tmp_path / "step.json", "--data", SPECS / "party_data.csv", "--target", "go", "-o", tmp_path / "t.json"
    )
    assert result.exit_code == 2
    assert (
        "step.json: layers[0].activation: expected a differentiable activation to train layer 'decide' through, found hardlim"
        in result.stderr
    )
    assert not (tmp_path / "t.json").exists()


def test_cross_entropy_needs_a_probability_output(cli, tmp_path):
    result = cli(
        "train", SPECS / "party.json", "--data", SPECS / "party_data.csv", "--target", "go", "-o", tmp_path / "t.json",
        "--loss", "cross_entropy",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "expected an output layer with sigmoid, softmax, log_softmax for --loss cross_entropy" in result.stderr
    assert "use --loss mse" in result.stderr


def test_nothing_to_learn_is_refused():
    spec = next(e for e in nnspec.layers.LAYERS["batch_norm"].examples if e["name"] == "batch_norm_channels")
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(spec)))
    assert {k for n in graph.nodes for k in n.params} == {"mean", "variance"}  # a batch norm's statistics only
    with pytest.raises(SpecError, match="expected parameters for training to learn, found only ones it leaves"):
        training.check_trainable(graph, "mse")


def test_a_failed_run_leaves_the_old_files_as_they_were(cli, tmp_path):
    out, npz = tmp_path / "t.json", tmp_path / "t.npz"
    out.write_text("old spec")
    npz.write_bytes(b"old weights")
    result = cli(
        "train", SPECS / "party.json", "--data", SPECS / "party_data.csv", "--target", "go", "-o", out, "--lr", "100",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "training diverged at epoch" in result.stderr and "lower --lr" in result.stderr
    assert out.read_text() == "old spec" and npz.read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "t.npz"]


def test_a_write_that_fails_leaves_no_half_written_pair(tmp_path, monkeypatch):
    """The .npz is staged first; if the .json cannot be written, neither file is replaced."""
    s, g, data = _examples(SPECS / "party_learn.json", SPECS / "party_data.csv", ("go",))
    trained = training.train(g, data, training.Options(epochs=3))
    folder = tmp_path / "out"
    shutil.copytree(tmp_path, folder, dirs_exist_ok=True)
    (folder / "t.npz").write_bytes(b"old weights")
    real = training.json_text
    monkeypatch.setattr(training, "json_text", lambda *a: (_ for _ in ()).throw(OSError("disk full")) or real(*a))
    with pytest.raises(OSError):
        training.write_trained(s, g, trained, folder / "t.json", "")
    assert (folder / "t.npz").read_bytes() == b"old weights" and not (folder / "t.json").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["t.npz"]


def test_load_data_errors_are_input_data_errors():
    g = nnspec.graph(nnspec.load(SPECS / "party_learn.json"))
    with pytest.raises(InputDataError, match="expected a .npz, .json or .csv file of examples"):
        training.load_data(Path("examples.txt"), g)


def test_a_terminal_gets_a_progress_bar_with_epoch_and_loss(cli, tmp_path, monkeypatch):
    from nnspec import cli as commands

    monkeypatch.setattr(commands.out, "_force_terminal", True)
    result = cli(
        "train", SPECS / "party_learn.json", "--data", SPECS / "party_data.csv", "--target", "go", "-o",
        tmp_path / "t.json", "--epochs", "300",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"epoch 300/300 \S+ loss 0\.\d+", result.stdout)  # the bar's last state
    assert "epoch 30/300: loss" not in result.stdout  # no log lines


def test_target_applies_to_csv_only(cli, tmp_path):
    np.savez(tmp_path / "d.npz", p=np.zeros((2, 2)), go=np.zeros((2, 1)))
    result = cli(*PARTY_ARGS, tmp_path / "d.npz", "--target", "go", "-o", tmp_path / "t.json")
    assert result.exit_code == 2
    assert "expected --target only with a .csv file, found a .npz file" in result.stderr
