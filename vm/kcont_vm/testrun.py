"""``kcont-vm test``: host tests, then every guest test in one boot, then a verdict.

Failing conditions, each with its own exit code (errors.EXIT_*): a failed
or erroring test, a guest test that skipped (a guest test that cannot run
is an error here, never a pass), no test at all (pytest's exit 5), a
kernel report on the console, or a guest that died.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kcont_vm.build import build
from kcont_vm.errors import EXIT_GUEST_DIED, EXIT_KERNEL_REPORT, EXIT_OK, EXIT_TESTS_FAILED
from kcont_vm.junit import SuiteCounts, read_junit
from kcont_vm.paths import Cache, repo_root
from kcont_vm.runner import RunSpec, boot, new_run_dir

RESULTS_DIR = "test-results"
KEYUTILS_MARKERS = {"include": [], "only": ["-m", "keyutils"], "skip": ["-m", "not keyutils"]}


# Bounds: a hung test fails on its own instead of eating CI's 90 minutes.
GUEST_TEST_TIMEOUT = 900
GUEST_SUITE_TIMEOUT = 4200


def pytest_argv(paths: list[str], junit: Path, extra: list[str],
                verbose: bool = False) -> list[str]:
    return [sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider",
            f"--junitxml={junit}", "-o", "junit_family=xunit2",
            "-v" if verbose else "-q", "--durations=10", *extra]


def describe(name: str, counts: SuiteCounts | None, rc: int | None) -> str:
    if counts is None:
        return f"{name:10s} no results (exit {rc})"
    return (f"{name:10s} {counts.passed} passed, {counts.failures + counts.errors} failed, "
            f"{counts.skipped} skipped in {counts.seconds:.0f}s")


def keyutils_line(results: Path) -> str | None:
    path = results / "keyutils.json"
    if not path.exists():
        return None
    cases = json.loads(path.read_text())
    by = {s: sum(1 for c in cases if c["status"] == s) for s in ("pass", "fail", "skip")}
    return (f"{'keyutils':10s} {by['pass']} passed, {by['fail']} failed, {by['skip']} skipped "
            f"of {len(cases)} (known failures: see tests/guest/keyutils-known-failures.txt)")


def run_tests(profile: str, pytest_extra: list[str], host_only: bool = False,
              guest_only: bool = False, keyutils: str = "include") -> int:
    root = repo_root()
    out = root / RESULTS_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    lines: list[str] = []
    verdict = EXIT_OK
    host: SuiteCounts | None = None
    # The kernel first (a no-op when cached): it installs the uapi headers
    # and the CFFI binding that host tests of the binding import.
    result = build(profile)
    if not guest_only:
        print("== host tests ==", flush=True)
        junit = out / "host.xml"
        rc = subprocess.run(pytest_argv(["tests/unit"], junit, pytest_extra), cwd=root,
                            check=False).returncode
        host = read_junit(junit) if junit.exists() else None
        lines.append(describe("host", host, rc))
        if rc != 0 or host is None or host.tests == 0:
            verdict = EXIT_TESTS_FAILED
    if not host_only and verdict == EXIT_OK:
        print(f"== guest tests ({profile} kernel, one boot) ==", flush=True)
        start = time.monotonic()
        run_dir = new_run_dir(Cache.default())
        spec = RunSpec(bzimage=result.bzimage, profile=profile,
                       timeout=GUEST_SUITE_TIMEOUT, cmd=pytest_argv(
                           ["tests/guest"], run_dir / "results" / "guest.xml",
                           [f"--timeout={GUEST_TEST_TIMEOUT}",
                            *KEYUTILS_MARKERS[keyutils], *pytest_extra],
                           verbose=True))
        outcome = boot(spec, run_dir=run_dir)
        guest_xml = outcome.results / "guest.xml"
        guest = read_junit(guest_xml) if guest_xml.exists() else None
        lines.append(describe("guest", guest, outcome.command_rc))
        if (k := keyutils_line(outcome.results)) is not None:
            lines.append(k)
        else:
            why = "--keyutils skip" if keyutils == "skip" else "deselected or never reached"
            lines.append(f"{'keyutils':10s} not run ({why}): not a full check")
        for item in outcome.results.iterdir():
            shutil.copy(item, out / item.name)
        shutil.copy(outcome.console_log, out / "console.log")
        lines.append(f"{'boot':10s} {time.monotonic() - start:.0f}s in the guest; "
                     f"console: {out / 'console.log'}")
        if outcome.reports:
            verdict = EXIT_KERNEL_REPORT
            lines.append(f"{'kernel':10s} {len(outcome.reports)} report(s): "
                         + ", ".join(sorted({r.kind for r in outcome.reports})))
        elif outcome.command_rc is None:
            verdict = EXIT_GUEST_DIED
            lines.append(f"{'guest':10s} died before reporting a result")
        elif outcome.command_rc != 0 or guest is None or guest.tests == 0:
            verdict = EXIT_TESTS_FAILED
        elif guest.skipped:
            verdict = EXIT_TESTS_FAILED
            lines.append(f"{'guest':10s} skipped tests count as failures: "
                         + ", ".join(guest.skipped_names))
        if guest is not None and guest.failed_names:
            lines.append("failed: " + ", ".join(guest.failed_names))
    if host is not None and host.failed_names:
        lines.append("host failed: " + ", ".join(host.failed_names))
    status = "PASS" if verdict == EXIT_OK else f"FAIL (exit {verdict})"
    summary = "\n".join(["== kcont-vm test summary ==", *lines, f"result: {status}",
                         f"JUnit XML and logs: {out}"])
    (out / "summary.txt").write_text(summary + "\n")
    print(summary, flush=True)
    return verdict
