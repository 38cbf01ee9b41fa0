"""``kcont-vm test``: host tests, then the guest suites (one boot each), then a verdict.

Order: the pure host tests (``tests/unit``: no kernel, no compiled
binding) first, so a fresh clone learns of a broken parser in seconds
rather than after a kernel build; then the kernel build (a no-op when
cached), which installs the uapi headers and compiles the binding; then
the host tests of the binding (``tests/binding``); then the guest suites.

Failing conditions, each with its own exit code (errors.EXIT_*): a failed
or erroring test, a guest test that skipped (a guest test that cannot run
is an error here, never a pass), no test at all (pytest's exit 5), a
kernel report on the console, or a guest that died.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kcont_vm.accel import choose_accel
from kcont_vm.build import build
from kcont_vm.errors import EXIT_GUEST_DIED, EXIT_KERNEL_REPORT, EXIT_OK, EXIT_TESTS_FAILED
from kcont_vm.junit import SuiteCounts, read_junit
from kcont_vm.keyutils_suite import KNOWN_FAILURES, load_known_failures
from kcont_vm.ktap import Suite, boot_suite, write_document
from kcont_vm.paths import Cache, repo_root
from kcont_vm.runner import RunSpec, boot, kill_live_boots, new_run_dir

RESULTS_DIR = "test-results"
# The keyutils stage boots the perf kernel (the series without the harness
# stack): the series' kselftests run there too, so that they pass on what
# would be merged; the main stage runs them again on the debug kernel.
KEYUTILS_MARKERS = {"include": [], "only": ["-m", "keyutils or kselftest"],
                    "skip": ["-m", "not keyutils"]}
# When the check is split over two boots, the perf kernel's also takes the
# perf_boot tests: userspace behaviour and kernel clients' routing, whose
# kernel paths the debug boot still covers under KASAN (the interception
# suite, the kselftests).  It keeps the debug boot, the longer, under budget.
PERF_BOOT = "perf_boot"


def split_markers(main_profile: str, side_profile: str) -> tuple[list[str], list[str]]:
    """The -m expressions of a two-boot check's main and keyutils stages:
    perf_boot tests go to whichever stage boots the perf kernel, and run
    exactly once."""
    main, side = KEYUTILS_MARKERS["skip"][1], KEYUTILS_MARKERS["only"][1]
    if side_profile == "perf" and main_profile != "perf":
        main, side = f"{main} and not {PERF_BOOT}", f"{side} or {PERF_BOOT}"
    return ["-m", main], ["-m", side]


# The reliability suites' hypothesis budget in `make check` (tests/guest/
# budget.py): half of what they were written with, which kept a cold check
# under 70 minutes once the kselftests joined; `make soak` runs them round
# after round for depth.  KCONT_BUDGET_SCALE in the environment overrides.
CHECK_BUDGET_SCALE = "0.5"

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
    seconds = sum(c["seconds"] for c in cases)
    return (f"{'keyutils':10s} {by['pass']} passed, {by['fail']} failed, {by['skip']} skipped "
            f"of {len(cases)} in {seconds:.0f}s (failures and skips must be listed in "
            f"{KNOWN_FAILURES})")


@dataclass
class GuestStage:
    """One boot of the guest suite: which tests, on which kernel, named how."""

    name: str
    profile: str
    markers: list[str]
    report_keyutils: bool


def guest_stages(profile: str, keyutils: str, keyutils_profile: str) -> list[GuestStage]:
    """kcont's own tests on ``profile`` (debug: KASAN, lockdep, kmemleak),
    keyutils' suite on ``keyutils_profile``.

    keyutils' 83 shell tests fork tens of thousands of processes; under TCG
    with KASAN and lockdep that is well over an hour, so by default the
    suite runs on the perf kernel (the same series without sanitizers),
    where it takes minutes.  One profile for both means one boot.
    """
    if keyutils == "only":
        return [GuestStage("keyutils", keyutils_profile, KEYUTILS_MARKERS["only"], True)]
    if keyutils == "skip" or keyutils_profile == profile:
        return [GuestStage("guest", profile, KEYUTILS_MARKERS[keyutils], keyutils != "skip")]
    main, side = split_markers(profile, keyutils_profile)
    return [GuestStage("guest", profile, main, False),
            GuestStage("keyutils", keyutils_profile, side, True)]


def run_guest_stage(stage: GuestStage, bzimage: Path, pytest_extra: list[str],
                    out: Path, output: TextIO | None = None) -> tuple[int, list[str]]:
    """Boot once, run the stage's tests, judge the boot; (verdict, summary
    lines).  The guest's output goes to ``output`` (default: stdout)."""
    print(f"== {stage.name} tests ({stage.profile} kernel, one boot) ==", flush=True)
    start = time.monotonic()
    run_dir = new_run_dir(Cache.default())
    junit_name = f"{stage.name}.xml"
    scale = os.environ.get("KCONT_BUDGET_SCALE", CHECK_BUDGET_SCALE)
    spec = RunSpec(bzimage=bzimage, profile=stage.profile,
                   env={"KCONT_BUDGET_SCALE": scale},
                   timeout=GUEST_SUITE_TIMEOUT, cmd=pytest_argv(
                       ["tests/guest"], run_dir / "results" / junit_name,
                       [f"--timeout={GUEST_TEST_TIMEOUT}", *stage.markers, *pytest_extra],
                       verbose=True))
    outcome = boot(spec, run_dir=run_dir, output=output)
    junit = outcome.results / junit_name
    counts = read_junit(junit) if junit.exists() else None
    keyutils = keyutils_line(outcome.results) if stage.report_keyutils else None
    lines = [describe(stage.name, counts, outcome.command_rc)]
    if stage.report_keyutils:
        lines.append(keyutils or f"{'keyutils':10s} not run (deselected or never reached): "
                                 "not a full check")
    console = outcome.keep(out, f"console-{stage.name}.log")
    lines.append(f"{'boot':10s} {time.monotonic() - start:.0f}s in the {stage.profile} guest; "
                 f"console: {console}")
    verdict = EXIT_OK
    if outcome.reports:
        verdict = EXIT_KERNEL_REPORT
        lines.append(f"{'kernel':10s} {len(outcome.reports)} report(s): "
                     + ", ".join(sorted({r.kind for r in outcome.reports})))
    elif outcome.command_rc is None:
        verdict = EXIT_GUEST_DIED
        lines.append(f"{'guest':10s} died before reporting a result")
    elif outcome.command_rc != 0 or counts is None or counts.tests == 0:
        verdict = EXIT_TESTS_FAILED
    elif counts.skipped:
        verdict = EXIT_TESTS_FAILED
        lines.append(f"{stage.name:10s} skipped tests count as failures: "
                     + ", ".join(counts.skipped_names))
    if counts is not None and counts.failed_names:
        lines.append("failed: " + ", ".join(counts.failed_names))
    return verdict, lines


