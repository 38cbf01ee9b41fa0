"""Guest tests: they run inside the QEMU guest booted by `kcont-vm test`.

Outside the guest they refuse to run (an error, not a skip): a guest test
that cannot run must never count as a pass.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from upcall_probe import Snoop, Window

ROOT = Path(__file__).resolve().parents[2]
# tests/: what host and guest tests share (the admission webhook).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(os.environ.get("KCONT_RESULTS", "/tmp"))

# The repository is read-only in the guest and TCG is slow: no example
# database on disk, no per-example deadline.
settings.register_profile("guest", database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("guest")

# Until the CFFI binding exists (kcont/), tests reach libkeyutils directly.
_libkeyutils = ctypes.CDLL("libkeyutils.so.1", use_errno=True)


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("KCONT_IN_GUEST") != "1":
        raise pytest.UsageError("tests/guest runs only inside the kcont guest: "
                                "use `kcont-vm test` (or `make check`)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A skip inside the guest is a failure: turn skip marks into errors."""
    for item in items:
        if item.get_closest_marker("skip") or item.get_closest_marker("skipif"):
            raise pytest.UsageError(f"{item.nodeid}: guest tests may not be skipped")


@pytest.fixture
def session_keyring() -> Iterator[int]:
    """A fresh anonymous session keyring for this test, as keyutils' tests use.

    The test process joins it, so every command the test runs (keyctl,
    the upcall's requester) inherits it, and nothing leaks between tests.
    """
    serial = _libkeyutils.keyctl_join_session_keyring(None)
    if serial < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"keyctl_join_session_keyring: {os.strerror(err)}")
    yield serial
    _libkeyutils.keyctl_clear(serial)


@pytest.fixture
def queue(session_keyring: int) -> Iterator[object]:
    """A queue keyring for interception records, in this test's session
    keyring (so the test possesses what is queued there), open to uid 0 as
    possessor and as user: members of containers without a user namespace
    run as uid 0 too."""
    from kcont.keys import Keyring

    ring = Keyring(session_keyring).add_keyring("kcont-test-q")
    ring.setperm(0x3F3F0000)
    yield ring


def keyctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run keyutils' /bin/keyctl, the reference client."""
    return subprocess.run(["keyctl", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="session")
def upcall_snoop() -> Iterator[Snoop]:
    """kcont-upcallsnoop, compiled and attached once for the whole session."""
    snoop = Snoop()
    yield snoop
    snoop.close()
    assert not [line for line in snoop.errors if "Traceback" in line], snoop.errors


@pytest.fixture
def upcalls_seen(upcall_snoop: Snoop) -> Window:
    """What the probes saw from the start of this test on."""
    return upcall_snoop.window()
