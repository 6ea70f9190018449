"""The evaluator's per-call path: an array that needs nothing done to it (one float input, C-contiguous, of the
network's dtype and shape) is used as it is, and gives what the general path gives; every other array still
meets every check, with the same message whichever way it is passed; the batch limit is the one in force
when the model was built; and the sigmoid kernel computes bit for bit what its two-branch formula does."""

from __future__ import annotations

import copy
import threading
import warnings
from typing import Any

import numpy as np
import pytest
from conftest import THREE_LAYER

import nnspec
from nnspec.activations import lookup
from nnspec.feeds import FeedCheck, check_feeds
from nnspec.limits import Limits

TOKENS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "tokens",
    "inputs": [{"name": "tokens", "shape": [3], "dtype": "int64"}],
    "layers": [
        {
            "type": "embedding",
            "name": "embed",
            "input_dim": 10,
            "output_dim": 2,
            "weights": {"init": "normal", "seed": 1},
        },
        {"type": "flatten", "name": "flat"},
        {
            "type": "dense",
            "name": "out",
            "units": 1,
            "activation": "sigmoid",
            "weights": {"init": "glorot_uniform", "seed": 2},
        },
    ],
}
WIDEST_BYTES = 5 * 4  # THREE_LAYER's widest value per sample: l2's 5 float32 numbers


def three_layer(dtype: str = "float32") -> dict[str, Any]:
    return {**copy.deepcopy(THREE_LAYER), "dtype": dtype}


def samples(n: int, width: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, (n, width)).astype(np.float32)


def refusal(call: Any) -> str:
    with pytest.raises(nnspec.InputDataError) as caught:
        call()
    return str(caught.value)


# --- the array as it is: no copy, and the general path's results ----------------------------------


def test_a_ready_array_is_used_without_a_copy() -> None:
    graph = nnspec.graph(nnspec.from_dict(three_layer()))
    x = samples(4)
    assert FeedCheck(graph)(x)["p"] is x
    assert FeedCheck(graph)({"p": x})["p"] is x
    # A view that is not C-contiguous is copied, as a contiguous array of the same numbers.
    strided = np.asfortranarray(x)
    fed = FeedCheck(graph)(strided)["p"]
    assert fed is not strided and fed.flags.c_contiguous
    np.testing.assert_array_equal(fed, x)


def as_list(x: np.ndarray) -> list[Any]:
    return x.tolist()


# Each form holds the numbers of `samples(...)` exactly, but is not an array the model can use as it is.
GENERAL_FORMS = {
    "list": as_list,
    "float64": lambda x: x.astype(np.float64),
    "int64 whole numbers": lambda x: np.round(x).astype(np.int64),
    "fortran order": np.asfortranarray,
    "strided view": lambda x: np.repeat(x, 2, axis=0)[::2],
    "big-endian": lambda x: x.astype(">f4"),
    "read-only": lambda x: _read_only(x.copy()),
    "ndarray subclass": lambda x: x.view(_Subclass),
}


class _Subclass(np.ndarray):
    pass


