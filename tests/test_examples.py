"""The shipped examples: they are there, and they compute what the tutorial says.

Each one is also cross-checked as its own test item by nnspec's pytest plugin (`--nnspec specs` in addopts).
"""

from __future__ import annotations

import pytest
from conftest import SPECS

import nnspec

EXAMPLES = sorted(SPECS.glob("*.json"))


def test_the_seed_examples_are_there():
    names = {p.stem for p in EXAMPLES}
    assert {"party_no_bias", "party", "party_sigmoid", "three_layer"} <= names
    assert any(nnspec.graph(nnspec.load(p)).parameter_count > 100_000 for p in EXAMPLES)  # a larger network


def test_every_example_is_cross_checked_by_the_plugin(pytestconfig):
    """The pytest plugin cross-checks each spec in specs/ (specs/party.json::nnspec, ...), from addopts."""
    assert "--nnspec specs" in " ".join(pytestconfig.getini("addopts"))


def test_party_decisions_match_the_tutorial():
    import numpy as np

    no_bias = nnspec.to_numpy(nnspec.load(SPECS / "party_no_bias.json"))
    # Tired with the best friend going: -10 + 1 < 0, stay home; rested and friend going: 0 + 1 > 0, go.
    assert no_bias(np.array([[1, 1], [0, 1]])).ravel().tolist() == [-9.0, 1.0]
    party = nnspec.to_numpy(nnspec.load(SPECS / "party.json"))
    # With b = 2: tired and three friends going gives 1; with b = 0 it would take five friends.
    assert party(np.array([[1, 3]])).item() == 1.0
    sigmoid = nnspec.to_numpy(nnspec.load(SPECS / "party_sigmoid.json"))
    assert sigmoid(np.array([[1, 3]])).item() == pytest.approx(1 / (1 + np.exp(-1)), rel=1e-6)
