"""Make the compiled binding unimportable, so the host tests run as on a
fresh clone even where ``pip install -e .`` has put ``kcont/_kcont*.so``
into the source tree.

``tests/unit`` is the suite that runs before any kernel (and so any
binding) exists; a module or test there that imports the binding would
pass on a built tree and fail on a fresh one.  Blocking the import in
every host run makes that mistake fail everywhere.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

BINDING_MODULES = ("kcont._kcont", "kcont._keyctl")


class BindingBlocked(importlib.abc.MetaPathFinder):
    """Refuses the compiled modules before any other finder can find them."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in BINDING_MODULES:
            raise ImportError(f"{fullname}: the compiled binding is blocked in the host "
                              "tests (they run before any kernel is built); a test that "
                              "needs it belongs in tests/binding", name=fullname)
        return None


def block() -> None:
    """Install the blocker first on sys.meta_path (once)."""
    if not any(isinstance(finder, BindingBlocked) for finder in sys.meta_path):
        sys.meta_path.insert(0, BindingBlocked())


def blocked() -> bool:
    return any(isinstance(finder, BindingBlocked) for finder in sys.meta_path)
