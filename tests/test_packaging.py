"""`pip install .` (not only `-e`) must ship the package, its layer modules and its templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_ships_templates_and_every_module(tmp_path: Path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("nnspec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").glob("*.j2"):
        assert f"nnspec/templates/{template.name}" in names
    for module in (REPO / "nnspec").rglob("*.py"):
        assert module.relative_to(REPO).as_posix() in names
    assert not any(n.startswith(("tests/", "specs/", "benchmarks/")) for n in names)
