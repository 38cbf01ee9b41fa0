"""keyutils' own test suite (from its Debian source package), run in the guest.

It is the regression guard for every change the series makes to
security/keys: each ``tests/**/runtest.sh`` runs in its own session
keyring, and its verdict is read from its exit status and ``test.out``.
A test that does not pass must be listed, with the reason, in
tests/guest/keyutils-known-failures.txt; that list may only shrink.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

PER_TEST_TIMEOUT = 300


@dataclass
class CaseResult:
    name: str
    status: str  # pass, fail, skip
    seconds: float
    detail: str


def find_suite(keyutils_dir: Path) -> Path:
    """The tests/ directory of the unpacked keyutils source package."""
    candidates = sorted(keyutils_dir.glob("keyutils-*/tests"))
    if not candidates:
        raise FileNotFoundError(f"no keyutils source under {keyutils_dir}: "
                                "run `kcont-vm setup`")
    return candidates[-1]


def discover(suite: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(suite)) for p in suite.rglob("runtest.sh")
                  if p.parent != suite)


def verdict(returncode: int, output: str) -> tuple[str, str]:
    """pass/fail/skip from a test's exit status and its test.out."""
    if "++++ SKIPPING TEST" in output:
        marker = next((ln for ln in output.splitlines() if "SKIP" in ln and "++++" not in ln),
                      "skipped")
        return "skip", marker.strip()
    if returncode == 0 and "FINISHED TEST: PASS" in output:
        return "pass", ""
    failed = [ln for ln in output.splitlines() if "FAILED" in ln or "===" in ln]
    return "fail", (f"exit {returncode}; " + " | ".join(failed[-3:]))[:300]


LSB_RELEASE = """#!/bin/sh
# Stand-in for Debian's lsb_release (a Python program) for keyutils'
# prepare.inc.sh, which only asks for -i -s and -r -s: Python's start-up
# costs ~10 s per call in the TCG+KASAN guest, twice per test.
. /etc/os-release
case "$*" in
*-i*) echo "${NAME%% *}" ;;
*-r*) echo "$VERSION_ID" ;;
*) echo "$PRETTY_NAME" ;;
esac
"""


def lsb_release_shim(workdir: Path) -> Path:
    bindir = workdir / ".bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "lsb_release"
    shim.write_text(LSB_RELEASE)
    shim.chmod(0o755)
    return bindir


def run_case(test_dir: Path, env: dict[str, str]) -> tuple[str, str]:
    """Run one runtest.sh in its own process group; (status, detail).

    Output goes to a file, not a pipe: keyutils' `keyctl watch_session`
    leaves a watcher process behind that would hold a pipe open forever.
    Whatever is left of the group when the test ends (or times out) is
    killed.
    """
    log = test_dir / "runtest.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", "./runtest.sh"], cwd=test_dir, env=env,
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = proc.wait(timeout=PER_TEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if returncode is None:
        return "fail", f"timed out after {PER_TEST_TIMEOUT}s"
    out_file = test_dir / "test.out"
    output = out_file.read_text(errors="replace") if out_file.exists() else log.read_text()
    return verdict(returncode, output)


def run_suite(suite: Path, workdir: Path, only: list[str] | None = None,
              progress: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Copy the suite to a writable place and run each test there."""
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.copytree(suite, workdir)
    env = dict(os.environ, AUTOMATED="1",
               PATH=f"{lsb_release_shim(workdir)}:{os.environ.get('PATH', '')}")
    results = []
    for name in only or discover(workdir):
        test_dir = workdir / name
        start = time.monotonic()
        status, detail = run_case(test_dir, env)
        result = CaseResult(name, status, round(time.monotonic() - start, 2), detail)
        results.append(result)
        if progress is not None:
            progress(f"keyutils {len(results):3d} {status:4s} {result.seconds:6.1f}s {name}")
    return results


# The list of keyutils tests that cannot pass in the guest, from the checkout's root.
KNOWN_FAILURES = Path("tests/guest/keyutils-known-failures.txt")


def load_known_failures(path: Path) -> dict[str, str]:
    """``test/path  reason`` per line; ``#`` comments."""
    known = {}
    if path.exists():
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                name, _, reason = line.partition(" ")
                known[name] = reason.strip()
    return known


def write_results(results: list[CaseResult], path: Path) -> None:
    path.write_text(json.dumps([asdict(r) for r in results], indent=1))
