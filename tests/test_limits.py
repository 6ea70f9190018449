"""Resource limits: every limit refuses what is over it, with exit 2 and its variable's name, before the
work it guards is done; each is set by environment variable or `--limit`, documented, and reasoned.

The table HOSTILE holds one input per limit and is checked against `Limits` itself, so that a new limit
cannot land without a test that it bites.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import resource
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import PARTY, THREE_LAYER
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bad_input import assert_refused

import nnspec
from nnspec import jsontext
from nnspec.errors import InputDataError, NNSpecError, SpecError, WeightError
from nnspec.files import load_arrays
from nnspec.ir import TensorInfo
from nnspec.limits import Limits, describe, env_var, parse_value, show

ROOT = Path(__file__).resolve().parent.parent


def write(folder: Path, spec: dict[str, Any] | bytes, name: str = "model.json") -> Path:
    path = folder / name
    path.write_bytes(spec if isinstance(spec, bytes) else json.dumps(spec).encode())
    return path


def party_npz(folder: Path) -> Path:
    """The party neuron with its weights in an .npz member (144 bytes decompressed)."""
    np.savez(folder / "w.npz", w=np.array([[-4.0, 1.0]]))
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = {"file": "w.npz", "key": "w"}
    return write(folder, spec)


def big_batch(folder: Path) -> list[str]:
    spec = write(folder, PARTY)
    np.save(folder / "x.npy", np.zeros((100, 2)))  # 1.6 KiB as float64
    return ["run", str(spec), "--input", str(folder / "x.npy"), "-o", str(folder / "y.npy")]


# Per limit: the value it is set to, the command that must then be refused, and what the message names.
HOSTILE: dict[str, tuple[str, Callable[[Path], list[str]], str]] = {
    "max_weight_bytes": ("4", lambda d: ["validate", str(write(d, PARTY))], "layers[0].weights"),
    "max_parameters": ("3", lambda d: ["validate", str(write(d, THREE_LAYER))], "layers[0].weights"),
    "max_npz_member_bytes": ("100", lambda d: ["validate", str(party_npz(d))], "w.npz['w']"),
    "max_spec_bytes": ("100", lambda d: ["validate", str(write(d, PARTY))], "at most 100 B (NNSPEC_MAX_SPEC_BYTES)"),
    "max_json_values": ("10", lambda d: ["compile", str(write(d, PARTY)), "-o", str(d / "m.onnx")], "found more"),
    "max_json_depth": ("3", lambda d: ["compile", str(write(d, PARTY)), "-o", str(d / "m.onnx")], "nested at most 3"),
    "max_layers": ("2", lambda d: ["validate", str(write(d, THREE_LAYER))], "at most 2 layers"),
    "max_batch_bytes": ("1KiB", big_batch, "x.npy"),
}


def test_every_limit_has_a_hostile_case() -> None:
    assert set(HOSTILE) == set(Limits.names())


@pytest.mark.parametrize("name", Limits.names(), ids=lambda n: n.replace("_", "-"))
@pytest.mark.parametrize("how", ["option", "environment"])
def test_each_limit_refuses_what_is_over_it(
    name: str, how: str, tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    value, command, fragment = HOSTILE[name]
    args = command(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    if how == "option":
        result = cli("--limit", f"{name.replace('_', '-')}={value}", *args)
    else:
        monkeypatch.setenv(env_var(name), value)
        result = cli(*args)
    assert_refused(result, env_var(name), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    # ... and with the default, the same command succeeds: the limit, not the input, refused it.
    monkeypatch.delenv(env_var(name), raising=False)
    assert cli(*args).exit_code == 0


# --- at the value: `>` and not `>=` -----------------------------------------------------------------


def json_values(value: Any) -> int:
    """Values in a parsed JSON text: numbers, strings, arrays and objects (an object's keys are not values)."""
    if isinstance(value, dict | list):
        return 1 + sum(json_values(v) for v in (value.values() if isinstance(value, dict) else value))
    return 1


def json_depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON text."""
    if isinstance(value, dict | list):
        return 1 + max((json_depth(v) for v in (value.values() if isinstance(value, dict) else value)), default=0)
    return 0


def member_size(path: Path, member: str) -> int:
    with zipfile.ZipFile(path) as zf:
        return zf.getinfo(member).file_size


def validate(folder: Path, spec: dict[str, Any] = PARTY) -> list[str]:
    return ["validate", str(write(folder, spec))]


def spec_bytes(folder: Path) -> tuple[list[str], int]:
    args = validate(folder)
    return args, Path(args[1]).stat().st_size


def one_sample(folder: Path) -> tuple[list[str], int]:
    """`run` on one float32 sample [2] through a 2-unit layer: 8 bytes at every place the batch limit is checked
    (the .npy file's data, one sample of the input and of the layer's output, the batch's widest value)."""
    spec = {**PARTY, "layers": [{"type": "dense", "units": 2, "weights": [[1, 0], [0, 1]]}]}
    np.save(folder / "x.npy", np.zeros((1, 2), np.float32))
    return ["run", str(write(folder, spec)), "--input", str(folder / "x.npy"), "-o", str(folder / "y.npy")], 2 * 4


PARTY_NUMBERS = 3  # W [1, 2] and b [1]

# Per limit: a command, and how much of what that limit counts the command needs, counted here rather than by
# nnspec. With the limit at that value the command succeeds; at one less it is refused.
AT_THE_LIMIT: dict[str, Callable[[Path], tuple[list[str], int]]] = {
    "max_weight_bytes": lambda d: (validate(d), PARTY_NUMBERS * 4),  # float32
    "max_parameters": lambda d: (validate(d), PARTY_NUMBERS),
    "max_npz_member_bytes": lambda d: (["validate", str(party_npz(d))], member_size(d / "w.npz", "w.npy")),
    "max_spec_bytes": spec_bytes,
    "max_json_values": lambda d: (validate(d), json_values(PARTY)),
    "max_json_depth": lambda d: (validate(d), json_depth(PARTY)),
    "max_layers": lambda d: (validate(d, THREE_LAYER), len(THREE_LAYER["layers"])),
    "max_batch_bytes": one_sample,
}


def test_every_limit_has_a_case_at_its_value() -> None:
    assert set(AT_THE_LIMIT) == set(Limits.names())


@pytest.mark.parametrize("name", Limits.names(), ids=lambda n: n.replace("_", "-"))
def test_each_limit_allows_its_value_and_refuses_one_more(name: str, tmp_path: Path, cli: Callable[..., Any]) -> None:
    """A limit of N allows N (bytes, numbers, values, levels, layers) and refuses N + 1."""
    args, needed = AT_THE_LIMIT[name](tmp_path)
    option = name.replace("_", "-")
    assert_refused(cli("--limit", f"{option}={needed - 1}", *args), env_var(name))
    result = cli("--limit", f"{option}={needed}", *args)
    assert result.exit_code == 0, result.output


def test_limit_option_lasts_one_command(cli: Callable[..., Any], tmp_path: Path) -> None:
    spec = write(tmp_path, THREE_LAYER)
    assert cli("--limit", "max-layers=1", "validate", spec).exit_code == 2
    assert env_var("max_layers") not in os.environ
    assert cli("validate", spec).exit_code == 0


def test_limit_option_reaches_folder_workers(cli: Callable[..., Any], tmp_path: Path) -> None:
    for i in range(2):
        write(tmp_path, THREE_LAYER, f"net{i}.json")
    result = cli("--limit", "max-layers=1", "check", tmp_path, "--jobs", "2")
    assert result.exit_code == 2, result.output
    assert result.output.count("at most 1 layers") == 2, result.output


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("max-layer=3", "did you mean 'max-layers'?"),
        ("max-layers", "expected NAME=VALUE"),
        ("max-layers=1GiB", "expected a whole number, found '1GiB'"),
        ("max-weight-bytes=lots", "expected a number of bytes such as 1073741824 or 1GiB, found 'lots'"),
        ("max-weight-bytes=-1", "found '-1'"),
    ],
)
def test_bad_limit_option(item: str, fragment: str, cli: Callable[..., Any], tmp_path: Path) -> None:
    assert_refused(cli("--limit", item, "validate", write(tmp_path, PARTY)), fragment)


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("max_weight_bytes", "2GiB", 2 << 30),
        ("max_weight_bytes", "512 MiB", 512 << 20),
        ("max_weight_bytes", "1_000_000", 10**6),
        ("max_weight_bytes", "3GB", 3 * 10**9),
        ("max_spec_bytes", "10kib", 10 << 10),
        ("max_layers", "20000", 20_000),
    ],
)
def test_values_read_as_people_write_them(name: str, raw: str, value: int) -> None:
    assert parse_value(name, raw, "here") == value
    assert getattr(Limits.from_env({env_var(name): raw}), name) == value


