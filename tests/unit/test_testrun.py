"""``kcont-vm test``'s order: the pure host tests before any kernel build,
the binding's tests after it, the guests last; and a failed stage stops
the ones after it (a fresh clone with a broken parser never waits for a
kernel build)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
import types
from pathlib import Path

import pytest

from kcont_vm import runner, testrun
from kcont_vm.errors import EXIT_GUEST_DIED, EXIT_OK, EXIT_TESTS_FAILED


class Recorder:
    """Stands in for the build, the host suites and the guest boots, which
    need a kernel; records the order they were asked for in."""

    def __init__(self, tmp_path: Path, failing: set[str]) -> None:
        self.steps: list[str] = []
        self.tmp_path = tmp_path
        self.failing = failing

    def build(self, profile: str) -> types.SimpleNamespace:
        self.steps.append(f"build {profile}")
        return types.SimpleNamespace(bzimage=self.tmp_path / f"bzImage-{profile}")

    def host_suite(self, name: str, out: Path, extra: list[str]) -> tuple[int, list[str]]:
        self.steps.append(name)
        verdict = EXIT_TESTS_FAILED if name in self.failing else EXIT_OK
        return verdict, [f"{name:10s} ran"]

    def guest_stage(self, stage: testrun.GuestStage, bzimage: Path, extra: list[str],
                    out: Path, output: object = None) -> tuple[int, list[str]]:
        self.steps.append(f"{stage.name} on {bzimage.name}")
        if output is not None:
            output.write(f"{stage.name} output\n")  # type: ignore[attr-defined]
        verdict = EXIT_TESTS_FAILED if stage.name in self.failing else EXIT_OK
        return verdict, [f"{stage.name:10s} ran"]


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             request: pytest.FixtureRequest) -> Recorder:
    rec = Recorder(tmp_path, getattr(request, "param", set()))
    monkeypatch.setattr(testrun, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(testrun, "build", rec.build)
    monkeypatch.setattr(testrun, "run_host_suite", rec.host_suite)
    monkeypatch.setattr(testrun, "run_guest_stage", rec.guest_stage)
    monkeypatch.setattr(testrun, "choose_accel", lambda image, cache: "tcg")
    return rec


def test_pure_host_tests_run_before_the_build(recorder: Recorder) -> None:
    assert testrun.run_tests("debug", [], keyutils="skip") == EXIT_OK
    assert recorder.steps == ["host", "build debug", "binding", "guest on bzImage-debug"]
    summary = (recorder.tmp_path / testrun.RESULTS_DIR / "summary.txt").read_text()
    assert "host       ran" in summary and "binding    ran" in summary


@pytest.mark.parametrize("recorder", [{"host"}], indirect=True)
def test_failed_host_tests_stop_before_the_build(recorder: Recorder) -> None:
    assert testrun.run_tests("debug", [], keyutils="skip") == EXIT_TESTS_FAILED
    assert recorder.steps == ["host"]
    summary = (recorder.tmp_path / testrun.RESULTS_DIR / "summary.txt").read_text()
    assert "binding    not run: the host tests failed" in summary


@pytest.mark.parametrize("recorder", [{"binding"}], indirect=True)
def test_failed_binding_tests_stop_before_the_guests(recorder: Recorder) -> None:
    assert testrun.run_tests("debug", [], keyutils="skip") == EXIT_TESTS_FAILED
    assert recorder.steps == ["host", "build debug", "binding"]


def test_host_only_and_guest_only(recorder: Recorder) -> None:
    testrun.run_tests("debug", [], host_only=True, keyutils="skip")
    assert recorder.steps == ["host", "build debug", "binding"]
    recorder.steps.clear()
    testrun.run_tests("debug", [], guest_only=True, keyutils="skip")
    assert recorder.steps == ["build debug", "guest on bzImage-debug"]


def test_host_suite_counts_a_real_pytest_run(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """run_host_suite itself: a real pytest run, its JUnit counts, its verdict."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_two.py").write_text("def test_ok():\n    pass\n\n"
                                       "def test_bad():\n    assert False\n")
    monkeypatch.setitem(testrun.HOST_SUITES, "host", str(suite))
    out = tmp_path / "out"
    out.mkdir()
    verdict, lines = testrun.run_host_suite("host", out, [])
    assert verdict == EXIT_TESTS_FAILED
    assert lines[0].startswith("host       1 passed, 1 failed, 0 skipped")
    assert lines[1].startswith("host failed: ") and "test_bad" in lines[1]


