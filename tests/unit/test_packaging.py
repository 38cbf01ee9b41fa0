"""Packaging: ``pip install .`` gives the library and the daemon without the
VM harness's dependencies, and the venv that ``make check`` uses still gets
every extra.  Offline: pyproject.toml and the sources are read, nothing is
installed (building and installing a wheel needs the network for cffi)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kcont_vm import install

ROOT = Path(__file__).resolve().parents[2]
# kcont/ and the daemon as installed: the CFFI build sources are not.
LIBRARY = [ROOT / "kcont", ROOT / "userspace" / "request_key_daemon"]
FIRST_PARTY = {"kcont", "request_key_daemon"}
# What [project].dependencies installs, by import name (cffi's compiled
# modules import _cffi_backend).
INSTALLED = {"cffi", "_cffi_backend"}


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, requirement
    return match.group(0).lower()


def _import_time_modules(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Top-level names imported when the module is imported: not inside a
    function (run later, if ever) nor under ``if TYPE_CHECKING``."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]
        stack.extend(ast.iter_child_nodes(node))


def _library_sources() -> list[Path]:
    return sorted(path for top in LIBRARY for path in top.rglob("*.py")
                  if "_cffi_src" not in path.parts)


def test_library_dependencies_leave_out_the_vm_harness() -> None:
    project = _project()
    assert [_name(r) for r in project["dependencies"]] == ["cffi"]
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["vm"]} == {"virtme-ng", "rich"}
    assert {"matplotlib"} <= {_name(r) for r in extras["bench"]}
    assert {"regopy"} <= {_name(r) for r in extras["rego"]}
    assert {"mypy", "types-cffi", "pytest", "ruff"} <= {_name(r) for r in extras["test"]}


def test_venv_gets_every_extra() -> None:
    """``make check`` on a fresh machine: kcont-vm setup installs the extras too."""
    names = {_name(r) for r in install.project_requirements(ROOT)}
    assert {"cffi", "virtme-ng", "rich", "pytest", "ruff", "mypy", "types-cffi",
            "matplotlib", "regopy"} <= names


@pytest.mark.parametrize("path", _library_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports_only_what_it_declares(path: Path) -> None:
    """Anything else (bcc, regopy, rich) must be imported where it is used."""
    tree = ast.parse(path.read_text(), str(path))
    allowed = set(sys.stdlib_module_names) | FIRST_PARTY | INSTALLED
    stray = [f"{path.relative_to(ROOT)}:{line}: {name}"
             for line, name in _import_time_modules(tree) if name not in allowed]
    assert not stray


def test_packages_are_typed() -> None:
    """PEP 561: the markers exist and are package data, so the wheel has them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = data["tool"]["setuptools"]["package-data"]
    for package, top in zip(["kcont", "request_key_daemon"], LIBRARY, strict=True):
        assert (top / "py.typed").is_file()
        assert "py.typed" in package_data[package]
    assert "*.pyi" in package_data["kcont"]
    assert (ROOT / "kcont" / "_kcont.pyi").is_file()
    assert (ROOT / "kcont" / "_keyctl.pyi").is_file()
