"""Models with their weights as ONNX external data: `nnspec compile --external-data`, the automatic switch
above protobuf's 2 GiB, and `check --onnx`, `run` and the harness on such models; external data is read
only from plain files inside the model's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import PARTY
from test_bad_input import assert_refused

import nnspec
from nnspec.layers import LAYERS
from nnspec.onnxio.export import EXTERNAL_MIN_BYTES, export, to_bytes, to_onnx
from nnspec.onnxio.model import open_model

RNG = np.random.default_rng(12)
W1 = (RNG.standard_normal((64, 16)) / 4).astype(np.float32)  # 4 KiB: external
W2 = (RNG.standard_normal((8, 64)) / 8).astype(np.float32)  # 2 KiB: external
B1 = RNG.standard_normal(64).astype(np.float32)  # 256 bytes: stays inside the .onnx


def mlp(folder: Path) -> Path:
    """A two-layer tanh MLP with its weights in .npy files beside the spec."""
    np.save(folder / "w1.npy", W1)
    np.save(folder / "w2.npy", W2)
    np.save(folder / "b1.npy", B1)
    spec = {
        "format": "nnspec/1",
        "name": "mlp",
        "inputs": [{"name": "x", "shape": [16]}],
        "layers": [
            {
                "type": "dense",
                "name": "hidden",
                "units": 64,
                "activation": "tanh",
                "weights": {"file": "w1.npy"},
                "bias": {"file": "b1.npy"},
            },
            {"type": "dense", "name": "out", "units": 8, "weights": {"file": "w2.npy"}},
        ],
    }
    path = folder / "mlp.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def compiled(cli: Any, tmp_path: Path) -> tuple[Path, Path]:
    """The MLP's spec and its model, compiled with --external-data into `out/`."""
    spec = mlp(tmp_path)
    (tmp_path / "out").mkdir()
    model = tmp_path / "out" / "mlp.onnx"
    result = cli("compile", spec, "-o", model, "--external-data")
    assert result.exit_code == 0, result.output
    assert f"wrote {model} and {model}.data" in result.output
    return spec, model


def external_entries(model: Path) -> dict[str, dict[str, str]]:
    proto = onnx.load(model, load_external_data=False)
    return {
        t.name: {e.key: e.value for e in t.external_data}
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
    }


# --- writing ------------------------------------------------------------------------------------------


