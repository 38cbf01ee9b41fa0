"""``kcont-vm test``'s order: the pure host tests before any kernel build,
the binding's tests after it, the guests last; and a failed stage stops
the ones after it (a fresh clone with a broken parser never waits for a
kernel build)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from kcont_vm import testrun
from kcont_vm.errors import EXIT_OK, EXIT_TESTS_FAILED


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
