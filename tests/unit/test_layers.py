"""kcont's layering, read from the source: only kcont._binding imports the
compiled modules, and the request-key daemon reaches the kernel through the
API (kcont.keys, upcalls, watch, container), never a private module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ("kcont._kcont", "kcont._keyctl")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_binding_imports_the_compiled_modules() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(set(COMPILED) & imported_modules(path))
                 for path in sorted((ROOT / "kcont").rglob("*.py"))
                 if path.name != "_binding.py" and "_cffi_src" not in path.parts}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_daemon_uses_the_api_only() -> None:
    offenders = {}
    for path in sorted((ROOT / "userspace" / "request_key_daemon").glob("*.py")):
        private = sorted(m for m in imported_modules(path) if m.startswith("kcont._"))
        if private:
            offenders[path.name] = private
    assert offenders == {}


def test_imported_modules_sees_lazy_imports(tmp_path: Path) -> None:
    """The scan reaches an import inside a function, where a lazy one hides."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from kcont._binding import lib\n    return lib\n")
    assert "kcont._binding" in imported_modules(source)