def test_external_data_goes_to_one_file_beside_the_model(compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    assert sorted(p.name for p in model.parent.iterdir()) == ["mlp.onnx", "mlp.onnx.data"]  # no temporary files
    entries = external_entries(model)
    assert W2.nbytes >= EXTERNAL_MIN_BYTES > B1.nbytes
    assert sorted(entries) == ["hidden.weights", "out.weights"]  # the bias and constants stay inside
    for entry in entries.values():
        assert entry["location"] == "mlp.onnx.data"  # relative, beside the model
        assert int(entry["offset"]) % 64 == 0
    onnx.checker.check_model(str(model), full_check=True)
    loaded = onnx.load(model)  # onnx's own reader of external data
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    np.testing.assert_array_equal(arrays["hidden.weights"], W1)
    np.testing.assert_array_equal(arrays["out.weights"], W2)
    np.testing.assert_array_equal(arrays["hidden.bias"], B1)
    for tensor in loaded.graph.initializer:
        tensor.ClearField("data_location")  # onnx.load marks the tensors it read DEFAULT
    assert to_bytes(loaded) == to_bytes(nnspec.to_onnx(nnspec.load(spec)))  # the self-contained export, to the bit


def test_onnxruntime_opens_the_written_files(compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    x = RNG.standard_normal((5, 16)).astype(np.float32)
    (got,) = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, nnspec.to_numpy(nnspec.load(spec)).run({"x": x})["out"], rtol=1e-5, atol=1e-5)


def test_an_existing_model_and_data_file_are_replaced_whole(cli: Any, compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    expected = model.read_bytes(), Path(f"{model}.data").read_bytes()
    model.write_bytes(b"old model" * 1000)
    Path(f"{model}.data").write_bytes(b"old data" * 10_000)
    result = cli("compile", spec, "-o", model, "--external-data", "--no-check")
    assert result.exit_code == 0, result.output
    assert (model.read_bytes(), Path(f"{model}.data").read_bytes()) == expected
    assert sorted(p.name for p in model.parent.iterdir()) == ["mlp.onnx", "mlp.onnx.data"]


def test_a_failed_write_replaces_nothing_and_leaves_no_temporary_file(
    cli: Any, compiled: tuple[Path, Path], monkeypatch: Any
) -> None:
    spec, model = compiled
    before = model.read_bytes(), Path(f"{model}.data").read_bytes()

    def fail_halfway(f: Any, pieces: Any, written: Any) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nnspec.api._write_pieces", fail_halfway)
    result = cli("compile", spec, "-o", model, "--external-data", "--no-check")
    assert result.exit_code == 2 and "No space left on device" in result.stderr, result.output
    assert (model.read_bytes(), Path(f"{model}.data").read_bytes()) == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["mlp.onnx", "mlp.onnx.data"]


def test_a_data_file_left_by_an_earlier_compile_is_named_not_removed(cli: Any, compiled: tuple[Path, Path]) -> None:
    """Compiled again without --external-data, the model holds its weights: the old data file beside it is told
    about on stderr (it is the user's to delete) and left as it was."""
    spec, model = compiled
    old = Path(f"{model}.data").read_bytes()
    result = cli("compile", spec, "-o", model, "--no-check")
    assert result.exit_code == 0, result.output
    assert f"note: {model}.data is not used by the new mlp.onnx" in result.stderr
    assert Path(f"{model}.data").read_bytes() == old and not external_entries(model)
    again = cli("compile", spec, "-o", model, "--external-data", "--no-check")
    assert again.exit_code == 0 and "is not used" not in again.stderr


def test_small_models_are_still_one_self_contained_file(cli: Any, tmp_path: Path) -> None:
    spec = mlp(tmp_path)
    result = cli("compile", spec, "-o", tmp_path / "one.onnx")
    assert result.exit_code == 0, result.output
    assert not Path(f"{tmp_path / 'one.onnx'}.data").exists()
    assert (tmp_path / "one.onnx").read_bytes() == to_bytes(nnspec.to_onnx(nnspec.load(spec)))


def test_above_protobufs_limit_the_weights_go_to_external_data(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The switch is automatic: tested with the limit lowered below this model's 7 KiB, not with 2 GiB."""
    monkeypatch.setattr("nnspec.limits.PROTOBUF_MAX_BYTES", 4096)
    spec = mlp(tmp_path)
    result = cli("compile", spec, "-o", tmp_path / "big.onnx")
    assert result.exit_code == 0, result.output
    assert "big.onnx.data" in result.output
    assert sorted(external_entries(tmp_path / "big.onnx")) == ["hidden.weights", "out.weights"]
    assert cli("check", spec, "--onnx", tmp_path / "big.onnx").exit_code == 0


def test_a_model_protobuf_cannot_hold_is_refused_as_bytes(monkeypatch: Any) -> None:
    monkeypatch.setattr("nnspec.limits.PROTOBUF_MAX_BYTES", 100)  # the party model is ~800 bytes
    with pytest.raises(nnspec.LimitError, match="external data"):
        to_bytes(nnspec.to_onnx(nnspec.from_dict(PARTY)))


@pytest.mark.parametrize("example", [ex for t in LAYERS.values() for ex in t.examples], ids=lambda ex: ex["name"])
def test_the_written_pieces_are_the_models_serialization(example: dict[str, Any]) -> None:
    """A self-contained file is written from the arrays' own buffers, bit for bit what protobuf writes."""
    exported = export(nnspec.graph(nnspec.from_dict(example)))
    pieces = b"".join(bytes(p) for p in exported.pieces())
    assert (
        pieces == exported.proto().SerializeToString(deterministic=True) == to_bytes(to_onnx(exported_graph(example)))
    )
    assert exported.size() == len(pieces)


def exported_graph(example: dict[str, Any]) -> Any:
    return nnspec.graph(nnspec.from_dict(example))


# --- checking and running -------------------------------------------------------------------------------


def test_check_passes_on_the_spec_and_on_the_model_file(cli: Any, compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    assert cli("check", spec).exit_code == 0
    result = cli("check", spec, "--onnx", model)
    assert result.exit_code == 0, result.output
    assert "the file is the spec's export" in result.output
    result = cli("check", spec, "--onnx", model, "--runner", "onnx-reference")
    assert result.exit_code == 0, result.output


def test_check_reads_the_weights_from_the_data_file(cli: Any, compiled: tuple[Path, Path], tmp_path: Path) -> None:
    """One weight changed in the data file (not in the .onnx) is found and named, and the reproduction
    written for it is one self-contained model."""
    spec, model = compiled
    entry = external_entries(model)["out.weights"]
    data = bytearray(Path(f"{model}.data").read_bytes())
    offset = int(entry["offset"])
    weights = np.frombuffer(data, np.float32, W2.size, offset).copy()
    weights[3] *= 1.5
    data[offset : offset + W2.nbytes] = weights.tobytes()
    Path(f"{model}.data").write_bytes(bytes(data))
    result = cli("check", spec, "--onnx", model, "--repro", tmp_path / "repro")
    assert result.exit_code == 1, result.output
    assert "layer 'out', weights[0, 3]" in result.output
    repro = onnx.load(tmp_path / "repro" / "onnx" / "model.onnx")
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in repro.graph.initializer)


def test_run_with_onnxruntime_matches_numpy(cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("nnspec.limits.PROTOBUF_MAX_BYTES", 4096)  # a model that needs external data
    spec = mlp(tmp_path)
    np.save(tmp_path / "x.npy", RNG.standard_normal((3, 16)).astype(np.float32))
    outputs = {}
    for backend in ("numpy", "onnxruntime"):
        result = cli("run", spec, "-i", tmp_path / "x.npy", "-o", tmp_path / f"{backend}.npy", "--backend", backend)
        assert result.exit_code == 0, result.output
        outputs[backend] = np.load(tmp_path / f"{backend}.npy")
    np.testing.assert_allclose(outputs["onnxruntime"], outputs["numpy"], rtol=1e-5, atol=1e-5)


def test_the_data_file_is_mapped_not_read_into_the_model(compiled: tuple[Path, Path]) -> None:
    """The weights reach onnxruntime as read-only maps of the data file; the model's bytes stay as they are."""
    _, model = compiled
    _, data = open_model(model.read_bytes(), str(model), model.parent)
    assert data.proto == model.read_bytes()
    assert sorted(data.weights) == ["hidden.weights", "out.weights"]
    for array in data.weights.values():
        assert not array.flags.writeable and not array.flags.owndata
    np.testing.assert_array_equal(data.weights["hidden.weights"], W1)


def test_a_data_file_in_a_subfolder_is_read(cli: Any, compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    (model.parent / "weights").mkdir()
    Path(f"{model}.data").rename(model.parent / "weights" / "mlp.bin")
    relocate(model, "weights/mlp.bin", "*")
    assert cli("check", spec, "--onnx", model).exit_code == 0


def test_a_model_given_as_bytes_must_be_self_contained(compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    with pytest.raises(nnspec.NNSpecError, match="give its path"):
        nnspec.check(nnspec.load(spec), onnx_model=model.read_bytes())


# --- refused: external data outside the model's folder --------------------------------------------------


def relocate(model: Path, location: str, name: str = "hidden.weights") -> None:
    """Point one tensor's external data (or all, for name '*') at `location`."""
    proto = onnx.load(model, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and name in ("*", tensor.name):
                entry.value = location
    model.write_bytes(proto.SerializeToString())


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("/etc/passwd", "an absolute path"),
        ("{outside}", "an absolute path"),
        ("../mlp.onnx.data", "'..' leads out of the folder"),
        ("sub/../mlp.onnx.data", "'..' leads out of the folder"),
        ("link.data", "a link to"),
        ("missing.data", "no such file"),
    ],
)
def test_external_data_outside_the_models_folder_is_refused(
    cli: Any, compiled: tuple[Path, Path], location: str, why: str
) -> None:
    spec, model = compiled
    outside = model.parent.parent / "outside.data"
    outside.write_bytes(Path(f"{model}.data").read_bytes())  # a copy that would pass the check if it were read
    os.symlink(outside, model.parent / "link.data")
    location = location.format(outside=outside)
    relocate(model, location)
    message = assert_refused(cli("check", spec, "--onnx", model), "tensor 'hidden.weights'", repr(location), why)
    assert "inside the model's folder" in message


def test_an_extent_past_the_end_of_the_data_file_is_refused(cli: Any, compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    data = Path(f"{model}.data")
    data.write_bytes(data.read_bytes()[:-16])
    assert_refused(cli("check", spec, "--onnx", model), "tensor 'out.weights'", "'mlp.onnx.data'", "bytes")


def test_external_data_over_the_weight_limit_is_refused_unread(cli: Any, compiled: tuple[Path, Path]) -> None:
    spec, model = compiled
    result = cli("--limit", "max-weight-bytes=4KiB", "check", spec, "--onnx", model)
    assert result.exit_code == 2 and "NNSPEC_MAX_WEIGHT_BYTES" in result.stderr


@pytest.mark.parametrize("external", [False, True])
def test_writing_reports_every_byte_for_the_progress_bar(tmp_path: Path, external: bool) -> None:
    spec = nnspec.load(mlp(tmp_path))
    seen: list[int] = []
    written = nnspec.api.write_onnx(
        nnspec.api.export(spec), tmp_path / "m.onnx", external_data=external, written=seen.append
    )
    # the pieces counted are the whole file, or the whole data file (the small model itself is written at once)
    assert sum(seen) == written[0].stat().st_size and len(seen) > 1