@pytest.mark.parametrize("recorder", [set(), {"keyutils"}], indirect=True)
def test_the_perf_boot_runs_beside_the_debug_one_and_its_verdict_counts(
        recorder: Recorder) -> None:
    """Both boots run; the side one's guest output goes to a file of its
    own, and its failure fails the run as the main one's would."""
    verdict = testrun.run_tests("debug", [], guest_only=True)
    assert sorted(recorder.steps) == ["build debug", "build perf", "guest on bzImage-debug",
                                      "keyutils on bzImage-perf"]
    out = recorder.tmp_path / testrun.RESULTS_DIR
    assert (out / "keyutils-output.log").read_text() == "keyutils output\n"
    assert verdict == (EXIT_TESTS_FAILED if recorder.failing else EXIT_OK)
    summary = (out / "summary.txt").read_text()
    assert summary.index("guest      ran") < summary.index("keyutils   ran")
    assert (out / "results.ktap").read_text().startswith("KTAP version 1\n")


def test_serial_boots_one_after_the_other(recorder: Recorder) -> None:
    testrun.run_tests("debug", [], guest_only=True, parallel=False)
    assert recorder.steps == ["build debug", "build perf", "guest on bzImage-debug",
                              "keyutils on bzImage-perf"]


class Raising(Recorder):
    """A first boot that raises ``error``, and a side boot that, like a real
    guest, runs until it is killed (or for a minute, failing the test)."""

    def __init__(self, tmp_path: Path, error: BaseException) -> None:
        super().__init__(tmp_path, set())
        self.error = error
        self.killed = threading.Event()

    def guest_stage(self, stage: testrun.GuestStage, bzimage: Path, extra: list[str],
                    out: Path, output: object = None) -> tuple[int, list[str]]:
        if stage.name == "guest":
            raise self.error
        if not self.killed.wait(60):
            return EXIT_OK, [f"{stage.name:10s} ran to its end: nobody stopped it"]
        return EXIT_GUEST_DIED, [f"{stage.name:10s} killed"]


@pytest.fixture
def raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Raising:
    rec = Raising(tmp_path, request.param)
    monkeypatch.setattr(testrun, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(testrun, "build", rec.build)
    monkeypatch.setattr(testrun, "run_guest_stage", rec.guest_stage)
    monkeypatch.setattr(testrun, "choose_accel", lambda image, cache: "tcg")
    monkeypatch.setattr(testrun, "kill_live_boots", lambda: rec.killed.set() or 1,
                        raising=False)
    return rec


@pytest.mark.parametrize("raising", [OSError(28, "No space left on device")], indirect=True)
def test_a_boot_that_raises_stops_the_other_and_the_summary_is_written(
        raising: Raising) -> None:
    start = time.monotonic()
    verdict = testrun.run_tests("debug", [], guest_only=True)
    assert time.monotonic() - start < 30, "the side boot ran on after the first one failed"
    assert verdict == EXIT_GUEST_DIED
    out = raising.tmp_path / testrun.RESULTS_DIR
    summary = (out / "summary.txt").read_text()
    assert "guest      its boot failed: OSError: [Errno 28] No space left on device" in summary
    assert "keyutils   killed" in summary
    document = (out / "results.ktap").read_text()
    assert "not ok 1 boot-guest\n" in document and "not ok 2 boot-keyutils\n" in document


@pytest.mark.parametrize("raising", [KeyboardInterrupt()], indirect=True)
def test_ctrl_c_stops_the_side_boot_too(raising: Raising) -> None:
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        testrun.run_tests("debug", [], guest_only=True)
    assert raising.killed.is_set() and time.monotonic() - start < 30


def test_a_side_boot_that_raises_is_a_dead_guest_in_the_summary(
        recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    def guest_stage(stage: testrun.GuestStage, *args: object, **kwargs: object
                    ) -> tuple[int, list[str]]:
        if stage.name == "keyutils":
            raise RuntimeError("vng vanished")
        return recorder.guest_stage(stage, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(testrun, "run_guest_stage", guest_stage)
    verdict = testrun.run_tests("debug", [], guest_only=True)
    assert verdict == EXIT_GUEST_DIED
    summary = (recorder.tmp_path / testrun.RESULTS_DIR / "summary.txt").read_text()
    assert "guest      ran" in summary
    assert "keyutils   its boot failed: RuntimeError: vng vanished" in summary


def test_kill_live_boots_kills_a_booting_guests_process_group() -> None:
    """What the handlers above call, on a real process group."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with runner._LIVE_LOCK:
        runner._LIVE_BOOTS.add(proc.pid)
    try:
        assert runner.kill_live_boots() == 1
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        with runner._LIVE_LOCK:
            runner._LIVE_BOOTS.discard(proc.pid)
        proc.kill()
