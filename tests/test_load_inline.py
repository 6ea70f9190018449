"""Reading inline weights: the pre-parse checks (vectorized over the text) and large arrays read as arrays.

The scan in `nnspec.jsontext` finds quotes, brackets and braces with NumPy and works out strings, depth
and keys over those positions, in rounds. Its witness is the regex scan it replaced, kept below as
`regex_problem`: on any text, valid or not, both report the same problem at the same line and column.
Rounds and blocks are shrunk to a few bytes in most tests, so that strings, objects and depth cross
round boundaries.

`jsontext.parse` reads each large array of numbers one row at a time into a NumPy array; its witness
is `orjson.loads` + `np.asarray`: the same values, the same error for a malformed text, and the same
nested lists wherever an array is not wanted or is not a rectangular array of numbers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import PARTY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnspec
from nnspec import jsontext
from nnspec.errors import SpecError
from nnspec.fields import WEIGHT_SCHEMA, Inline
from nnspec.layers import LAYERS
from nnspec.limits import Limits, env_var
from nnspec.spec import _WEIGHT_FIELDS, parse_json

# --- the witness: the regex scan that jsontext used before ----------------------------------------------

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_STEP = re.compile(rb'[^"\[\]{}]*(?:' + _STRING + rb'(?!\s*:)[^"\[\]{}]*)*(?:([\[{])|([\]}])|(' + _STRING + rb")\s*:)")


def regex_problem(data: bytes, limits: Limits) -> jsontext.Problem | None:
    """nnspec 0.1's `jsontext.problem`: one regex step per bracket or key, in Python."""
    value_limit = limits.max_json_values
    values = data.count(b",") + 1
    too_many = (
        f"expected at most {value_limit:,} JSON values ({env_var('max_json_values')}), found more ({{}}); "
        "large arrays belong in .npy/.npz files"
    ).format
    if values > value_limit:
        return jsontext.Problem(too_many(f"the text has {values - 1:,} commas"))
    depth_limit = limits.max_json_depth
    open_: list[dict[bytes, int] | None] = []
    pos = 0
    while (m := _STEP.match(data, pos)) is not None:
        pos = m.end()
        if m.lastindex == 1:
            values += 1
            open_.append({} if m[1] == b"{" else None)
            if values > value_limit:
                return jsontext.Problem(
                    too_many("counting commas and brackets up to here"), *line_column(data, pos - 1)
                )
            if len(open_) > depth_limit:
                return jsontext.Problem(
                    f"expected arrays and objects nested at most {depth_limit} deep ({env_var('max_json_depth')}), "
                    "found deeper",
                    *line_column(data, pos - 1),
                )
        elif m.lastindex == 2:
            if open_:
                open_.pop()
        elif open_ and (keys := open_[-1]) is not None:
            raw = m[3]
            key = unescaped(raw) if b"\\" in raw else raw
            at = m.start(3)
            first = keys.setdefault(key, at)
            if first != at:
                line, column = line_column(data, first)
                return jsontext.Problem(
                    f"expected each key once in an object, found {key[1:-1].decode('utf-8', 'replace')!r} again "
                    f"(first at line {line}, column {column}); JSON readers disagree on which one counts",
                    *line_column(data, at),
                )
    return None


def unescaped(raw: bytes) -> bytes:
    try:
        return b'"' + str(orjson.loads(raw)).encode() + b'"'
    except orjson.JSONDecodeError:
        return raw


def line_column(data: bytes, pos: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, pos) + 1
    return data.count(b"\n", 0, pos) + 1, len(data[start:pos].decode("utf-8", "replace")) + 1


@contextlib.contextmanager
def sizes(block: int | None = None, round_: int | None = None, array: int | None = None) -> Iterator[None]:
    """jsontext's block, round and array sizes set small (restored after), to reach its edge cases."""
    saved = jsontext._BLOCK, jsontext._ROUND, jsontext._ARRAY_BYTES
    jsontext._BLOCK = block or saved[0]
    jsontext._ROUND = round_ or saved[1]
    jsontext._ARRAY_BYTES = array or saved[2]
    try:
        yield
    finally:
        jsontext._BLOCK, jsontext._ROUND, jsontext._ARRAY_BYTES = saved


# --- the scan agrees with the regex scan ----------------------------------------------------------------

