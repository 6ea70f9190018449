"""The input side of the cross-check: seeded batches, edge values, user files (.csv, .json), repeat runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PARTY

import nnspec
from nnspec.activations import REGISTRY
from nnspec.errors import InputDataError, NNSpecError
from nnspec.files import load_arrays
from nnspec.inputs import (
    EDGE_LABEL,
    EDGE_VALUES,
    ROW_SCALES,
    edge_case,
    given_cases,
    random_cases,
    random_origin,
    repeat_differs,
)
from nnspec.ir import Graph
from nnspec.runners import NumpyRunner
from nnspec.weights import _normal

TWO_INPUTS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "pair",
    "inputs": [{"name": "a", "shape": [2]}, {"name": "b", "shape": [5, 3]}],
    "layers": [
        {"type": "dense", "name": "from_a", "units": 1, "weights": {"init": "ones"}, "inputs": ["a"]},
        {"type": "dense", "name": "from_b", "units": 1, "weights": {"init": "ones"}, "inputs": ["b"]},
    ],
    "outputs": ["from_a", "from_b"],
}


def graph_of(spec: dict[str, Any], **changes: Any) -> Graph:
    return nnspec.graph(nnspec.from_dict({**copy.deepcopy(spec), **changes}))


def wide(width: int = 4000, dtype: str = "float64") -> Graph:
    """One input of `width` features, enough numbers per row to measure a row's spread."""
    return graph_of(
        PARTY,
        dtype=dtype,
        inputs=[{"name": "p", "shape": [width]}],
        layers=[{"type": "activation", "name": "same", "activation": "linear"}],
    )


# --- seeded random batches ---------------------------------------------------------------------


def test_same_seed_same_arrays_other_seed_other_arrays() -> None:
    g = graph_of(TWO_INPUTS)
    first, again, other = random_cases(g, seed=3), random_cases(g, seed=3), random_cases(g, seed=4)
    for a, b, c in zip(first, again, other, strict=True):
        assert a.label == b.label == c.label
        for name in a.feeds:
            assert a.feeds[name].tobytes() == b.feeds[name].tobytes()
            if a.label != EDGE_LABEL:  # the edge batch is the same for every seed, by design
                assert not np.array_equal(a.feeds[name], c.feeds[name])


def test_numbers_are_pinned_across_numpy_releases() -> None:
    """The PCG64 raw stream is fixed by NumPy's stream-compatibility policy; Generator.normal is not.

    The Box-Muller transform goes through log, cos and sin, which may round differently on another
    platform's libm by an ulp or two, hence rtol 1e-12 rather than bitwise equality.
    """
    g = graph_of(PARTY, dtype="float64")
    batch_1, batch_7 = random_cases(g)[:2]
    np.testing.assert_allclose(batch_1.feeds["p"], [[-1.4360466601516195, 2.360740035920658]], rtol=1e-12)
    np.testing.assert_allclose(
        batch_7.feeds["p"][:4],
        [
            [2.686063919489581, 0.10318695101719441],
            [-0.026500851855026725, -0.10271850890353258],
            [9.758781398055698, -3.103574248831451],
            [5.659782662124457, -14.403645467070138],
        ],
        rtol=1e-12,
    )


def test_inputs_and_cases_draw_from_separate_streams() -> None:
    g = graph_of(TWO_INPUTS, dtype="float64")
    batch_1, batch_7 = random_cases(g)[:2]  # row 0 is at the same scale in both
    assert not np.array_equal(batch_7.feeds["a"][0], batch_7.feeds["b"][0, 0, :2])
    assert not np.array_equal(batch_1.feeds["a"][0], batch_7.feeds["a"][0])
    # A weight initializer with seed 0 draws _normal(0, ...); the inputs must not repeat those numbers.
    assert not np.array_equal(batch_1.feeds["a"][0], ROW_SCALES[0] * _normal(0, 2))