def test_limits_command_shows_values_origins_and_reasons(cli: Callable[..., Any], monkeypatch: Any) -> None:
    monkeypatch.setenv("NNSPEC_MAX_LAYERS", "5")
    rows = {r["field"]: r for r in json.loads(cli("--limit", "max-json-depth=9", "limits", "--json").stdout)}
    assert set(rows) == set(Limits.names())
    # One spelling per audience: the name as --limit and the table write it, the field as nnspec.Limits does.
    assert all(row["name"] == field.replace("_", "-") for field, row in rows.items())
    assert (rows["max_layers"]["value"], rows["max_layers"]["set_by"]) == (5, "environment")
    assert (rows["max_json_depth"]["value"], rows["max_json_depth"]["set_by"]) == (9, "--limit")
    assert rows["max_weight_bytes"]["set_by"] == "default"
    table = cli("limits").stdout
    for name in Limits.names():
        assert name.replace("_", "-") in table


@pytest.mark.parametrize("name", Limits.names())
def test_every_default_is_documented_with_a_reason(name: str) -> None:
    """The README's Limits table names each limit's variable, default and reason, as the code does."""
    info = describe(name)
    assert len(info["why"]) > 30 and info["unit"] in ("bytes", "count")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Limits", 1)[1].split("\n## ", 1)[0]
    row = next((line for line in section.splitlines() if f"`{env_var(name)}`" in line), None)
    assert row is not None, f"README's Limits table has no row for {env_var(name)}"
    default = next(f.default for f in fields(Limits) if f.name == name)
    shown = show(name, default)
    assert shown in row, f"{shown!r} not in {row!r}"


