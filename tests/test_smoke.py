"""End-to-end smoke: the party neuron compiles, runs and cross-checks."""

import numpy as np

import nnspec


def test_party_from_dict_runs_and_checks(party):
    spec = nnspec.from_dict(party)
    model = nnspec.to_numpy(spec)
    # The seed's arithmetic: tired with three friends going gives -4 + 3 + 2 = 1.
    assert model(np.array([[1.0, 3.0]])).tolist() == [[1.0]]
    assert nnspec.check(spec).passed


def test_cli_compile_writes_a_model(cli, write_spec, party, tmp_path):
    path = write_spec(party)
    result = cli("compile", path, "-o", tmp_path / "party.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "party.onnx").stat().st_size > 0