def run_guest_stages(stages: list[GuestStage], images: dict[str, Path],
                     pytest_extra: list[str], out: Path,
                     parallel: bool) -> list[tuple[int, list[str]]]:
    """Each stage's (verdict, lines), in order.

    With ``parallel``, the stages after the first boot at the same time
    as it, their guest output in ``out/<stage>-output.log``: the main
    debug suite keeps one emulated CPU busy most of the time, and the
    perf boot (keyutils' suite, the kselftests) runs on the other, so a
    full check takes about as long as its longest boot."""
    if not parallel or len(stages) < 2:
        return [run_guest_stage(stage, images[stage.profile], pytest_extra, out)
                for stage in stages]
    for stage in stages:
        # Probed (and cached) once per kernel before two boots could race to.
        choose_accel(images[stage.profile], Cache.default().root / "accel.json")
    with ExitStack() as stack:
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=len(stages) - 1))
        side = []
        for stage in stages[1:]:
            log = stack.enter_context((out / f"{stage.name}-output.log").open("w"))
            print(f"== {stage.name} tests run beside the first boot; their output: {log.name}",
                  flush=True)
            side.append(pool.submit(run_guest_stage, stage, images[stage.profile],
                                    pytest_extra, out, log))
        try:
            first = run_guest_stage(stages[0], images[stages[0].profile], pytest_extra, out)
        except KeyboardInterrupt:
            kill_live_boots()
            raise
        except Exception as err:    # judged, so that the summary is still written
            kill_live_boots()
            first = stage_raised(stages[0], err)
        results = [first]
        for stage, future in zip(stages[1:], side, strict=True):
            try:
                results.append(future.result())
            except Exception as err:    # as above
                results.append(stage_raised(stage, err))
        return results