def test_labels_and_batch_sizes() -> None:
    g = graph_of(TWO_INPUTS)
    cases = random_cases(g)
    assert [c.label for c in cases] == [
        "batch 1, scale 2",
        "batch 7, scales 0.1..30",
        "batch 64, scales 0.1..30",
        "edges: 0, +-1, +-1e3",
    ]
    for case, batch in zip(cases, (1, 7, 64, 10), strict=True):
        assert case.feeds["a"].shape == (batch, 2)
        assert case.feeds["b"].shape == (batch, 5, 3)
        assert all(array.dtype == np.float32 for array in case.feeds.values())
    assert [c.label for c in random_cases(g, batch_sizes=(3, 3), edges=False)] == ["batch 3, scales 0.1..8"]
    alone = random_cases(g, batch_sizes=(7,), edges=False)[0]
    assert alone.feeds["b"].tobytes() == cases[1].feeds["b"].tobytes()  # a batch's numbers depend on its size only
    assert "seed 4" in random_origin(4) and "0.1/2/8/30" in random_origin(4)


@pytest.mark.parametrize("batch_sizes", [(0,), (1, -7), (2.5,)])
def test_batch_sizes_below_one_are_refused(batch_sizes: tuple[Any, ...]) -> None:
    with pytest.raises(NNSpecError, match="expected batch sizes of at least 1"):
        random_cases(graph_of(PARTY), batch_sizes=batch_sizes)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rows_reach_every_scale(dtype: str) -> None:
    """Row i is N(0, 1) x ROW_SCALES[i % 4]: near-linear, typical, and saturating values for sigmoid/tanh."""
    rows = random_cases(wide(dtype=dtype), batch_sizes=(8,), edges=False)[0].feeds["p"]
    assert rows.dtype == np.dtype(dtype)
    spread = rows.astype(np.float64).std(axis=1)
    expected = np.resize(ROW_SCALES, 8)
    # 4000 draws per row: the sample std is within 5% of the true one with overwhelming probability.
    np.testing.assert_allclose(spread, expected, rtol=0.05)
    assert np.abs(rows).max() > 60  # tanh and sigmoid are flat there, even in float64
    assert (np.abs(rows) < 0.05).any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_single_precision_rows_are_seeded_normal_rows_too(dtype: str) -> None:
    """The parameter test's extra rows (`single`): the same seed gives the same arrays, another seed others, and
    each row is N(0, 1) x its scale, as the float64 draw's rows are (not the same numbers)."""
    g = wide(dtype=dtype)
    (first,), (again,), (other,) = (
        random_cases(g, seed, batch_sizes=(8,), edges=False, single=True) for seed in (0, 0, 1)
    )
    rows = first.feeds["p"]
    assert rows.dtype == np.dtype(dtype) and rows.tobytes() == again.feeds["p"].tobytes()
    assert not np.array_equal(rows, other.feeds["p"])
    precise = random_cases(g, 0, batch_sizes=(8,), edges=False)[0].feeds["p"]
    assert not np.array_equal(rows, precise)
    np.testing.assert_allclose(rows.astype(np.float64).std(axis=1), np.resize(ROW_SCALES, 8), rtol=0.05)
    np.testing.assert_allclose(rows.astype(np.float64).mean(axis=1) / np.resize(ROW_SCALES, 8), 0, atol=0.07)


def test_parts_are_other_draws_of_the_same_batches() -> None:
    """`part` (the parameter test's spare rows): part 0 is the draw as it always was, another part other
    numbers, the same again for the same part."""
    g = graph_of(TWO_INPUTS)
    plain, zero = random_cases(g, 5, (7,), edges=False), random_cases(g, 5, (7,), edges=False, part=0)
    one, again = (random_cases(g, 5, (7,), edges=False, part=1) for _ in range(2))
    for name in ("a", "b"):
        assert plain[0].feeds[name].tobytes() == zero[0].feeds[name].tobytes()
        assert one[0].feeds[name].tobytes() == again[0].feeds[name].tobytes()
        assert not np.array_equal(one[0].feeds[name], plain[0].feeds[name])


def test_edge_case_contents() -> None:
    g = graph_of(TWO_INPUTS, dtype="float64")
    case = random_cases(g)[-1]
    assert case.label == EDGE_LABEL
    b = case.feeds["b"].reshape(10, 15)
    for i, value in enumerate(EDGE_VALUES):  # rows 0..4: one value everywhere, 0.0 exactly first
        assert (b[i] == value).all()
        assert (case.feeds["a"][i] == value).all()
    assert np.signbit(b[0]).sum() == 0  # +0.0, not -0.0
    for column in b[5:].T:  # rows 5..9: every value at every position
        assert sorted(column) == sorted(EDGE_VALUES)
    assert edge_case(g).label == EDGE_LABEL


