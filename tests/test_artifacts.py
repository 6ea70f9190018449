"""Artifacts survive interruption: a compile killed at any moment leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

BIG = {
    "format": "nnspec/1",
    "name": "big",
    "inputs": [{"name": "x", "shape": [1536]}],
    "layers": [
        {"type": "dense", "units": 1536, "activation": "relu", "weights": {"init": "he_normal", "seed": i}}
        for i in range(4)
    ],
}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_during_compile_never_leaves_a_torn_file(tmp_path: Path) -> None:
    spec = tmp_path / "big.json"
    spec.write_text(json.dumps(BIG))
    target = tmp_path / "big.onnx"
    old = b"the previous model"
    outcomes = set()
    # Kill at several moments: while loading, exporting, writing (36 MB), and after it finished.
    for delay in (0.3, 0.8, 1.3, 1.8, 2.5, 4.0):
        target.write_bytes(old)
        process = subprocess.Popen(
            [sys.executable, "-m", "nnspec", "compile", str(spec), "-o", str(target), "--no-check"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        data = target.read_bytes()
        if data == old:
            outcomes.add("old")
        else:
            model = onnx.load_from_string(data)  # complete, or this raises
            onnx.checker.check_model(model)
            assert model.graph.name == "big"
            outcomes.add("new")
    assert "old" in outcomes  # a kill 0.3 s in lands before the model exists; later ones depend on the machine


def test_compiles_in_separate_processes_are_byte_identical(tmp_path: Path) -> None:
    """Two `nnspec compile` runs, in fresh interpreters with different hash seeds and from different
    folders, write the same bytes: a compiled model can be pinned by its hash."""
    spec = {
        "format": "nnspec/1",
        "name": "pinned",
        "inputs": [{"name": "a", "shape": [3]}, {"name": "b", "shape": [2]}],
        "layers": [
            {"type": "dense", "name": "ha", "units": 4, "activation": {"name": "leaky_relu", "alpha": 0.2},
             "weights": {"init": "glorot_uniform", "seed": 1}, "inputs": ["a"]},
            {"type": "dense", "name": "hb", "units": 4, "activation": "gelu",
             "weights": {"init": "he_normal", "seed": 2}, "bias": {"init": "normal", "seed": 3}, "inputs": ["b"]},
            {"type": "dense", "name": "out", "units": 2, "activation": "softmax",
             "weights": {"init": "uniform", "seed": 4}, "inputs": ["ha"]},
        ],
        "outputs": ["out", "hb"],
    }  # fmt: skip
    written = []
    for hash_seed in ("1", "2"):
        folder = tmp_path / f"run{hash_seed}"
        folder.mkdir()
        (folder / "m.json").write_text(json.dumps(spec))
        subprocess.run(
            [sys.executable, "-m", "nnspec", "compile", "m.json", "-o", "m.onnx"],
            cwd=folder,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            check=True,
            capture_output=True,
        )
        written.append((folder / "m.onnx").read_bytes())
    assert written[0] == written[1]


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """A compiled model is shipped as written: readable per the umask like any new file (mkstemp alone
    would leave it owner-only), and a replaced file keeps its own permissions."""
    from nnspec.files import atomic_write

    old = os.umask(0o022)
    try:
        fresh = atomic_write(tmp_path / "m.onnx", b"model")
        assert fresh.stat().st_mode & 0o777 == 0o644
        fresh.chmod(0o640)
        atomic_write(fresh, b"model, again")
        assert fresh.stat().st_mode & 0o777 == 0o640 and fresh.read_bytes() == b"model, again"
    finally:
        os.umask(old)
