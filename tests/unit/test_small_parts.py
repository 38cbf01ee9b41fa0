"""JUnit reading, keyutils verdicts, build progress, package checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm import install, keyutils_suite
from kcont_vm.junit import read_junit
from kcont_vm.progress import BuildProgress, is_compile_step

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest"
 errors="1" failures="1" skipped="1" tests="4" time="2.5">
<testcase classname="t.a" name="ok" time="1"/>
<testcase classname="t.a" name="bad" time="1"><failure message="x"/></testcase>
<testcase classname="t.a" name="err" time="0"><error message="y"/></testcase>
<testcase classname="t.b" name="skip" time="0"><skipped message="z"/></testcase>
</testsuite></testsuites>"""


def test_read_junit(tmp_path: Path) -> None:
    path = tmp_path / "r.xml"
    path.write_text(JUNIT)
    counts = read_junit(path)
    assert (counts.tests, counts.passed, counts.failures, counts.errors, counts.skipped) == \
        (4, 1, 1, 1, 1)
    assert counts.failed_names == ["t.a::bad", "t.a::err"]
    assert counts.skipped_names == ["t.b::skip"]


@pytest.mark.parametrize("rc,out,status", [
    (0, "++++ FINISHED TEST: PASS\n", "pass"),
    (1, "=== FAILED ===\n++++ FINISHED TEST: FAIL\n", "fail"),
    (0, "no marker at all\n", "fail"),
    (0, "+++ SKIP DUE TO MISSING COMMAND: foo\n++++ SKIPPING TEST\n", "skip"),
])
def test_keyutils_verdict(rc: int, out: str, status: str) -> None:
    assert keyutils_suite.verdict(rc, out)[0] == status


def test_known_failures_file_format(tmp_path: Path) -> None:
    path = tmp_path / "k.txt"
    path.write_text("# comment\nkeyctl/x/valid  needs a network\n\n")
    assert keyutils_suite.load_known_failures(path) == {"keyctl/x/valid": "needs a network"}


def test_repository_known_failures_have_reasons() -> None:
    path = Path(__file__).resolve().parents[2] / "tests/guest/keyutils-known-failures.txt"
    for name, reason in keyutils_suite.load_known_failures(path).items():
        assert reason, f"{name} is listed without a reason"


def test_progress_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with BuildProgress("build debug", expected=20, tty=False) as bar:
        for i in range(25):
            bar.feed(f"  CC      kernel/f{i}.o\n")
            bar.feed("  LD      vmlinux\n")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[build debug] started"
    assert any("90%" in line for line in out)
    assert not any("100%" in line for line in out[:-1]), "never 100% before make exits"
    assert out[-1].startswith("[build debug] done: 25 objects")


def test_compile_step() -> None:
    assert is_compile_step("  CC      mm/gup.o")
    assert not is_compile_step("make[1]: Entering directory")


def test_missing_apt_packages() -> None:
    missing = install.missing_apt_packages(("dpkg", "kcont-no-such-package"))
    assert missing == ["kcont-no-such-package"]


def test_run_outcome_keep_copies_files_dirs_and_console(tmp_path: Path) -> None:
    from kcont_vm.runner import RunOutcome

    results = tmp_path / "run" / "results"
    (results / "round-001").mkdir(parents=True)
    (results / "round-001" / "guest.xml").write_text("<x/>")
    (results / "soak.json").write_text("{}")
    (results / "guest-rc").write_text("0")
    console = tmp_path / "run" / "console.log"
    console.write_text("boot")
    out = tmp_path / "out"
    out.mkdir()
    kept = RunOutcome(0, 0, [], console, results, 1.0).keep(out, "console-guest.log")
    assert kept == out / "console-guest.log" and kept.read_text() == "boot"
    assert (out / "round-001" / "guest.xml").read_text() == "<x/>"
    assert (out / "soak.json").exists() and not (out / "guest-rc").exists()