def test_edge_zero_lands_exactly_on_hardlims_step() -> None:
    spec = graph_of(PARTY, layers=[{"type": "activation", "name": "step", "activation": "hardlims"}])
    case = edge_case(spec)
    out = NumpyRunner(spec).run(case.feeds)["step"]
    assert (out[0] == 1).all()  # hardlims(0) = 1: the step's own point, not a value near it
    assert (out[2] == -1).all()


def test_batches_are_capped_by_the_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    g = wide(1000)  # float64: the input is the largest value, 8000 bytes per sample
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", str(5 * 8000 + 7999))
    cases = random_cases(g)
    assert [c.feeds["p"].shape[0] for c in cases] == [1, 5, 5]
    assert cases[1].label == "batch 5, scales 0.1..30"
    assert cases[2].label == f"{EDGE_LABEL} (first 5 of 10 rows: memory limit)"
    assert (cases[2].feeds["p"][0] == 0).all()
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "100")  # less than one sample: one sample still runs
    assert [c.feeds["p"].shape[0] for c in random_cases(g)] == [1, 1]


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_seed_outside_the_range_is_refused(seed: Any) -> None:
    with pytest.raises(NNSpecError, match=r"expected an integer seed in \[0, 2\*\*63\)"):
        random_cases(graph_of(PARTY), seed=seed)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", sorted(REGISTRY))
def test_every_case_passes_the_cross_check(activation: str, dtype: str) -> None:
    """Saturating scales and edge values raise no false alarm: a step reading an input, with and without bias."""
    spec = nnspec.from_dict(
        {
            "format": "nnspec/1",
            "name": "probe",
            "dtype": dtype,
            "inputs": [{"name": "p", "shape": [6]}],
            "layers": [
                {"type": "activation", "name": "direct", "activation": activation},
                {
                    "type": "dense",
                    "name": "biased",
                    "units": 5,
                    "activation": activation,
                    "inputs": ["p"],
                    "weights": {"init": "glorot_uniform", "seed": 1},
                    "bias": {"init": "normal", "seed": 2, "std": 0.5},
                },
                {
                    "type": "dense",
                    "name": "unbiased",
                    "units": 4,
                    "activation": activation,
                    "weights": {"init": "uniform", "seed": 3, "low": -1, "high": 1},
                },
            ],
            "outputs": ["direct", "biased", "unbiased"],
        }
    )
    for case in random_cases(nnspec.graph(spec), seed=5):
        report = nnspec.check(spec, inputs=case.feeds)
        assert report.passed, (case.label, report.to_dict())


def test_given_cases_cast_and_check() -> None:
    g = graph_of(PARTY)
    (case,) = given_cases(g, {"p": np.array([[1, 3]])}, "from x.csv")
    assert case.label == "from x.csv" and case.feeds["p"].dtype == np.float32
    with pytest.raises(InputDataError, match=r"expected shape \['N', 2\], found \[3\]"):
        given_cases(g, {"p": np.ones(3)})


# --- repeat runs -------------------------------------------------------------------------------


def counting(make: Callable[[int], dict[str, np.ndarray]]) -> Callable[[Mapping[str, np.ndarray]], Any]:
    """A fake runner that returns make(0) on its first call, make(1) on its second."""
    calls = iter(range(2))
    return lambda feeds: make(next(calls))


def test_a_deterministic_runner_does_not_differ() -> None:
    g = graph_of(TWO_INPUTS)
    case = random_cases(g)[2]
    assert repeat_differs(NumpyRunner(g).run, case.feeds) == []


def test_a_nondeterministic_runner_is_named_per_output() -> None:
    one_ulp = np.nextafter(np.float32(1), np.float32(2))
    run = counting(lambda i: {"steady": np.ones(3, np.float32), "jitter": np.array([1, one_ulp if i else 1, 1])})
    assert repeat_differs(run, {}) == ["jitter"]


@pytest.mark.parametrize(
    ("first", "second", "differs"),
    [
        pytest.param([np.nan, 1.0], [np.nan, 1.0], False, id="nan-equals-nan"),
        pytest.param([np.nan], [-np.nan], False, id="nan-sign-is-not-a-difference"),
        pytest.param([0.0], [-0.0], True, id="signed-zero-is-bitwise"),
        pytest.param([np.nan], [1.0], True, id="nan-one-side"),
        pytest.param([1.0, 2.0], [1.0, 2.0, 3.0], True, id="shape"),
    ],
)
def test_bitwise_comparison(first: list[float], second: list[float], differs: bool) -> None:
    run = counting(lambda i: {"y": np.array(second if i else first)})
    assert repeat_differs(run, {}) == (["y"] if differs else [])