def _read_only(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


@pytest.mark.parametrize("form", GENERAL_FORMS, ids=list(GENERAL_FORMS))
@pytest.mark.parametrize("batch", [1, 7])
def test_every_form_of_the_same_numbers_gives_the_same_outputs(form: str, batch: int) -> None:
    model = nnspec.to_numpy(nnspec.from_dict(three_layer()))
    x = samples(batch)
    if form == "int64 whole numbers":
        x = np.round(x)
    given = GENERAL_FORMS[form](x)
    expected = model(np.ascontiguousarray(x, np.float32))
    np.testing.assert_array_equal(model(given), expected)
    np.testing.assert_array_equal(model(p=given), expected)
    np.testing.assert_array_equal(model.run({"p": given})["l3"], expected)
    traced = model.run(given, trace=True)
    assert list(traced) == ["l1", "l2", "l3"]
    np.testing.assert_array_equal(traced["l3"], expected)


def test_the_callers_array_is_left_as_it_was() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(three_layer()))
    x = samples(5)
    kept = x.copy()
    for _ in range(2):
        model(x)
    np.testing.assert_array_equal(x, kept)
    assert model(_read_only(x)).shape == (5, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_flow_through_either_path_without_warnings(dtype: str) -> None:
    model = nnspec.to_numpy(nnspec.from_dict(three_layer(dtype)))
    x = np.array([[np.nan, 0, 1], [np.inf, -np.inf, 0], [1, 2, 3]], dtype)
    before = np.geterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ready = model(x)  # the network's dtype: used as it is
        other = model(x.astype(np.float32 if dtype == "float64" else np.float64))  # cast first
        listed = model(x.tolist())
    assert np.geterr() == before
    assert np.isnan(ready[0]).all() and np.isfinite(ready[2]).all()
    np.testing.assert_array_equal(ready, listed)
    if dtype == "float32":  # float64 numbers that are float32 numbers: cast exactly
        np.testing.assert_array_equal(ready, other)


# --- every check stays, with one message whichever way the array comes --------------------------------

# (what is passed for input p of THREE_LAYER (shape [3], float32), what the message must say)
BAD: dict[str, tuple[Any, str]] = {
    "too few features": (np.zeros((2, 2), np.float32), "input 'p': expected shape ['N', 3], found [2, 2]"),
    "no batch axis": (
        np.zeros(3, np.float32),
        "expected shape ['N', 3], found [3] (the batch dimension N comes first)",
    ),
    "extra axis": (np.zeros((2, 3, 1), np.float32), "expected shape ['N', 3], found [2, 3, 1]"),
    "empty batch": (np.zeros((0, 3), np.float32), "expected at least one sample, found an empty batch"),
    "scalar": (np.float32(1), "expected shape ['N', 3], found []"),
    "booleans": (np.ones((2, 3), bool), "expected real numbers (int or float), found dtype bool"),
    "complex": (np.ones((2, 3), np.complex64), "expected real numbers (int or float), found dtype complex64"),
    "strings": (np.array([["a", "b", "c"]]), "expected real numbers (int or float), found dtype <U1"),
    "objects": (np.array([[1.0, None, 2.0]], dtype=object), "found Python objects"),
    "too large for float32": (
        np.array([[0.0, 1e39, 0.0]]),
        "input 'p': expected values that fit in float32, found 1e+39 at index [0, 1]",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_array_is_refused_with_one_message_every_way(case: str) -> None:
    given, fragment = BAD[case]
    spec = nnspec.from_dict(three_layer())
    model = nnspec.to_numpy(spec)
    messages = {
        refusal(lambda: model(given)),
        refusal(lambda: model(p=given)),
        refusal(lambda: model.run({"p": given})),
        refusal(lambda: model.run(given)),
        refusal(lambda: check_feeds(nnspec.graph(spec), {"p": given})),
    }
    assert len(messages) == 1, messages
    (message,) = messages
    assert fragment in message, message


def test_inputs_by_the_wrong_name_are_refused_even_for_a_ready_array() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(three_layer()))
    x = samples(2)
    assert "expected an array for input 'p'" in refusal(lambda: model(q=x))
    assert "found also 'q'" in refusal(lambda: model.run({"p": x, "q": x}))
    assert "pass one array positionally only" in refusal(lambda: model(x, p=x))


@pytest.mark.parametrize("ids", [np.array([[1, 2, 10]]), np.array([[1, -1, 2]])], ids=["too large", "negative"])
def test_integer_ids_are_always_checked_even_when_ready(ids: np.ndarray) -> None:
    # int64, C-contiguous, the input's shape: ready as it is, yet ids are never taken unchecked.
    model = nnspec.to_numpy(nnspec.from_dict(copy.deepcopy(TOKENS)))
    message = refusal(lambda: model(ids))
    assert "input 'tokens': expected ids in [0, 10) for layer 'embed' (layers[0])" in message
    assert refusal(lambda: model(ids.astype(np.int32))) == message
    assert refusal(lambda: model(ids.astype(np.float64))) == message


def test_integer_ids_in_range_give_the_same_outputs_in_any_form() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(copy.deepcopy(TOKENS)))
    ids = np.array([[0, 9, 3], [4, 4, 1]])
    expected = model(ids)
    for given in (ids.astype(np.int32), ids.astype(np.float64), ids.tolist(), np.asfortranarray(ids)):
        np.testing.assert_array_equal(model(given), expected)
    assert "expected integer ids (int64), found 0.5" in refusal(lambda: model(np.array([[0.5, 1, 2]])))


# --- the batch limit: read when the model is built ----------------------------------------------------


@pytest.mark.parametrize("form", ["ready", "float64"])
def test_the_batch_limit_set_before_building_allows_its_value_and_refuses_one_more_sample(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", str(10 * WIDEST_BYTES))
    model = nnspec.to_numpy(nnspec.from_dict(three_layer()))
    cast = (lambda x: x) if form == "ready" else (lambda x: x.astype(np.float64))
    assert model(cast(samples(10))).shape == (10, 2)
    message = refusal(lambda: model(cast(samples(11))))
    assert message == (
        "expected a batch whose values fit in 200 B (NNSPEC_MAX_BATCH_BYTES), found 11 samples, which need 220 B "
        "for 'l2' alone; split the batch"
    )


def test_the_batch_limit_is_the_one_in_force_when_the_model_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = nnspec.from_dict(three_layer())
    built_before = nnspec.to_numpy(spec)
    monkeypatch.setenv("NNSPEC_MAX_BATCH_BYTES", str(10 * WIDEST_BYTES))
    assert built_before(samples(11)).shape == (11, 2)
    assert "split the batch" in refusal(lambda: nnspec.to_numpy(spec)(samples(11)))
    monkeypatch.delenv("NNSPEC_MAX_BATCH_BYTES")
    explicit = nnspec.NumpyModel(nnspec.graph(spec), limits=Limits(max_batch_bytes=2 * WIDEST_BYTES))
    assert explicit(samples(2)).shape == (2, 2)
    assert "found 3 samples" in refusal(lambda: explicit(samples(3)))


# --- one model, many threads -----------------------------------------------------------------------------


def test_one_model_called_from_several_threads_gives_each_its_own_result() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(three_layer()))
    inputs = [samples(3, seed=seed) for seed in range(8)]
    expected = [model(x) for x in inputs]
    results: dict[int, list[np.ndarray]] = {}
    states: dict[int, dict[str, str]] = {}

    def work(k: int) -> None:
        results[k] = [model(inputs[(k + i) % 8]) for i in range(200)]
        states[k] = np.geterr()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for k, outs in results.items():
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, expected[(k + i) % 8])
    assert all(state == np.geterr() for state in states.values())


