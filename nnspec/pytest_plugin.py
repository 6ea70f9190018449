"""pytest plugin: `pytest --nnspec specs/` collects every spec there as a test item that cross-checks it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .batch import FolderResult, check_spec, looks_like_spec

ROOTS = pytest.StashKey[list[Path]]()
ITEM_NAME = "nnspec"  # items read `specs/party.json::nnspec`, as pytest-mypy's read `x.py::mypy`


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nnspec", "cross-check nnspec specs")
    group.addoption(
        "--nnspec",
        action="append",
        default=[],
        metavar="PATH",
        help="Cross-check the spec PATH, or every *.json under the folder PATH, as one test item each (repeatable).",
    )


def pytest_configure(config: pytest.Config) -> None:
    given: list[str] = config.getoption("nnspec")
    if not given:
        return
    config.addinivalue_line("markers", "nnspec: a spec cross-checked by nnspec's pytest plugin (-m 'not nnspec')")
    roots = [_resolve(p, config) for p in given]
    config.stash[ROOTS] = roots
    # NOTE: like testpaths, a --nnspec from addopts applies only when no test paths are named:
    # `pytest tests/test_cli.py` runs that file alone. One typed on the command line always applies.
    typed = any(a == "--nnspec" or a.startswith("--nnspec=") for a in map(str, config.invocation_params.args))
    if typed or config.args_source is not pytest.Config.ArgsSource.ARGS:
        named = {Path(os.path.abspath(config.invocation_params.dir / a)) for a in config.args}
        config.args.extend(str(root) for root in roots if root not in named)


def _resolve(given: str, config: pytest.Config) -> Path:
    """A --nnspec path, from the current folder or else from the rootdir (so addopts work from any folder)."""
    for base in (config.invocation_params.dir, config.rootpath):
        path = Path(os.path.abspath(base / given))
        if path.exists():
            return path
    raise pytest.UsageError(f"--nnspec {given}: no such file or folder")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SpecFile | None:
    for root in parent.config.stash.get(ROOTS, []):
        if file_path == root:
            return SpecFile.from_parent(parent, path=file_path)
        # Under a folder, as `nnspec check DIR` does: JSON that is plainly not a spec (input files) is left out.
        if file_path.suffix == ".json" and root in file_path.parents and looks_like_spec(file_path):
            return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecFile(pytest.File):
    def collect(self) -> Iterator[SpecItem]:
        yield SpecItem.from_parent(self, name=ITEM_NAME)


class SpecCheckFailed(Exception):
    """The spec is invalid, or its ONNX form disagrees with it."""

    def __init__(self, result: FolderResult) -> None:
        super().__init__(result.summary)
        self.result = result


class SpecItem(pytest.Item):
    """Runs `nnspec check` on one spec; fails with the rendered report or the error message."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(ITEM_NAME)

    def runtest(self) -> None:
        result = check_spec(os.path.relpath(self.path))  # relative: error messages name the spec as you see it
        if not result.passed:
            raise SpecCheckFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, SpecCheckFailed):
            result = excinfo.value.result
            if result.report is None:
                return result.text.rstrip("\n")  # the error message, which names the spec
            return f"the ONNX form disagrees with the spec: {result.summary}\n{result.text.rstrip()}"
        return super().repr_failure(excinfo, style=style)  # a bug in nnspec: the traceback helps

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"nnspec check {os.path.relpath(self.path)}"