def test_results_already_at_hand_are_the_first_run() -> None:
    calls = []

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(1)
        return {"y": np.array([1.0, 2.0])}

    assert repeat_differs(run, {}, first={"y": np.array([1.0, 2.0])}) == [] and len(calls) == 1
    assert repeat_differs(run, {}, first={"y": np.array([1.0, -2.0])}) == ["y"]


def test_an_output_that_one_run_lacks_differs() -> None:
    run = counting(lambda i: {"y": np.ones(2)} if i else {"y": np.ones(2), "z": np.zeros(2)})
    assert repeat_differs(run, {}) == ["z"]


def test_a_reused_output_buffer_is_not_compared_with_itself() -> None:
    buffer = np.zeros(4)

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        np.add(buffer, 1, out=buffer)  # a runtime that writes every result into the same memory
        return {"y": buffer}

    assert repeat_differs(run, {}) == ["y"]


# --- user input files: .csv and .json ---------------------------------------------------------

PARTY_INPUTS = graph_of(PARTY).inputs
BLOCK_INPUTS = graph_of(
    PARTY, inputs=[{"name": "p", "shape": [2, 3]}], layers=[{"type": "activation", "activation": "linear"}]
).inputs
PAIR_INPUTS = graph_of(TWO_INPUTS).inputs


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("1,3\n1,5\n0,0\n", [[1, 3], [1, 5], [0, 0]], id="plain"),
        pytest.param("tired,friends\n1,3\n", [[1, 3]], id="header"),
        pytest.param("\ufefftired,friends\r\n1,3\r\n", [[1, 3]], id="spreadsheet-bom-crlf"),
        pytest.param("\n 1 , -3.5e1\n\n.5,+2.\n", [[1, -35], [0.5, 2]], id="spaces-blank-lines-exponents"),
        pytest.param('"1","2"\n', [[1, 2]], id="quoted"),
        pytest.param("nan,-inf\n", [[np.nan, -np.inf]], id="nan-inf-as-npy-allows"),
    ],
)
def test_csv_happy_paths(tmp_path: Path, content: str, expected: list[list[float]]) -> None:
    arrays = load_arrays(write(tmp_path, "x.csv", content), PARTY_INPUTS)
    np.testing.assert_array_equal(arrays["p"], np.array(expected, dtype=np.float64))


def test_csv_rows_are_reshaped_row_major(tmp_path: Path) -> None:
    arrays = load_arrays(write(tmp_path, "x.csv", "1,2,3,4,5,6\n7,8,9,10,11,12\n"), BLOCK_INPUTS)
    np.testing.assert_array_equal(arrays["p"], np.arange(1.0, 13.0).reshape(2, 2, 3))


def test_csv_round_trips_float64_exactly(tmp_path: Path) -> None:
    x = random_cases(wide(50), batch_sizes=(64,), edges=False)[0].feeds["p"]
    path = write(tmp_path, "x.csv", "\n".join(",".join(repr(float(v)) for v in row) for row in x))
    assert load_arrays(path, wide(50).inputs)["p"].tobytes() == x.tobytes()


@pytest.mark.parametrize(
    ("content", "inputs", "expected"),
    [
        pytest.param('{"p": [[1, 3], [0, 0.5]]}', PARTY_INPUTS, {"p": [[1, 3], [0, 0.5]]}, id="keyed"),
        pytest.param("[[1, 3], [0, 0.5]]", PARTY_INPUTS, {"p": [[1, 3], [0, 0.5]]}, id="bare-list"),
        pytest.param(
            json.dumps({"b": np.arange(15).reshape(1, 5, 3).tolist(), "a": [[1, 2]]}),
            PAIR_INPUTS,
            {"a": [[1, 2]], "b": np.arange(15.0).reshape(1, 5, 3)},
            id="two-inputs",
        ),
        pytest.param("[[1e308, -0.0]]", PARTY_INPUTS, {"p": [[1e308, -0.0]]}, id="float64-range"),
    ],
)
def test_json_happy_paths(tmp_path: Path, content: str, inputs: Any, expected: dict[str, Any]) -> None:
    arrays = load_arrays(write(tmp_path, "x.json", content), inputs)
    assert list(arrays) == [i.name for i in inputs]
    for name, values in expected.items():
        np.testing.assert_array_equal(arrays[name], np.array(values, dtype=np.float64))
        assert arrays[name].dtype == np.float64