# --- the defaults against hostile files -----------------------------------------------------------


def declare_size(data: bytes, member: str, size: int) -> bytes:
    """The zip `data` with `member`'s decompressed size rewritten to `size` in both of its headers."""
    out = bytearray(data)
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        for m in re.finditer(re.escape(signature), data):
            name_at = m.start() + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                struct.pack_into("<I", out, m.start() + offset, size)
    return bytes(out)


def test_zip_bomb_member_refused_before_it_is_inflated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member that declares 4 GiB is refused from the zip directory; no member is ever opened."""
    party_npz(tmp_path)
    bomb = tmp_path / "w.npz"
    bomb.write_bytes(declare_size(bomb.read_bytes(), "w.npy", 0xFFFFFFF0))

    def no_inflating(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_inflating)
    with pytest.raises(WeightError) as info:
        nnspec.load(tmp_path / "model.json")
    assert info.value.path == "layers[0].weights"
    assert "NNSPEC_MAX_NPZ_MEMBER_BYTES" in str(info.value) and "declares 4.0 GiB" in str(info.value)


def test_real_zip_bomb_input_refused(tmp_path: Path) -> None:
    """64 MiB of zeros deflate to 64 KiB; with a 1 MiB member limit the input is refused unread."""
    with zipfile.ZipFile(tmp_path / "x.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("p.npy", "w") as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f8", "fortran_order": False, "shape": (1 << 23, 3)}
            )
            zeros = bytes(1 << 20)
            for _ in range(64):
                member.write(zeros)
    assert (tmp_path / "x.npz").stat().st_size < 1 << 20
    with pytest.raises(InputDataError, match=r"NNSPEC_MAX_NPZ_MEMBER_BYTES.*x\.npz\['p'\], which declares 64\.0 MiB"):
        load_arrays(tmp_path / "x.npz", (TensorInfo("p", (3,)),), Limits(max_npz_member_bytes=1 << 20))  # fmt: skip


def test_lying_zip_directory_reads_no_more_than_the_header_declares(tmp_path: Path) -> None:
    """A directory that understates a member's size does not help: the .npy header's shape bounds the read."""
    party_npz(tmp_path)
    bomb = tmp_path / "w.npz"
    bomb.write_bytes(declare_size(bomb.read_bytes(), "w.npy", 10))
    with pytest.raises(WeightError, match="damaged"):
        nnspec.load(tmp_path / "model.json")


@pytest.mark.parametrize("depth", [65, 1000, 5000, 200_000])
def test_deep_nesting_refused_before_parsing(depth: int, tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Past 64 levels the text is refused at the first bracket too deep, below orjson's own fixed 1024."""
    before = b'{"format": "nnspec/1", "name": "x", "description": '
    text = before + b"[" * depth + b"]" * depth + b"}"
    message = assert_refused(cli("validate", write(tmp_path, text)), "NNSPEC_MAX_JSON_DEPTH")
    assert f"line 1, column {len(before) + 64}: expected arrays and objects nested at most 64 deep" in message