# --- the sigmoid kernel ---------------------------------------------------------------------------------


def two_branch_sigmoid(x: np.ndarray) -> np.ndarray:
    """The formula the evaluator used before issue 12, which the harness's tolerances were set against."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_is_bit_for_bit_the_two_branch_formula(dtype: str) -> None:
    info = np.finfo(dtype)
    rng = np.random.default_rng(12)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.smallest_subnormal, info.max, -info.max]
    x = np.concatenate(
        [
            rng.normal(0, 1, 100_000),
            rng.normal(0, 30, 100_000),  # past where exp underflows and 1 + e rounds to 1
            rng.uniform(-1e-6, 1e-6, 10_000),
            special,
        ]
    ).astype(dtype)
    x = np.concatenate([x, -x])
    got, want = lookup("sigmoid").numpy(x), two_branch_sigmoid(x)
    assert got.dtype == want.dtype == np.dtype(dtype)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(f"u{got.itemsize}"), want[~nan].view(f"u{want.itemsize}"))
    # ... and in every shape a layer hands it (a batch of rows; one row; one number).
    for shaped in (x[:4096].reshape(64, 64), x[:7].reshape(1, 7), x[:1].reshape(1, 1)):
        np.testing.assert_array_equal(lookup("sigmoid").numpy(shaped), two_branch_sigmoid(shaped))