# (file name, content, the model's inputs, fragments of the message after "<path>: ")
BAD_FILES = [
    pytest.param(
        "x.csv", "1,2\n3,x\n", PARTY, ["line 2, column 2: expected a number, found 'x'"], id="csv-not-a-number"
    ),
    pytest.param(
        "x.csv", "1,\n", PARTY, ["line 1, column 2: expected a number, found an empty field"], id="csv-empty-field"
    ),
    pytest.param(
        "x.csv",
        "1,x\n3,4\n",
        PARTY,
        ["line 1, column 2", "found 'x'", "a header line names every column"],
        id="csv-half-header",
    ),
    pytest.param(
        "x.csv",
        "1,2\n\n1,2,3\n",
        PARTY,
        ["line 3: expected 2 comma-separated numbers (input 'p' has shape [2]), found 3"],
        id="csv-too-many-columns",
    ),
    pytest.param(
        "x.csv", "1\n", PARTY, ["line 1: expected 2 comma-separated numbers", "found 1"], id="csv-too-few-columns"
    ),
    pytest.param(
        "x.csv",
        "a,b,c\n1,2\n",
        PARTY,
        ["line 1 (a header): expected 2 comma-separated", "found 3 columns"],
        id="csv-header-width",
    ),
    pytest.param(
        "x.csv", "a,b\n", PARTY, ["expected one line of 2 comma-separated", "found only a header"], id="csv-header-only"
    ),
    pytest.param("x.csv", "", PARTY, ["per sample, found none"], id="csv-empty"),
    pytest.param("x.csv", '1,"2\n', PARTY, ["line 1: expected CSV, found unexpected end of data"], id="csv-open-quote"),
    pytest.param(
        "x.csv", b"1,2\n\xff,3\n", PARTY, ["line 2: expected UTF-8 text, found the byte 0xff"], id="csv-not-utf8"
    ),
    pytest.param(
        "x.csv", "1_0,2\n", PARTY, ["line 1, column 1: expected a number, found '1_0'"], id="csv-python-only-number"
    ),
    pytest.param(
        "x.csv",
        "1,2,3,4,5\n",
        TWO_INPUTS,
        ["expected a .npz or .json file keyed by input name (the model has 2 inputs: a, b)", "found a .csv file"],
        id="csv-for-two-inputs",
    ),
    pytest.param(
        "x.json", "[[1, 2]", PARTY, ["expected JSON, found invalid JSON", "line 1 column 8"], id="json-invalid"
    ),
    pytest.param(
        "x.json", '"p"', PARTY, ["expected a JSON object keyed by input name", "found the string 'p'"], id="json-string"
    ),
    pytest.param(
        "x.json",
        '{"p": [[1, "2"]]}',
        PARTY,
        ["input 'p': expected a number at [0][1], found the string '2'"],
        id="json-string-number",
    ),
    pytest.param(
        "x.json", '{"p": [[1, true]]}', PARTY, ["input 'p': expected a number at [0][1], found true"], id="json-boolean"
    ),
    pytest.param(
        "x.json", '{"p": [[1, null]]}', PARTY, ["input 'p': expected a number at [0][1], found null"], id="json-null"
    ),
    pytest.param(
        "x.json",
        '{"p": {"x": 1}}',
        PARTY,
        ["input 'p': expected a nested list of numbers, found an object"],
        id="json-object-value",
    ),
    pytest.param(
        "x.json",
        '{"p": [[1, 2], [3]]}',
        PARTY,
        ["input 'p': expected a list of shape [2] at [1] (as at [0]), found a list of shape [1]"],
        id="json-ragged",
    ),
    pytest.param(
        "x.json",
        '{"p": [[[1, 2]]]}',
        PARTY,
        ["input 'p': expected shape ['N', 2] (2 levels", "deeper list at [0][0]"],
        id="json-too-deep",
    ),
    pytest.param(
        "x.json",
        '{"p": [1, 2]}',
        PARTY,
        ["input 'p': expected shape ['N', 2], found [2]", "batch dimension"],
        id="json-no-batch",
    ),
    pytest.param(
        "x.json", '{"q": [[1, 2]]}', PARTY, ["expected an array for input 'p'", "given: 'q'"], id="json-unknown-name"
    ),
    pytest.param(
        "x.json",
        '{"p": [[1, 2]], "extra": [[[[1]]]]}',
        PARTY,
        ["inputs only (p), found also 'extra'"],
        id="json-extra-name",
    ),
    pytest.param(
        "x.json",
        "[[1, 2]]",
        TWO_INPUTS,
        ["keyed by input name (the model has 2 inputs: a, b), found a bare JSON list"],
        id="json-list-for-two-inputs",
    ),
    pytest.param(
        "x.json",
        '{"a": [[1, 2]], "b": [[[1, 2, 3]]]}',
        TWO_INPUTS,
        ["input 'b': expected shape ['N', 5, 3], found [1, 1, 3]"],
        id="json-wrong-inner-shape",
    ),
    pytest.param(
        "x.txt", "1,2\n", PARTY, ["expected a .npy, .npz, .csv or .json file, found 'x.txt'"], id="unknown-suffix"
    ),
]