def test_many_values_refused_before_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """9M zeros (18 MB of text, ~100 MB once parsed) are refused without parsing."""
    text = b'{"format": "nnspec/1", "name": "x", "layers": [{"weights": [' + b"0," * 9_000_000 + b"0]}]}"
    monkeypatch.setattr(jsontext, "loads", lambda data: pytest.fail("parsed"))
    with pytest.raises(SpecError, match=r"at most 8,388,608 JSON values \(NNSPEC_MAX_JSON_VALUES\)"):
        nnspec.load(write(tmp_path, text))


DUPLICATES = [
    (b'{"format": "nnspec/1", "format": "nnspec/1"}', "'format' again (first at line 1, column 2)", (1, 24)),
    (b'{"layers": [{"weights": [[1]],\n  "weights": [[2]]}]}', "'weights' again (first at line 1, column 14)", (2, 3)),
    (b'{"name": "a", "n\\u0061me": "b"}', "'name' again", (1, 15)),
]


@pytest.mark.parametrize(("text", "fragment", "where"), DUPLICATES)
def test_duplicate_keys_refused(text: bytes, fragment: str, where: tuple[int, int], tmp_path: Path) -> None:
    """A reviewer reads the first of two equal keys; orjson would keep the last. Neither wins: refused."""
    with pytest.raises(SpecError) as info:
        nnspec.load(write(tmp_path, text))
    assert f"line {where[0]}, column {where[1]}: expected each key once in an object, found {fragment}" in str(
        info.value
    )


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": {"k": 1}, "b": {"k": 2}}',  # the same key in different objects
        b'{"a": "\\"k\\": 1, \\"k\\": 2", "[": "{", "{": [1, {"k": [[]]}]}',  # keys and brackets inside strings
        b'{"a": [{"k": 1}, {"k": 2}]}',
    ],
)
def test_equal_keys_in_different_objects_are_fine(text: bytes) -> None:
    assert jsontext.problem(text, Limits()) is None


