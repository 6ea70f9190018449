"""`nnspec migrate`: the place where older formats are upgraded; today nnspec/1 is current."""

from __future__ import annotations

import json

import pytest

from nnspec import migrate as migration


def test_current_spec_is_left_as_it_is(cli, write_spec, party, tmp_path):
    out = tmp_path / "up.json"
    result = cli("migrate", write_spec(party), "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == party
    assert "nothing to upgrade" in result.stderr


def test_newer_format_is_refused_clearly(cli, write_spec, party):
    result = cli("migrate", write_spec({**party, "format": "nnspec/2"}))
    assert result.exit_code == 2 and "newer" in result.stderr and "Traceback" not in result.output


def test_registered_migration_upgrades_old_specs(cli, write_spec, party, monkeypatch):
    def from_0(spec):  # a hypothetical older format that called `layers` `stack`
        spec["layers"] = spec.pop("stack")
        spec["format"] = "nnspec/1"
        return spec

    monkeypatch.setitem(migration.MIGRATIONS, "nnspec/0", from_0)
    old = {**{k: v for k, v in party.items() if k != "layers"}, "format": "nnspec/0", "stack": party["layers"]}
    result = cli("migrate", write_spec(old))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layers"] == party["layers"]
    assert "nnspec/0 -> nnspec/1" in result.stderr


def test_an_invalid_result_is_an_error_not_a_file(cli, write_spec, party, tmp_path):
    out = tmp_path / "up.json"
    broken = {**party, "layers": [{**party["layers"][0], "units": 0}]}
    result = cli("migrate", write_spec(broken), "-o", out)
    assert result.exit_code == 2 and "layers[0].units" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("payload", ["[]", "not json"])
def test_migrate_bad_json(cli, write_spec, payload):
    result = cli("migrate", write_spec(payload))
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