# Pieces of JSON, and of malformed JSON: keys plain, spaced and escaped, strings holding structure,
# escapes, a backslash before a line break (a string the scan cannot read), stray quotes and brackets.
FRAGMENTS = [
    "[", "]", "{", "}", "[", "]", "{", "}", ",", ":", " ", "\n", "1", "-2.5e3", "0,0,0,0,", "true",
    '"a":', '"a" :', '"a"\n:', '"\\u0061":', '"b":', '"\\u00e9":', '"\u00e9":', '"a"', '"x"', '"[{"', '"}]:,"',
    '"\\"k\\": 1"', '"\\\\"', '"a\\\\\\"b"', '"', "\\", '"x\\\ny"', '"\\', "\u00e9",
]  # fmt: skip


@st.composite
def texts(draw: st.DrawFn) -> bytes:
    pieces = draw(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
    return "".join(pieces).encode()


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """Valid JSON: nested objects (keys often repeated) and arrays, written with random spacing."""
    value = draw(
        st.recursive(
            st.integers(-5, 5) | st.sampled_from(["s", "[", "{\\", '"']),
            lambda children: (
                st.lists(children, max_size=4)
                | st.lists(st.tuples(st.sampled_from(["a", "b", "\u00e9"]), children), max_size=4)
            ),
            max_leaves=25,
        )
    )
    space = draw(st.sampled_from(["", " ", "\n "]))
    escape = draw(st.booleans())

    def write(v: Any) -> str:
        if isinstance(v, list) and v and isinstance(v[0], tuple):  # an object, its keys possibly repeated
            return (
                "{"
                + f",{space}".join(f"{json.dumps(k, ensure_ascii=escape)}{space}:{space}{write(x)}" for k, x in v)
                + "}"
            )
        if isinstance(v, list):
            return "[" + f",{space}".join(write(x) for x in v) + "]"
        return json.dumps(v)

    return write(value).encode()


LIMITS = st.builds(Limits, max_json_depth=st.integers(1, 8), max_json_values=st.integers(1, 80))


@settings(max_examples=1500, deadline=None)
@given(text=texts() | json_texts(), limits=LIMITS, block=st.sampled_from([None, 1, 3, 16]), round_=st.integers(1, 8))
def test_scan_agrees_with_the_regex_scan(text: bytes, limits: Limits, block: int | None, round_: int) -> None:
    with sizes(block, round_):
        assert jsontext.problem(text, limits) == regex_problem(text, limits), text


@pytest.mark.parametrize("block", [None, 5])
@pytest.mark.parametrize(
    ("text", "found"),
    [
        # a repeated key after a long array of numbers
        (b'{"weights": [' + b"0.5, " * 20_000 + b'1], "bias": [1], "weights": [2]}', "'weights' again"),
        # ... escaped, and inside an array of objects
        (b'{"layers": [{"a": [[' + b"1," * 30_000 + b'1]], "\\u0061": 2}]}', "'a' again"),
        # brackets, braces, quotes and commas inside strings are not structure
        (b'{"a": "[[[[{{{{,,,,\\"\\"", "b": [' + b"1," * 30_000 + b'1], "a": 3}', "'a' again"),
        (b'{"a": "[[[[[[[[[[[[[[[[", "b": [' + b"1," * 30_000 + b"1]}", None),
        # a key written only inside a string is no key; one after a string ending in a backslash is
        (b'{"s": "\\"s\\": 1", "t": 2}', None),
        (b'{"s": "\\\\", "s": 2}', "'s' again"),
        # too deep inside an array of arrays
        (b'{"weights": [' + b"[1, 2], " * 20_000 + b"[[[[[[[[[1]]]]]]]]]]}", "nested at most 8 deep"),
        # too many values: commas and brackets together over the limit, the brackets late in the text
        (b'{"w": [' + b"1," * 95 + b"[[[[1]]]]]}", "counting commas and brackets"),
        # a string the scan cannot read stops it: the repeated key after it is left to the parser
        (b'{"a": 1, "b": "\\\n", "a": 2}', None),
    ],
    ids=[
        "after-array",
        "escaped",
        "in-strings",
        "brackets-in-string",
        "key-in-string",
        "backslash",
        "deep",
        "values",
        "stop",
    ],
)
def test_refusals_hidden_behind_long_arrays(text: bytes, found: str | None, block: int | None) -> None:
    limits = Limits(max_json_depth=8, max_json_values=100 if len(text) < 1000 else Limits().max_json_values)
    with sizes(block, 7 if block else None):
        problem = jsontext.problem(text, limits)
    assert problem == regex_problem(text, limits)
    if found is None:
        assert problem is None
    else:
        assert problem is not None and found in problem.message and problem.line == 1 and problem.column > 0


def test_a_repeated_key_after_inline_weights_is_refused_with_its_place(tmp_path: Path) -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = [[0.25] * 2]
    text = json.dumps(spec, indent=1).encode()
    layer_end = text.rindex(b"}", 0, text.rindex(b"}"))  # the layer's own closing brace
    big = b', "description": [' + b"1.0, " * 40_000 + b'1], "n\\u0061me": "again"\n'
    text = text[:layer_end] + big + text[layer_end:]
    path = tmp_path / "model.json"
    path.write_bytes(text)
    with pytest.raises(SpecError) as info:
        nnspec.load(path)
    line = text.count(b"\n", 0, text.index(b'"n\\u0061me"')) + 1
    assert f"line {line}, column " in str(info.value) and "found 'name' again" in str(info.value)


def test_depth_over_the_limit_inside_inline_weights(tmp_path: Path) -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = [[[[[0.5]]]]] * 30_000
    path = tmp_path / "model.json"
    path.write_bytes(json.dumps(spec).encode())
    with pytest.raises(SpecError, match=r"line 1, column \d+: expected arrays and objects nested at most 5 deep"):
        nnspec.load(path, limits=Limits(max_json_depth=5))


def test_values_over_the_limit_counted_with_brackets(tmp_path: Path) -> None:
    spec = copy.deepcopy(PARTY)
    spec["layers"][0]["weights"] = [[0.5]] * 30_000  # 30,000 commas, 30,000 brackets
    path = tmp_path / "model.json"
    path.write_bytes(json.dumps(spec).encode())
    with pytest.raises(SpecError, match="counting commas and brackets up to here"):
        nnspec.load(path, limits=Limits(max_json_values=50_000))
    with pytest.raises(nnspec.WeightError, match="expected shape"):  # the next check, once the text is read
        nnspec.load(path, limits=Limits(max_json_values=70_000))


# --- large arrays read as arrays -------------------------------------------------------------------------


def same(read: Any, parsed: Any, path: tuple[Any, ...] = ()) -> None:
    """`read` (from jsontext.parse) equals `parsed` (orjson), an array standing for its nested list."""
    if isinstance(read, np.ndarray):
        expected = np.asarray(parsed)
        assert expected.dtype in (np.float64, np.int64), path
        assert read.dtype == np.float64 and read.shape == expected.shape, path
        assert np.array_equal(read, expected.astype(np.float64)), path
        return
    assert type(read) is type(parsed), path
    if isinstance(read, dict):
        assert list(read) == list(parsed), path
        for key in read:
            same(read[key], parsed[key], (*path, key))
    elif isinstance(read, list):
        assert len(read) == len(parsed), path
        for i, (a, b) in enumerate(zip(read, parsed, strict=True)):
            same(a, b, (*path, i))
    else:
        assert read == parsed, path


ROWS = st.lists(
    st.lists(
        st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False, width=64),
        min_size=0,
        max_size=4,
    ),
    min_size=0,
    max_size=5,
)
NUMBERS = st.recursive(
    st.floats(-1e3, 1e3) | st.integers(-9, 9),
    lambda children: st.lists(children, max_size=4),
    max_leaves=30,
)
VALUES = st.recursive(
    NUMBERS | ROWS | st.booleans() | st.none() | st.text(alphabet='ab[]{},:"\\ ', max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(["w", "b", "x"]), children, max_size=3)
    ),
    max_leaves=40,
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A JSON object (sometimes spaced, sometimes broken by one inserted or deleted byte)."""
    value = draw(st.dictionaries(st.sampled_from(["w", "b", "layers", "x"]), VALUES, min_size=1, max_size=4))
    text = json.dumps(value, indent=draw(st.sampled_from([None, 1]))).encode()
    if draw(st.booleans()):
        return text
    at = draw(st.integers(0, len(text) - 1))
    if draw(st.booleans()):
        return text[:at] + text[at + 1 :]
    return text[:at] + draw(st.sampled_from([b",", b"[", b"]", b" ", b"x", b"1", b'"', b"-"])) + text[at:]


def parse_or_error(read: Any) -> Any:
    try:
        return read()
    except orjson.JSONDecodeError as exc:
        return ("error", str(exc))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents(), array=st.integers(2, 40), block=st.sampled_from([None, 4]), only=st.sampled_from(["w", None]))
def test_parse_with_arrays_agrees_with_orjson(text: bytes, array: int, block: int | None, only: str | None) -> None:
    """Every value is what orjson gives, but that wanted arrays of numbers come back as equal arrays."""
    asked: list[tuple[Any, ...]] = []

    def wanted(root: Any, path: tuple[Any, ...]) -> bool:
        asked.append(path)
        return only is None or path[-1] == only

    limits = Limits(max_json_depth=1000)
    if jsontext.problem(text, limits) is not None:
        return
    with sizes(block, 5 if block else None, array):
        read = parse_or_error(lambda: jsontext.parse(text, limits, wanted))
    parsed = parse_or_error(lambda: orjson.loads(text))
    if isinstance(parsed, tuple):
        assert read == parsed  # the parser's own message, for the whole text
        return
    same(read, parsed)

    def arrays(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        if isinstance(value, np.ndarray):
            yield path
        elif isinstance(value, dict | list):
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                yield from arrays(item, (*path, key))

    for path in arrays(read):
        assert path in asked and (only is None or path[-1] == only)


def spec_text(weights: Any, bias: Any = None, **layer: Any) -> bytes:
    spec = {
        "format": "nnspec/1",
        "name": "wide",
        "inputs": [{"name": "x", "shape": [3]}],
        "layers": [
            {"type": "dense", "units": 2, "weights": weights, **({"bias": bias} if bias is not None else {}), **layer}
        ],
    }
    return json.dumps(spec).encode()


def load_both(tmp_path: Path, text: bytes, array: int = 64) -> tuple[Any, Any]:
    """nnspec.load's result (or error message) with arrays of `array` bytes or more read as arrays, and with
    every array read as a list."""
    path = tmp_path / "model.json"
    path.write_bytes(text)
    results = []
    for size in (array, 1 << 40):
        with sizes(array=size):
            try:
                results.append(nnspec.load(path))
            except SpecError as exc:
                results.append(str(exc))
    return results[0], results[1]


@pytest.mark.parametrize(
    ("weights", "fragment"),
    [
        ([[0.5, -1, 2**40]] * 2, None),
        ([[1, 2, 3], [4, 5, 6]], None),
        ([[1, 2, 3], [4, 5]], "rows of unequal length"),
        ([[1, 2, True], [4, 5, 6.5]], None),  # as np.asarray reads them: True is 1.0
        ([[True, False, True], [4, 5, 6]], None),
        ([[True, False, True], [False, True, True]], "found booleans"),
        ([[1, 2, 3], [4, 5, None]], "null, an object"),
        ([[1, 2, 3], [4, 5, "6"]], "expected"),
        ([[1, 2, 3], [4, 5, 2**63]], None),  # a row of uint64: read from its list, as before
        ([[1, 2, 3], [-4, 5, 2**64]], None),  # orjson reads integers past 64 bits as floats
        ([[1, 2, 3], [4, 5, [6]]], "rectangular"),
        ([[1, 2, 3], 4], "rectangular"),
        ([[[1, 2, 3]], [[4, 5, 6]]], "expected shape [2, 3]"),
    ],
)
def test_inline_weights_load_as_the_lists_would(weights: Any, fragment: str | None, tmp_path: Path) -> None:
    """Padded past the array size, every weight reads as np.asarray of its list would; errors are the same."""
    text = spec_text(weights).replace(b'"weights": [', b'"weights": [' + b" " * 200, 1)
    fast, lists = load_both(tmp_path, text)
    if fragment is None:
        assert not isinstance(fast, str), fast
        assert np.array_equal(fast.layers[0].weights.array, lists.layers[0].weights.array)
        assert np.array_equal(fast.layers[0].weights.array, np.asarray(weights, dtype=np.float64))
    else:
        assert fast == lists and fragment in fast and "layers[0].weights" in fast


def test_a_large_array_in_the_wrong_place_is_refused_as_before(tmp_path: Path) -> None:
    for where, layer in [
        ("layers[0].units", {"units": [[1.0] * 3] * 40}),
        ("layers[0].extra", {"extra": [[1.0] * 40]}),
    ]:
        fast, lists = load_both(tmp_path, spec_text([[0.5] * 3] * 2, **layer))
        assert isinstance(fast, str) and fast == lists and where in fast


@pytest.mark.parametrize(
    "damage",
    [
        (b"0.5, 0.5", b"0.5,, 0.5"),
        (b"0.5, 0.5", b"0.5 0.5"),
        (b"0.5]", b"0.5,]"),
        (b"[0.5", b"[,0.5"),
        (b"0.5]", b"0.5]\f"),
        (b"0.5, 0.5", b"0.5, 1e999"),
        (b"0.5, 0.5", b"0.5, NaN"),
        (b"0.5, 0.5", b"0.5, 0x1"),
    ],
)
def test_malformed_inline_weights_are_explained_as_before(damage: tuple[bytes, bytes], tmp_path: Path) -> None:
    text = spec_text([[0.5] * 3000] * 4)
    at = text.rindex(damage[0])
    broken = text[:at] + damage[1] + text[at + len(damage[0]) :]
    fast, lists = load_both(tmp_path, broken)
    assert isinstance(fast, str) and fast == lists and "JSON" in fast


def test_large_weights_never_exist_as_python_floats(tmp_path: Path) -> None:
    """A 200,000-number matrix is read a row at a time: the parse never holds its numbers as Python floats."""
    weights = np.random.default_rng(0).standard_normal((200, 1000))
    text = spec_text(weights.tolist(), units=200).replace(b'"shape": [3]', b'"shape": [1000]')
    as_floats = 200_000 * 24  # bytes of the Python floats alone
    tracemalloc.start()
    try:
        data = parse_json(text, inline_arrays=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(data["layers"][0]["weights"], np.ndarray)
    assert np.array_equal(data["layers"][0]["weights"], weights)
    assert peak < weights.nbytes + as_floats / 4, peak
    assert isinstance(parse_json(text)["layers"][0]["weights"], list)  # other readers get lists


def test_a_spec_with_large_inline_weights_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights, bias = rng.standard_normal((300, 200)), rng.standard_normal(300)
    spec = {
        "format": "nnspec/1",
        "name": "wide",
        "inputs": [{"name": "x", "shape": [200]}],
        "layers": [{"type": "dense", "units": 300, "weights": weights.tolist(), "bias": bias.tolist()}],
    }
    path = tmp_path / "model.json"
    path.write_bytes(orjson.dumps(spec))
    loaded = nnspec.load(path)
    assert isinstance(loaded.layers[0].weights, Inline)
    x = rng.standard_normal((4, 200)).astype(np.float32)
    expected = x.astype(np.float64) @ weights.T + bias
    np.testing.assert_allclose(nnspec.to_numpy(loaded)(x), expected, rtol=1e-5, atol=1e-4)
    assert json.loads(loaded.to_json())["layers"][0]["weights"] == weights.tolist()


@pytest.mark.parametrize("layer_type", sorted(LAYERS))
def test_weight_fields_read_as_arrays_are_those_of_the_schema(layer_type: str) -> None:
    """The fields read straight into arrays are exactly those the JSON schema offers inline numbers for."""
    properties = LAYERS[layer_type].spec.model_json_schema()["properties"]
    inline = WEIGHT_SCHEMA["anyOf"][0]["description"]
    assert _WEIGHT_FIELDS[layer_type] == {name for name, schema in properties.items() if inline in json.dumps(schema)}


EXAMPLES = [(t.name, i, example) for t in LAYERS.values() for i, example in enumerate(t.examples)]


@pytest.mark.parametrize(("name", "index", "example"), EXAMPLES, ids=[f"{n}-{i}" for n, i, _ in EXAMPLES])
def test_registry_examples_load_the_same_with_arrays_read_directly(
    name: str, index: int, example: dict[str, Any], tmp_path: Path
) -> None:
    fast, lists = load_both(tmp_path, json.dumps(example).replace("[", "[" + " " * 70).encode(), array=64)
    assert type(fast) is type(lists)
    if isinstance(fast, str):
        assert fast == lists
        return
    assert fast.to_json() == lists.to_json()
    for a, b in zip(nnspec.graph(fast).nodes, nnspec.graph(lists).nodes, strict=True):
        assert a.params.keys() == b.params.keys()
        for key in a.params:
            assert a.params[key].dtype == b.params[key].dtype and np.array_equal(a.params[key], b.params[key])