def test_duplicate_keys_in_input_json_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b'{"p": [[1, 2, 3]], "p": [[4, 5, 6]]}')
    with pytest.raises(InputDataError, match="found 'p' again"):
        load_arrays(path, (TensorInfo("p", (3,)),))


def test_malformed_json_is_still_explained_by_the_parser(tmp_path: Path) -> None:
    """The pre-parse scan leaves malformed text to the parser's line-and-column message."""
    with pytest.raises(SpecError, match="malformed JSON at line 1"):
        nnspec.load(write(tmp_path, b'{"name": "unterminated'))


def test_limits_passed_in_python(tmp_path: Path) -> None:
    path = write(tmp_path, THREE_LAYER)
    with pytest.raises(nnspec.LimitError, match=r"at most 2 layers"):
        nnspec.load(path, limits=nnspec.Limits(max_layers=2))
    with pytest.raises(SpecError, match="nested at most 3 deep"):
        nnspec.load(path, limits=nnspec.Limits(max_json_depth=3))
    assert nnspec.load(path, limits=nnspec.Limits(max_json_depth=4)).name == THREE_LAYER["name"]


def test_errors_are_nnspec_errors() -> None:
    with pytest.raises(NNSpecError):
        Limits.from_env({"NNSPEC_MAX_LAYERS": "many"})


# --- the pre-parse scan against a reference -------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "\u00e9", "k"])


@st.composite
def json_trees(draw: st.DrawFn, depth: int = 0) -> tuple[str, int, bool]:
    """(JSON text with random spacing and escapes, its nesting depth, whether an object repeats a key)."""
    space = draw(st.sampled_from(["", " ", "\n  "]))
    kind = draw(st.sampled_from(["number", "string", "array", "object"]) if depth < 8 else st.just("number"))
    if kind == "number":
        return draw(st.sampled_from(["0", "-1.5e3", "7"])), 0, False
    if kind == "string":  # strings that look like structure must not count as structure
        text = draw(st.sampled_from(['"x"', '"[{"', '"}]:"', '"\\"k\\": 1"', '"\\\\"', '"a\\\\\\"b"']))
        return text, 0, False
    children = [draw(json_trees(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
    deepest = 1 + max((c[1] for c in children), default=0)
    repeated = any(c[2] for c in children)
    if kind == "array":
        return "[" + f",{space}".join(c[0] for c in children) + "]", deepest, repeated
    keys = [draw(KEYS) for _ in children]
    written = [json.dumps(k, ensure_ascii=draw(st.booleans())) for k in keys]
    members = [f"{space}{w}{space}:{space}{c[0]}" for w, c in zip(written, children, strict=True)]
    return "{" + ",".join(members) + "}", deepest, repeated or len(set(keys)) < len(keys)


@settings(max_examples=300, deadline=None)
@given(tree=json_trees(), limit=st.integers(1, 6))
def test_scan_agrees_with_a_parser(tree: tuple[str, int, bool], limit: int) -> None:
    """Depth and repeated keys from the scan equal those of the parsed structure, for any spacing and escapes."""
    text, depth, repeated = tree
    assert orjson.loads(text) is not None or text == "null"  # the generator writes valid JSON
    found = jsontext.problem(text.encode(), Limits(max_json_depth=limit))
    expected = {"nested at most"} if depth > limit else set()
    expected |= {"each key once"} if repeated else set()
    if not expected:
        assert found is None, (text, found)
    else:  # the first problem in the text is the one reported
        assert found is not None and any(e in found.message for e in expected), (text, found)


# --- memory: hostile files end in exit 2 within a small address space -----------------------------

ADDRESS_SPACE = 768 << 20  # nnspec validate needs ~100 MiB; each file below would need over 1 GiB if read


def hostile_npy_header(folder: Path) -> Path:
    """A 128-byte .npy file whose header declares a [100000, 100000] float32 array (37 GiB)."""
    with (folder / "w.npy").open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)})
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = {"file": "w.npy"}
    return write(folder, spec)