@pytest.mark.parametrize(("name", "content", "spec", "fragments"), BAD_FILES)
def test_bad_input_file(
    tmp_path: Path, name: str, content: str | bytes, spec: dict[str, Any], fragments: list[str]
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(InputDataError) as caught:
        load_arrays(path, graph_of(spec).inputs)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "expected" in message and "found" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize(("name", "content", "spec", "fragments"), BAD_FILES)
def test_bad_input_file_through_the_cli(
    cli,
    write_spec,
    tmp_path: Path,
    name: str,
    content: str | bytes,
    spec: dict[str, Any],
    fragments: list[str],
    command: str,
) -> None:
    path = write(tmp_path, name, content)
    out = tmp_path / "out"
    out.mkdir()
    if command == "run":
        result = cli("run", write_spec(spec), "--input", path, "-o", out / "y.npz")
    else:
        result = cli("check", write_spec(spec), "--inputs", path, "--json", out / "report.json")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith(f"error: {path}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert list(out.iterdir()) == []


def test_text_file_over_the_batch_limit_is_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "100")
    for name, text in (("x.csv", "1,2\n" * 30), ("x.json", json.dumps([[1, 2]] * 20))):
        with pytest.raises(
            InputDataError, match=r"expected at most 100 B of input data \(NNSPEC_MAX_BATCH_BYTES\), found a"
        ):
            load_arrays(write(tmp_path, name, text), PARTY_INPUTS)


def test_text_file_whose_numbers_exceed_the_batch_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under 100 bytes of text, but 20 numbers are 160 bytes as float64."""
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", "100")
    with pytest.raises(InputDataError, match=r"at most 100 B .* found 14 numbers by line 7"):
        load_arrays(write(tmp_path, "x.csv", "1,2\n" * 10), PARTY_INPUTS)
    with pytest.raises(InputDataError, match=r"at most 100 B .* found 20 numbers in all"):
        load_arrays(write(tmp_path, "x.json", json.dumps({"p": [[1, 2]] * 10}).replace(" ", "")), PARTY_INPUTS)


def test_run_reads_csv_like_npy(cli, write_spec, tmp_path: Path) -> None:
    spec = write_spec(PARTY)
    np.save(tmp_path / "p.npy", np.array([[1.0, 3.0], [1.0, 5.0], [0.0, 0.0]]))
    csv_path = write(tmp_path, "p.csv", "tired,friends\n1,3\n1,5\n0,0\n")
    from_npy = cli("run", spec, "--input", tmp_path / "p.npy")
    from_csv = cli("run", spec, "--input", csv_path, "-o", tmp_path / "y.npy")
    assert from_npy.exit_code == 0 and from_csv.exit_code == 0, from_csv.output
    assert "decide = [[1.]\n [3.]\n [2.]]" in from_npy.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), [[1.0], [3.0], [2.0]])


def test_check_reads_json_inputs(cli, write_spec, tmp_path: Path) -> None:
    inputs = write(tmp_path, "x.json", json.dumps({"a": [[1, 2], [3, 4]], "b": np.ones((2, 5, 3)).tolist()}))
    result = cli("check", write_spec(TWO_INPUTS), "--inputs", inputs, "--json", "-")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["inputs"] == "given"
    assert [o["elements"] for o in report["outputs"]] == [2, 10]  # from_a: [2, 1]; from_b: [2, 5, 1]
