"""bcc works in the guest: a probe compiles, attaches, and sees request_key(2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).with_name("probe_request_key.py")


def test_probe_sees_request_key(session_keyring: int) -> None:
    probe = subprocess.Popen([sys.executable, str(PROBE)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert probe.stdout is not None and probe.stdin is not None
    try:
        assert probe.stdout.readline().strip() == "ready", "probe failed to attach"
        # No such key: the failing call is still a request_key(2) to see.
        keyctl = subprocess.Popen(["keyctl", "request", "user", "kcont:bcc-probe"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        keyctl.wait()
    finally:
        probe.stdin.close()
    lines = probe.stdout.read().splitlines()
    assert probe.wait(timeout=60) == 0
    assert f"{keyctl.pid} keyctl" in lines, lines
