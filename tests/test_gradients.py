"""Every gradient rule training uses, against central finite differences in float64.

Registry-wide: every activation (its rule, or its refusal and reason), every layer type's vjp on its own example
specs (inputs and each learned parameter), and the whole backward pass (nnspec.train.Backprop) on those specs.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import SPECS

import nnspec
from nnspec.activations import REGISTRY, Activation
from nnspec.errors import SpecError
from nnspec.evaluator import NumpyModel
from nnspec.layers import LAYERS
from nnspec.train import Backprop

# Central differences with step H |x| (at least H) err by ~H^2 |f'''| (truncation), and by the rounding of the two
# evaluations over the step: a sum of k terms is within gamma_k sum |terms| of exact (Higham 3.1), so the difference
# is off by at most 2 gamma_k sum |terms| / (2 step). For values of size ~1-10 both are ~1e-10, while a wrong rule
# errs by the size of a term, ~1e-2 or more: TOLERANCE (relative to the gradient's size) sits between the two, ~10^3
# from each. The rounding term is added where terms are large (a batch norm of mean 1000, variance 0.01: ~1e4).
H = 1e-6
TOLERANCE = 1e-6
PICKS = 8  # coordinates checked per array: any wrong term shows at a random coordinate, and FD costs two passes each


def finite_difference(f: Any, x: np.ndarray, coordinates: list[tuple[int, ...]]) -> np.ndarray:
    """d f / d x[c] at each coordinate c, by central differences; x is restored."""
    out = []
    for c in coordinates:
        keep = x[c]
        step = H * max(1.0, abs(keep))
        x[c] = keep + step
        up = f()
        x[c] = keep - step
        down = f()
        x[c] = keep
        out.append((up - down) / (2 * step))
    return np.array(out)


def rounding(terms: np.ndarray) -> float:
    """The most that rounding can move a central difference of sum(terms) (see above), at the smallest step H."""
    k = terms.size + 2
    gamma = k * 2.0**-53 / (1 - k * 2.0**-53)
    return 2 * gamma * float(np.abs(terms).sum()) / (2 * H)


def picks(shape: tuple[int, ...], rng: np.random.Generator) -> list[tuple[int, ...]]:
    count = int(np.prod(shape))
    flat = rng.choice(count, size=min(PICKS, count), replace=False)
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in flat]


def close(analytic: np.ndarray, numeric: np.ndarray, what: str, noise: float = 0.0) -> None:
    scale = max(1.0, float(np.abs(numeric).max(initial=0.0)))
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=TOLERANCE * scale + noise, err_msg=what)


# --- activations -------------------------------------------------------------------------------------------

# Parameters away from the defaults, so that a rule that ignores them fails.
VARIANTS = {
    "leaky_relu": {"alpha": 0.2},
    "elu": {"alpha": 0.5},
    "selu": {"alpha": 1.5, "gamma": 1.2},
    "hard_sigmoid": {"alpha": 0.3, "beta": 0.4},
    "gelu": {"approximate": "tanh"},
}
ACTIVATIONS = [
    pytest.param(name, params, id=name + ("" if not params else "-" + "-".join(f"{k}={v}" for k, v in params.items())))
    for name in sorted(REGISTRY)
    for params in ({}, *([VARIANTS[name]] if name in VARIANTS else []))
]
STEPS = {"hardlim", "hardlims"}  # refused: their slope is 0 wherever it exists


def _bound(name: str, params: dict[str, Any]) -> Activation:
    entry = REGISTRY[name]
    return Activation(entry, {**entry.defaults(), **params})


@pytest.mark.parametrize(("name", "params"), ACTIVATIONS)
def test_activation_gradient_matches_finite_differences(name, params):
    act = _bound(name, params)
    if name in STEPS:
        assert act.gradient_refused and "slope is 0" in act.gradient_refused
        with pytest.raises(ValueError, match=name):
            act.vjp(np.zeros((1, 2)), np.zeros((1, 2)), np.ones((1, 2)))
        return
    assert act.gradient_refused is None
    rng = np.random.default_rng(sorted(REGISTRY).index(name))
    n = rng.normal(scale=3.0, size=(5, 4))
    # Keep clear of the kinks (relu's 0, a clip's ends), where the derivative jumps and differences straddle it.
    for position, _ in act.type.error.kinks(**act.params):
        near = np.abs(n - position) < 1e-3
        n[near] += 0.01
    upstream = rng.normal(size=n.shape)
    analytic = act.vjp(n, act(n), upstream)
    coordinates = [tuple(int(i) for i in np.unravel_index(k, n.shape)) for k in range(n.size)]
    numeric = finite_difference(lambda: float((upstream * act(n)).sum()), n, coordinates)
    close(np.array([analytic[c] for c in coordinates]), numeric, name)


def test_every_activation_either_has_a_gradient_or_says_why_not():
    for name in REGISTRY:
        reason = _bound(name, {}).gradient_refused
        assert (reason is not None) == (name in STEPS), (name, reason)


# --- layer types -------------------------------------------------------------------------------------------

EXAMPLES = [
    pytest.param(name, example, id=f"{name}-{example['name']}")
    for name, entry in sorted(LAYERS.items())
    for example in entry.examples
]
NO_GRADIENT: dict[str, str] = {}  # layer type -> why training refuses it; none so far


def _wide_graph(example: dict[str, Any]) -> nnspec.ir.Graph:
    return nnspec.graph(nnspec.from_dict(copy.deepcopy(example))).widened()


def _feeds(graph: nnspec.ir.Graph, rng: np.random.Generator, batch: int = 3) -> dict[str, np.ndarray]:
    feeds = {}
    for info in graph.inputs:
        if info.dtype is not None and info.dtype.startswith("int"):
            size = min(n.attrs["input_dim"] for n in graph.nodes if info.name in n.inputs)
            feeds[info.name] = rng.integers(0, size, size=(batch, *info.shape))
        else:
            feeds[info.name] = rng.normal(size=(batch, *info.shape))
    return feeds


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_type_has_a_gradient_rule_or_a_reason(name):
    entry = LAYERS[name]
    assert (entry.vjp is not None) != (name in NO_GRADIENT), name
    for frozen in entry.frozen:
        assert frozen in entry.spec.model_fields, (name, frozen)


@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_layer_vjp_matches_finite_differences(name, example):
    """Each layer of the type, on the inputs its example feeds it: dL/d(input) and dL/d(parameter) for
    L = upstream . layer(inputs, parameters), against central differences of the layer's own NumPy kernel."""
    entry = LAYERS[name]
    if entry.vjp is None:
        pytest.xfail(f"{name}: {NO_GRADIENT[name]}")
    graph = _wide_graph(example)
    rng = np.random.default_rng(7)
    values = {**(feeds := _feeds(graph, rng)), **NumpyModel(graph).run(feeds, trace=True)}
    checked = 0
    for node in (n for n in graph.nodes if n.op == name):
        node = replace(node, params={k: v.copy() for k, v in node.params.items()})
        inputs = [np.array(values[i], dtype=values[i].dtype) for i in node.inputs]
        output = entry.numpy(node)(*inputs)
        upstream = rng.normal(size=output.shape)
        input_grads, param_grads = entry.vjp(node, inputs, output, upstream)
        assert set(param_grads) == set(node.params) - set(entry.frozen), node.name

        def loss(node: Any = node, inputs: list[np.ndarray] = inputs, upstream: np.ndarray = upstream) -> float:
            return float((upstream * entry.numpy(node)(*inputs)).sum())

        noise = rounding(upstream * output)

        for k, (x, grad) in enumerate(zip(inputs, input_grads, strict=True)):
            if x.dtype.kind != "f":
                assert grad is None, f"{node.name}: integer ids carry no gradient"
                continue
            assert grad.shape == x.shape
            coordinates = picks(x.shape, rng)
            numeric = finite_difference(loss, x, coordinates)
            close(np.array([grad[c] for c in coordinates]), numeric, f"{node.name} input {k}", noise)
            checked += 1
        for key, grad in param_grads.items():
            param = node.params[key]
            assert grad.shape == param.shape, (node.name, key)
            coordinates = picks(param.shape, rng)
            numeric = finite_difference(loss, param, coordinates)
            close(np.array([grad[c] for c in coordinates]), numeric, f"{node.name}.{key}", noise)
            checked += 1
    assert checked, f"{example['name']} has no {name} layer to check"