def zip_bomb(folder: Path) -> Path:
    """A real .npz bomb: 1 GiB of zeros in a member of about 1 MiB, for weights of shape [1, 2]."""
    with zipfile.ZipFile(folder / "w.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("w.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (1 << 27,)})
            zeros = bytes(1 << 24)
            for _ in range(64):
                member.write(zeros)
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = {"file": "w.npz", "key": "w"}
    return write(folder, spec)


def declared_bomb(folder: Path) -> Path:
    path = party_npz(folder)
    (folder / "w.npz").write_bytes(declare_size((folder / "w.npz").read_bytes(), "w.npy", 0xFFFFFFF0))
    return path


def many_containers(folder: Path) -> Path:
    """96 MiB of `[],` (under the spec size limit): 33M lists, about 2 GiB once parsed."""
    return write(folder, b'{"format": "nnspec/1", "name": "x", "layers": [' + b"[]," * (32 << 20) + b"[]]}")


def deep(folder: Path) -> Path:
    return write(
        folder, b'{"format": "nnspec/1", "name": "x", "description": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS bounds memory this way on Linux only")
@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (hostile_npy_header, "expected shape [1, 2]"),
        (zip_bomb, "inflates to"),
        (declared_bomb, "NNSPEC_MAX_NPZ_MEMBER_BYTES"),
        (many_containers, "NNSPEC_MAX_JSON_VALUES"),
        (deep, "NNSPEC_MAX_JSON_DEPTH"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_hostile_files_are_refused_within_a_small_address_space(build: Any, fragment: str, tmp_path: Path) -> None:
    """The file is refused from what it declares; reading it would exhaust the address space."""
    spec = build(tmp_path)

    def small_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run(
        [sys.executable, "-m", "nnspec", "validate", str(spec)],
        preexec_fn=small_address_space,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert fragment in done.stderr, done.stderr


def test_running_out_of_memory_is_a_clean_exit(cli: Callable[..., Any], tmp_path: Path, monkeypatch: Any) -> None:
    """Should an input get past the limits and exhaust memory, the user still gets one message, not a traceback."""

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError

    monkeypatch.setattr(importlib.import_module("nnspec.graph"), "materialize", exhausted)
    message = cli("validate", write(tmp_path, PARTY)).stderr
    assert message.startswith("error: out of memory") and "nnspec limits" in message


def test_a_model_over_protobufs_limit_is_written_with_external_data(cli, tmp_path: Path, monkeypatch: Any) -> None:
    """Weights allowed by max-weight-bytes (4 GiB) may make a model larger than protobuf can write (2 GiB):
    its weights then go to a data file beside it (tests/test_external_data.py has the rest)."""
    monkeypatch.setattr("nnspec.limits.PROTOBUF_MAX_BYTES", 1000)  # this model is ~4.6 KiB
    layer = {"type": "dense", "name": "wide", "units": 64, "weights": {"init": "glorot_uniform", "seed": 1}}
    spec = {**PARTY, "inputs": [{"name": "p", "shape": [16]}], "layers": [layer]}
    result = cli("compile", write(tmp_path, spec), "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".json") == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx").stat().st_size < 1000


def test_limit_may_follow_the_command(tmp_path: Path) -> None:
    """`nnspec validate x.json --limit max-layers=2` works as `nnspec --limit max-layers=2 validate x.json`."""
    from nnspec.cli import hoist_limits

    assert hoist_limits(["check", "x.json", "--limit", "a=1", "--limit=b=2", "--json", "r.json"]) == [
        "--limit",
        "a=1",
        "--limit=b=2",
        "check",
        "x.json",
        "--json",
        "r.json",
    ]
    spec = write(tmp_path, THREE_LAYER)
    done = subprocess.run(
        [sys.executable, "-m", "nnspec", "validate", str(spec), "--limit", "max-layers=2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "at most 2 layers (NNSPEC_MAX_LAYERS)" in done.stderr, done.stderr
