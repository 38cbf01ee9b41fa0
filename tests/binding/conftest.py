"""Host tests of what the build compiles: the binding, the modules that
import it at import time (kcont.container, keys, upcalls, watch, the
daemon's serving half) and the daemon's rk-exec helper.  No kernel is
booted, but the binding must have been compiled against the series' uapi
headers, which ``kcont-vm build`` installs before ``pip install -e .``.

They run in their own pytest run, after the build: ``tests/unit`` blocks
the binding for its whole process.
"""

from __future__ import annotations

import sys

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Stop with a one-line reason instead of every module failing to import."""
    if any(type(finder).__name__ == "BindingBlocked" for finder in sys.meta_path):
        raise pytest.UsageError("tests/binding and tests/unit need separate pytest runs "
                                "(tests/unit blocks the compiled binding)")
    try:
        import kcont._binding  # noqa: F401
    except ImportError as err:
        raise pytest.UsageError(f"tests/binding needs the compiled binding ({err}): "
                                "`.venv/bin/kcont-vm build` compiles it") from None