# --- the whole backward pass -------------------------------------------------------------------------------


def _targets(graph: nnspec.ir.Graph, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {o.name: rng.uniform(size=(batch, *o.shape)) for o in graph.outputs}


def _check_network(graph: nnspec.ir.Graph, loss: str, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    feeds = _feeds(graph, rng, batch=4)
    targets = _targets(graph, rng, batch=4)
    net = Backprop(graph, loss)

    def cost() -> float:
        values, pre = net.forward(feeds)
        return net.cost(values, pre, targets)[0]

    values, pre = net.forward(feeds)
    grads = net.gradients(values, pre, net.cost(values, pre, targets)[1])
    checked = 0
    for name, keys in net.learned.items():
        for key in keys:
            param = net.params[name][key]
            coordinates = picks(param.shape, rng)
            analytic = grads[name][key]
            close(
                np.array([analytic[c] for c in coordinates]),
                finite_difference(cost, param, coordinates),
                f"{name}.{key}",
            )
            checked += 1
    if not checked:  # nothing to learn: every parameter is one training leaves (a batch norm's statistics)
        assert all(set(n.params) <= set(LAYERS[n.op].frozen) for n in graph.nodes)


@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_backpropagation_through_each_example_matches_finite_differences(name, example):
    """The cost's gradient for every learned parameter of the example network (mse), end to end: the layers' rules
    composed, a value read by several layers summing what each sends back."""
    _check_network(_wide_graph(example), "mse")


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.json")), ids=lambda p: p.stem)
def test_backpropagation_through_each_shipped_spec_matches_finite_differences(path):
    """The same on specs/: several inputs and outputs, an output that another output reads (two_heads); a spec
    with a step activation (party_layer's hardlim) is refused, naming the layer."""
    graph = nnspec.graph(nnspec.load(path)).widened()
    steps = [n for n in graph.nodes if n.activation is not None and n.activation.gradient_refused]
    if steps:
        with pytest.raises(SpecError, match=f"layer '{steps[0].name}'"):
            Backprop(graph, "mse")
        return
    _check_network(graph, "mse")


CROSS_ENTROPY_NETWORK = {
    "format": "nnspec/1",
    "name": "two_probability_heads",
    "description": "A softmax output that a later layer also reads, and a sigmoid output after it.",
    "dtype": "float64",
    "inputs": [{"name": "x", "shape": [3]}],
    "layers": [
        {
            "type": "dense",
            "name": "h",
            "units": 4,
            "activation": "tanh",
            "weights": {"init": "glorot_uniform", "seed": 1},
        },
        {
            "type": "dense",
            "name": "classes",
            "units": 3,
            "activation": "softmax",
            "weights": {"init": "normal", "seed": 2, "std": 1.0},
            "bias": {"init": "normal", "seed": 3},
        },
        {
            "type": "dense",
            "name": "yes",
            "units": 2,
            "activation": "sigmoid",
            "weights": {"init": "glorot_uniform", "seed": 4},
            "bias": {"init": "zeros"},
        },
        {"type": "activation", "name": "log_probs", "inputs": ["h"], "activation": "log_softmax"},
    ],
    "outputs": ["classes", "yes", "log_probs"],
}


def test_cross_entropy_gradient_matches_finite_differences():
    """Cross-entropy computed from each output's pre-activation (softmax, sigmoid, log_softmax), including an output
    that a later layer reads: the cost's own dL/dn plus what comes back through f."""
    graph = nnspec.graph(nnspec.from_dict(copy.deepcopy(CROSS_ENTROPY_NETWORK)))
    _check_network(graph, "cross_entropy")


def test_cross_entropy_is_the_textbook_formula_and_its_gradient_is_p_minus_y():
    from nnspec.train import cross_entropy

    rng = np.random.default_rng(0)
    n = rng.normal(scale=4.0, size=(6, 3))
    y = np.eye(3)[rng.integers(0, 3, size=6)]
    p = np.exp(n) / np.exp(n).sum(axis=1, keepdims=True)
    loss, grad = cross_entropy(n, _bound("softmax", {}), y)
    assert loss == pytest.approx(-(y * np.log(p)).sum() / 6, rel=1e-12)
    np.testing.assert_allclose(grad, (p - y) / 6, atol=1e-15)
    s = 1 / (1 + np.exp(-n))
    t = rng.uniform(size=n.shape)
    loss, grad = cross_entropy(n, _bound("sigmoid", {}), t)
    assert loss == pytest.approx(-(t * np.log(s) + (1 - t) * np.log(1 - s)).sum() / 6, rel=1e-12)
    np.testing.assert_allclose(grad, (s - t) / 6, atol=1e-15)
    # Stable where the probability rounds to 0 or 1: log of a rounded p would be -inf.
    loss, _ = cross_entropy(np.array([[-800.0]]), _bound("sigmoid", {}), np.array([[1.0]]))
    assert loss == pytest.approx(800.0)


def test_a_step_activation_is_refused_naming_the_layer():
    spec = copy.deepcopy(nnspec.layers.dense.EXAMPLES[0])
    spec["layers"][0]["activation"] = "hardlim"
    with pytest.raises(SpecError) as caught:
        Backprop(nnspec.graph(nnspec.from_dict(spec)), "mse")
    assert caught.value.loc == ("layers", 0, "activation")
    assert "layer 'hidden'" in str(caught.value) and "hardlim" in str(caught.value) and "logsig" in str(caught.value)
