"""The split between tests/unit and tests/binding, proved: the pure modules
import in a fresh interpreter where kcont._kcont and kcont._keyctl cannot
be imported, as on a fresh clone before any kernel is built.

A pure module that starts importing the binding (directly or through
kcont.container, keys, upcalls or watch) fails here, on any machine,
before it breaks ``make unit`` on a fresh clone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# What the host tests and the tools that run before a build import.
PURE_MODULES = (
    "kcont",
    "kcont.namespaces",
    "kcont.proc",
    "kcont.probes.events",
    "kcont.probes.upcallsnoop",
    "kcont.testing.routing_model",
    "kcont.admission",
    "kcont.admission_args",
    "kcont.one_line_parser",
    "kcont.cli",
    "request_key_daemon.conf",
    "request_key_daemon.policy",
    "request_key_daemon.explain",
    "request_key_daemon.rego_policy",
    "request_key_daemon.control",
    "request_key_daemon.handlers",
    "request_key_daemon.wakeup",
    "request_key_daemon.cli",
)

# Imports each module with the binding blocked; prints {module: error}.
PROBE = """
import json, sys
import binding_block
binding_block.block()
failed = {}
for name in sys.argv[1:]:
    try:
        __import__(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"
print(json.dumps(failed))
"""


def import_blocked(*modules: str) -> dict[str, str]:
    """The modules that failed to import without the binding, with why."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), str(ROOT), str(ROOT / "userspace"), str(ROOT / "vm")]))
    result = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True, timeout=120)
    failed: dict[str, str] = json.loads(result.stdout)
    return failed


def test_pure_modules_import_without_the_binding() -> None:
    assert import_blocked(*PURE_MODULES) == {}


@pytest.mark.parametrize("module", ["kcont._binding", "kcont.container", "kcont.upcalls",
                                    "kcont.keys", "kcont.watch", "request_key_daemon.serve"])
def test_binding_modules_do_not(module: str) -> None:
    """The block is real: what needs the binding fails to import under it."""
    failed = import_blocked(module)
    assert module in failed and "blocked" in failed[module], failed
