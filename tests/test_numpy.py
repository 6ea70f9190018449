"""The NumPy evaluator: its calling convention, the seed's layer equation computed by hand, wiring by
name, and every weight source."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnspec

SPECS = Path(__file__).resolve().parent.parent / "specs"


def logsig(n: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-n))


def layer(W: Any, p: np.ndarray, b: Any, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The seed's a = f(W p + b) for one sample: p and the result are column vectors."""
    return f(np.asarray(W, np.float64) @ p + np.asarray(b, np.float64).reshape(-1, 1))


def per_sample(batch: np.ndarray, forward: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a one-sample forward pass (column vector in, column vector out) to each row of a batch."""
    return np.stack([forward(row.reshape(-1, 1).astype(np.float64)).ravel() for row in batch])


def batch(n: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, (n, width))


# --- the calling convention --------------------------------------------------------------------


def test_single_input_positional_or_keyword_and_single_output_array(party: dict[str, Any]) -> None:
    model = nnspec.to_numpy(nnspec.from_dict(party))
    # The seed's party: tired (1) with three friends going (3): -4*1 + 1*3 + 2 = 1; rested with none: 2.
    p = np.array([[1.0, 3.0], [0.0, 0.0]])
    out = model(p)
    assert isinstance(out, np.ndarray)
    assert out.tolist() == [[1.0], [2.0]]
    assert model(p=p).tolist() == [[1.0], [2.0]]


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_any_batch_size(n: int, party: dict[str, Any]) -> None:
    model = nnspec.to_numpy(nnspec.from_dict(party))
    p = batch(n, 2).astype(np.float32)
    out = model(p)
    assert out.shape == (n, 1)
    expected = per_sample(p, lambda x: layer([[-4, 1]], x, [2], lambda n: n))
    # Two float32 additions, each rounding to within 2^-24 of the running sum's terms.
    allowed = 2 * 2**-24 * (4 * np.abs(p[:, :1]) + np.abs(p[:, 1:]) + 2)
    assert (np.abs(out - expected) <= allowed).all()


@pytest.mark.parametrize("given", [np.float16, np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_output_dtype_is_the_spec_dtype(dtype: str, given: type, party: dict[str, Any]) -> None:
    model = nnspec.to_numpy(nnspec.from_dict({**party, "dtype": dtype}))
    out = model(np.array([[1, 3], [0, 5]], dtype=given))
    assert out.dtype == np.dtype(dtype)
    assert out.tolist() == [[1.0], [7.0]]  # -4 + 3 + 2 and 0 + 5 + 2


TWO_INPUTS: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "two_inputs",
    "dtype": "float64",
    "inputs": [{"name": "features", "shape": [3]}, {"name": "context", "shape": [2]}],
    "layers": [
        {
            "type": "dense",
            "name": "trunk",
            "units": 2,
            "activation": "tanh",
            "weights": [[0.5, -1, 2], [1, 0, -0.5]],
            "bias": [0.1, -0.2],
        },
        {
            "type": "dense",
            "name": "mood",
            "inputs": ["context"],
            "units": 3,
            "activation": "relu",
            "weights": [[1, -1], [2, 0.5], [-1, -1]],
        },
        # Reads trunk by name, skipping mood: a = logsig(W trunk + b).
        {
            "type": "dense",
            "name": "risk",
            "inputs": ["trunk"],
            "units": 1,
            "activation": "logsig",
            "weights": [[3, -2]],
            "bias": [0.25],
        },
        {"type": "activation", "name": "mood_probs", "inputs": ["mood"], "activation": "softmax"},
    ],
    "outputs": ["risk", "mood_probs", "trunk"],
}


def _two_inputs_by_hand(features: np.ndarray, context: np.ndarray) -> dict[str, np.ndarray]:
    layers = {layer_["name"]: layer_ for layer_ in TWO_INPUTS["layers"]}
    trunk = per_sample(features, lambda p: layer(layers["trunk"]["weights"], p, layers["trunk"]["bias"], np.tanh))
    mood = per_sample(context, lambda p: layer(layers["mood"]["weights"], p, [0, 0, 0], lambda n: np.maximum(n, 0)))
    risk = per_sample(trunk, lambda a: layer(layers["risk"]["weights"], a, layers["risk"]["bias"], logsig))
    e = np.exp(mood - mood.max(axis=1, keepdims=True))
    return {"risk": risk, "mood_probs": e / e.sum(axis=1, keepdims=True), "trunk": trunk}


def test_several_inputs_by_keyword_and_several_outputs_as_a_dict() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(TWO_INPUTS))
    features, context = batch(5, 3, seed=1), batch(5, 2, seed=2)
    out = model(features=features, context=context)
    assert isinstance(out, dict)
    assert list(out) == ["risk", "mood_probs", "trunk"]  # keyed by output name, in the spec's order
    expected = _two_inputs_by_hand(features, context)
    for name in out:
        assert out[name].shape == expected[name].shape
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-14, atol=1e-15, err_msg=name)


def test_several_inputs_cannot_be_passed_positionally() -> None:
    model = nnspec.to_numpy(nnspec.from_dict(TWO_INPUTS))
    with pytest.raises(nnspec.InputDataError, match="features, context"):
        model(batch(2, 3))
    with pytest.raises(nnspec.InputDataError, match="context"):
        model(features=batch(2, 3))


def test_a_layer_reads_an_earlier_layer_by_name() -> None:
    # risk reads trunk, not mood (the layer before it): with mood's weights changed, risk is unchanged.
    changed = copy.deepcopy(TWO_INPUTS)
    changed["layers"][1]["weights"] = [[9, 9], [9, 9], [9, 9]]
    features, context = batch(4, 3, seed=3), batch(4, 2, seed=4)
    before = nnspec.to_numpy(nnspec.from_dict(TWO_INPUTS))(features=features, context=context)
    after = nnspec.to_numpy(nnspec.from_dict(changed))(features=features, context=context)
    np.testing.assert_array_equal(before["risk"], after["risk"])
    assert not np.array_equal(before["mood_probs"], after["mood_probs"])
    np.testing.assert_allclose(before["risk"], _two_inputs_by_hand(features, context)["risk"], rtol=1e-14)


SHARED: dict[str, Any] = {
    "format": "nnspec/1",
    "name": "shared",
    "dtype": "float64",
    "inputs": [{"name": "p", "shape": [3]}],
    "layers": [
        {"type": "dense", "name": "h", "units": 2, "activation": "tanh",
         "weights": [[0.5, -1, 2], [1, 0.25, -0.5]], "bias": [0.1, -0.2]},
        {"type": "dense", "name": "a", "units": 2, "activation": "relu",
         "weights": [[1, -2], [-0.5, 3]], "bias": [0.3, 0]},
        {"type": "dense", "name": "m", "units": 1, "weights": [[2, -1]]},
        # h again, two layers after its first reader: it must still be held after a and m.
        {"type": "dense", "name": "c", "inputs": ["h"], "units": 1, "activation": "logsig",
         "weights": [[3, -2]], "bias": [0.25]},
    ],
    "outputs": ["m", "c"],
}  # fmt: skip


def _shared_by_hand(p: np.ndarray) -> dict[str, np.ndarray]:
    layers = {layer_["name"]: layer_ for layer_ in SHARED["layers"]}

    def forward(name: str, x: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return per_sample(x, lambda q: layer(layers[name]["weights"], q, layers[name].get("bias", [0]), f))

    h = forward("h", p, np.tanh)
    a = forward("a", h, lambda n: np.maximum(n, 0))
    return {"m": forward("m", a, lambda n: n), "c": forward("c", h, logsig)}


def test_a_layer_read_by_two_later_layers_is_kept_for_both() -> None:
    """h is no output, and is read by a and, after m, by c: the evaluator frees it only after c."""
    import onnxruntime

    from nnspec.onnxio.export import to_bytes

    spec = nnspec.from_dict(SHARED)
    p = np.concatenate([[[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], batch(6, 3, seed=5)])
    expected = _shared_by_hand(p)
    out = nnspec.to_numpy(spec)(p)
    assert list(out) == ["m", "c"]
    # float64: hand and evaluator differ in summation order and in how logsig is written, a few ulps (1e-15 seen)
    for name in out:
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-14, atol=1e-15, err_msg=name)
    session = onnxruntime.InferenceSession(to_bytes(nnspec.to_onnx(spec)), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"p": p}), strict=True))
    # float64 on both sides: a dozen roundings of 1.1e-16 on the way, from onnxruntime's own tanh and exp too,
    # through weight sums of at most 5 (2e-15 seen); a wrong wiring would move the outputs by far more.
    for name in out:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-13, atol=1e-15, err_msg=name)


# --- the seed's three-layer network ------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_three_layer_network_is_the_seed_composition(dtype: str) -> None:
    data = json.loads((SPECS / "three_layer.json").read_text())
    l1, l2, l3 = data["layers"]
    assert (l1["activation"], l2["activation"], l3["activation"]) == ("tansig", "logsig", "purelin")

    def a3(p: np.ndarray) -> np.ndarray:
        # a3 = f3(W3 f2(W2 f1(W1 p + b1) + b2) + b3)
        return layer(
            l3["weights"],
            layer(l2["weights"], layer(l1["weights"], p, l1["bias"], np.tanh), l2["bias"], logsig),
            l3["bias"],
            lambda n: n,
        )

    spec = nnspec.from_dict({**data, "dtype": dtype})
    p = np.array([[8.0, 3.0], [5.0, 1.0], [0.0, 0.0], [-2.0, 10.0], *batch(60, 2)]).astype(dtype)
    got = nnspec.to_numpy(spec)(p)
    assert got.shape == (64, 1) and got.dtype == np.dtype(dtype)
    # float64: the two differ only in summation order, an ulp or two per layer on scores up to ~100.
    # float32: the model's weights are the spec's rounded to float32 (2^-24 relative) and every step
    # rounds to float32; the score sums terms of up to 60 in magnitude, so allow 64 of 2^-24 on ~100.
    tolerance = 1e-13 if dtype == "float64" else 64 * 2**-24 * 100
    np.testing.assert_allclose(got, per_sample(p, a3), rtol=0, atol=tolerance)


# --- weight sources ----------------------------------------------------------------------------


def dense_spec(weights: Any, bias: Any = None, in_features: int = 3, units: int = 2, **extra: Any) -> dict[str, Any]:
    dense: dict[str, Any] = {"type": "dense", "name": "d", "units": units, "weights": weights}
    if bias is not None:
        dense["bias"] = bias
    return {
        "format": "nnspec/1",
        "name": "w",
        "dtype": "float64",
        "inputs": [{"name": "p", "shape": [in_features]}],
        "layers": [dense],
        **extra,
    }


def read_back(spec: nnspec.Spec, in_features: int) -> tuple[np.ndarray, np.ndarray]:
    """W and b as the evaluator uses them: a linear layer maps 0 to b and each unit vector e_j to W[:, j] + b."""
    model = nnspec.to_numpy(spec)
    bias = model(np.zeros((1, in_features)))[0]
    return (model(np.eye(in_features)) - bias).T, bias


W = [[1.5, -2.0, 0.25], [0.0, 3.0, -1.0]]
B = [0.5, -0.5]


def test_inline_weights() -> None:
    weights, bias = read_back(nnspec.from_dict(dense_spec(W, B)), 3)
    np.testing.assert_array_equal(weights, W)
    np.testing.assert_array_equal(bias, B)


def test_npy_and_npz_files(tmp_path: Path, write_spec: Callable[..., Path]) -> None:
    np.save(tmp_path / "w.npy", np.array(W))
    np.savez(tmp_path / "params.npz", W=np.array(W), b=np.array(B, np.float32), other=np.ones(4))
    for weights, bias in [
        ({"file": "w.npy"}, {"file": "params.npz", "key": "b"}),
        ({"file": "params.npz", "key": "W"}, B),
    ]:
        spec = nnspec.load(write_spec(dense_spec(weights, bias)))
        got_w, got_b = read_back(spec, 3)
        np.testing.assert_array_equal(got_w, W)
        np.testing.assert_array_equal(got_b, B)


@pytest.mark.parametrize(
    ("source", "value"),
    [({"init": "zeros"}, 0.0), ({"init": "ones"}, 1.0), ({"init": "constant", "value": -0.75}, -0.75)],
)
def test_constant_initializers(source: dict[str, Any], value: float) -> None:
    weights, bias = read_back(nnspec.from_dict(dense_spec(source, source)), 3)
    assert weights.shape == (2, 3) and (weights == value).all()
    assert bias.shape == (2,) and (bias == value).all()


def test_no_bias_means_zero_bias() -> None:
    _, bias = read_back(nnspec.from_dict(dense_spec(W)), 3)
    assert bias.tolist() == [0.0, 0.0]


RANDOM = [
    {"init": "uniform", "seed": 7},
    {"init": "uniform", "seed": 7, "low": -3, "high": 5},
    {"init": "normal", "seed": 7},
    {"init": "normal", "seed": 7, "mean": 1, "std": 2},
    {"init": "glorot_uniform", "seed": 7},
    {"init": "he_normal", "seed": 7},
]

# Large enough for tight statistics: 300 units x 200 inputs = 60 000 numbers.
UNITS, IN_FEATURES = 300, 200
COUNT = UNITS * IN_FEATURES


def random_weights(source: dict[str, Any]) -> np.ndarray:
    spec = nnspec.from_dict(dense_spec(source, in_features=IN_FEATURES, units=UNITS))
    return read_back(spec, IN_FEATURES)[0]


@pytest.mark.parametrize("source", RANDOM, ids=lambda s: "-".join(f"{v}" for k, v in s.items() if k != "seed"))
def test_seeded_initializers_are_reproducible(source: dict[str, Any]) -> None:
    first = random_weights(source)
    np.testing.assert_array_equal(first, random_weights(copy.deepcopy(source)))
    assert len(np.unique(first)) > COUNT * 0.99  # not a constant or a short cycle
    other = random_weights({**source, "seed": source["seed"] + 1})
    assert np.mean(first == other) < 0.001


def _check_moments(w: np.ndarray, mean: float, std: float) -> None:
    """Sample mean and std against the distribution's, within 6 standard errors.

    For n draws the sample mean has standard error std / sqrt(n); the sample std, std / sqrt(2n) (the
    normal approximation; a uniform's is smaller). With n = 60 000 that is 0.4% and 0.3% of std, so 6
    standard errors fail only a wrong scale or offset, never chance (p < 1e-8).
    """
    n = w.size
    assert abs(w.mean() - mean) <= 6 * std / math.sqrt(n), (w.mean(), mean)
    assert abs(w.std() - std) <= 6 * std / math.sqrt(2 * n), (w.std(), std)


def test_uniform_range_and_moments() -> None:
    for low, high, source in [(-0.05, 0.05, RANDOM[0]), (-3.0, 5.0, RANDOM[1])]:
        w = random_weights(source)
        assert low <= w.min() and w.max() < high
        # the extremes of 60 000 uniform draws lie within 1/6000 of the range of its ends (p > 1 - 1e-4)
        assert w.min() - low < (high - low) / 6000 and high - w.max() < (high - low) / 6000
        _check_moments(w, (low + high) / 2, (high - low) / math.sqrt(12))


def test_normal_moments() -> None:
    _check_moments(random_weights(RANDOM[2]), 0.0, 0.05)
    _check_moments(random_weights(RANDOM[3]), 1.0, 2.0)


def test_glorot_uniform_limit() -> None:
    w = random_weights(RANDOM[4])
    limit = math.sqrt(6 / (IN_FEATURES + UNITS))  # fan_in = in_features, fan_out = units
    assert -limit <= w.min() and w.max() <= limit
    assert w.max() > limit * (1 - 1 / 3000) and w.min() < -limit * (1 - 1 / 3000)
    _check_moments(w, 0.0, limit / math.sqrt(3))


def test_he_normal_std() -> None:
    _check_moments(random_weights(RANDOM[5]), 0.0, math.sqrt(2 / IN_FEATURES))


def test_initializers_are_materialized_once_for_both_backends(three_layer: dict[str, Any]) -> None:
    # The ONNX initializers hold the very numbers the evaluator multiplies by.
    from onnx import numpy_helper

    spec = nnspec.from_dict(three_layer)
    model = nnspec.to_onnx(spec)
    stored = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in nnspec.graph(spec).nodes:
        np.testing.assert_array_equal(stored[f"{node.name}.weights"], node.params["weights"])
    assert nnspec.check(spec).passed


def test_non_finite_values_flow_through_without_warnings(party: dict[str, Any]) -> None:
    import warnings

    model = nnspec.to_numpy(nnspec.from_dict({**party, "layers": [{**party["layers"][0], "activation": "softplus"}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model(np.array([[np.inf, np.inf], [np.nan, 0.0], [-1e30, 0.0], [1.0, 3.0]]))
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 0])  # -4 inf + inf, and NaN
    assert out[2, 0] == np.float32(4e30)
    assert out[3, 0] == pytest.approx(math.log1p(math.e), rel=2**-22)