def stage_raised(stage: GuestStage, err: Exception) -> tuple[int, list[str]]:
    """The verdict of a stage whose boot raised instead of returning: the
    guest counts as dead, and the summary says why."""
    return EXIT_GUEST_DIED, [f"{stage.name:10s} its boot failed: {type(err).__name__}: {err}"]


HOST_SUITES = {"host": "tests/unit", "binding": "tests/binding"}


def run_host_suite(name: str, out: Path, pytest_extra: list[str]) -> tuple[int, list[str]]:
    """One pytest run on this machine (``tests/unit`` or ``tests/binding``):
    (verdict, summary lines).  Each is its own process: tests/unit blocks
    the compiled binding for the whole interpreter."""
    print(f"== {name} tests ==", flush=True)
    junit = out / f"{name}.xml"
    rc = subprocess.run(pytest_argv([HOST_SUITES[name]], junit, pytest_extra), cwd=repo_root(),
                        check=False).returncode
    counts = read_junit(junit) if junit.exists() else None
    lines = [describe(name, counts, rc)]
    verdict = EXIT_OK
    if rc != 0 or counts is None or counts.tests == 0:
        verdict = EXIT_TESTS_FAILED
    if counts is not None and counts.failed_names:
        lines.append(f"{name} failed: " + ", ".join(counts.failed_names))
    return verdict, lines


def run_tests(profile: str, pytest_extra: list[str], host_only: bool = False,
              guest_only: bool = False, keyutils: str = "include",
              keyutils_profile: str = "perf", ktap: Path | None = None,
              parallel: bool = True) -> int:
    """Every stage in order, stopping at the first failed one; the summary.

    ``host_only``: the two host suites (the build still runs, for the
    binding); ``guest_only``: the build and the guest suites.
    """
    root = repo_root()
    out = root / RESULTS_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    lines: list[str] = []
    verdict = EXIT_OK
    if not guest_only:
        verdict, host_lines = run_host_suite("host", out, pytest_extra)
        lines += host_lines
    images: dict[str, Path] = {}
    if verdict == EXIT_OK:
        # A no-op when cached: installs the uapi headers and the binding.
        images[profile] = build(profile).bzimage
        if not guest_only:
            verdict, binding_lines = run_host_suite("binding", out, pytest_extra)
            lines += binding_lines
    else:
        lines.append(f"{'binding':10s} not run: the host tests failed (no kernel built)")
    boots: list[Suite] = []
    if not host_only and verdict == EXIT_OK:
        if keyutils == "skip":
            lines.append(f"{'keyutils':10s} not run (--keyutils skip): not a full check")
        stages = guest_stages(profile, keyutils, keyutils_profile)
        for stage in stages:
            if stage.profile not in images:
                images[stage.profile] = build(stage.profile).bzimage
        for stage, (stage_verdict, stage_lines) in zip(
                stages, run_guest_stages(stages, images, pytest_extra, out, parallel),
                strict=True):
            lines += stage_lines
            boots.append(boot_suite(stage.name, stage.profile,
                                    stage_verdict in (EXIT_OK, EXIT_TESTS_FAILED), stage_lines))
            # The most severe verdict wins: a kernel report over a failed test.
            if stage_verdict != EXIT_OK and verdict in (EXIT_OK, EXIT_TESTS_FAILED):
                verdict = stage_verdict
    document = write_document(out, out / "results.ktap", boots,
                              load_known_failures(root / KNOWN_FAILURES))
    if ktap is not None:
        shutil.copy(document, ktap)
    status = "PASS" if verdict == EXIT_OK else f"FAIL (exit {verdict})"
    summary = "\n".join(["== kcont-vm test summary ==", *lines, f"result: {status}",
                         f"JUnit XML, KTAP ({document.name}) and logs: {out}"])
    (out / "summary.txt").write_text(summary + "\n")
    print(summary, flush=True)
    return verdict
