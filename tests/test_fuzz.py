"""Fuzzing: mutated specs and random bytes always end in exit 0 or a clean exit 2, never a traceback.

CI runs a fixed, derandomized sample; a longer run is
`NNSPEC_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py --hypothesis-profile=dev -q`.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

from conftest import PARTY, THREE_LAYER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("NNSPEC_FUZZ_EXAMPLES", "300"))
# A spec validates in milliseconds; 5 s per example is a hang, not a slow machine.
PER_EXAMPLE_SECONDS = 5.0

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


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    spec = copy.deepcopy(draw(st.sampled_from([PARTY, THREE_LAYER])))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(spec) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "special", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        else:
            parent[path[-1]] = copy.deepcopy(draw(json_values if action == "replace" else special))
    text = json.dumps(spec)
    if draw(st.integers(0, 9)) == 0:  # literals JSON does not allow
        text = text.replace("-4", draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"])), 1)
    if draw(st.integers(0, 19)) == 0:  # deep nesting
        text = "[" * 5000 + "]" * 5000
    if draw(st.integers(0, 9)) == 0:  # a key written twice, which must be refused
        text = text.replace('"name": ', '"name": "twice", "name": ', 1)
    if draw(st.integers(0, 4)) == 0:  # byte-level damage around the tokens the pre-parse scan reads
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = (
                text[:at] + draw(st.sampled_from(['"', "\\", "[", "]", "{", "}", ":", ",", '\\"', "\\u00"])) + text[at:]
            )
    return text


def _assert_clean(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: "), result.stderr


@settings(
    max_examples=EXAMPLES,
    deadline=PER_EXAMPLE_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=mutated_specs())
def test_mutated_specs_end_cleanly(cli, tmp_path_factory, text: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "spec.json"
    path.write_text(text)
    _assert_clean(cli("validate", path))
    result = cli("compile", path, "-o", folder / "m.onnx", "--no-check")
    _assert_clean(result)
    assert (folder / "m.onnx").exists() == (result.exit_code == 0)


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
    import nnspec
    from nnspec.onnx_export import to_bytes

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
