"""Upgrading specs written for older versions of the format, one version step at a time.

`MIGRATIONS` maps a format to the function that rewrites a spec of that format into the next one.
`nnspec/1` is the first format, so the table is empty; a future `nnspec/2` adds
`"nnspec/1": _from_1_to_2` here, and `nnspec migrate` upgrades old specs with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import SpecError
from .spec import FORMAT

Migration = Callable[[dict[str, Any]], dict[str, Any]]

MIGRATIONS: dict[str, Migration] = {}


def migrate(data: Any, source: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The spec rewritten to the current format, and the steps taken (["nnspec/0 -> nnspec/1"])."""
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object at the top level", source=source)
    steps: list[str] = []
    while data.get("format") in MIGRATIONS and data.get("format") != FORMAT:
        before = data["format"]
        data = MIGRATIONS[before](dict(data))
        steps.append(f"{before} -> {data.get('format')}")
        if len(steps) > len(MIGRATIONS):  # a table that cycles is a bug in nnspec, not in the spec
            raise AssertionError(f"migrations cycle: {steps}")
    return data, steps
