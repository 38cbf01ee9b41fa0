"""The run's KTAP document, built from JUnit XML, keyutils' JSON and a
kselftest's own KTAP: structure, failures and skips carried to the top."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kcont_vm import ktap

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="tests.guest.test_a" name="test_ok[x]" time="0.1"/>
<testcase classname="tests.guest.test_a" name="test_bad" time="0.2">
  <failure message="assert 1 == 2">line one
line # two</failure></testcase>
<testcase classname="tests.guest.test_a" name="test_skip" time="0">
  <skipped message="no bcc"/></testcase>
</testsuite></testsuites>
"""

KSELFTEST = """TAP version 13
1..2
# Starting 2 tests from 1 test cases.
#  RUN           global.a ...
#            OK  global.a
ok 1 global.a
#  RUN           global.b ...
#            OK  global.b
ok 2 global.b
# PASSED: 2 / 2 tests passed.
# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:0 error:0
"""


def plans_hold(text: str) -> list[str]:
    """Every (sub)test's plan matches its result lines, level by level."""
    problems: list[str] = []
    stack: list[tuple[int, int]] = []  # (plan, results seen) per open level
    for line in text.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 4
        body = line.strip()
        if body.startswith("KTAP version"):
            del stack[depth:]
            stack.append((-1, 0))
        elif m := re.match(r"^1\.\.(\d+)$", body):
            stack[depth] = (int(m.group(1)), 0)
        elif re.match(r"^(not )?ok \d+ ", body):
            if len(stack) > depth + 1:
                plan, seen = stack.pop()
                if plan != seen:
                    problems.append(f"plan {plan}, {seen} results before: {body}")
            plan, seen = stack[depth]
            stack[depth] = (plan, seen + 1)
    plan, seen = stack[0]
    if plan != seen:
        problems.append(f"top plan {plan}, {seen} results")
    return problems


def test_a_document_of_every_source(tmp_path: Path) -> None:
    (tmp_path / "guest.xml").write_text(JUNIT)
    (tmp_path / "keyutils.json").write_text(json.dumps([
        {"name": "keyctl/add/valid", "status": "pass", "seconds": 1.0, "detail": ""},
        {"name": "keyctl/dh", "status": "skip", "seconds": 0.0, "detail": "no dh"},
    ]))
    (tmp_path / "kselftest-container_test-debug.ktap").write_text(KSELFTEST)
    text = ktap.write_document(tmp_path, tmp_path / "results.ktap").read_text()
    assert text.startswith("KTAP version 1\n1..3\n")
    assert plans_hold(text) == []
    assert "not ok 1 guest" in text, "a failed case must fail its suite"
    assert "    not ok 2 tests.guest.test_a::test_bad\n    # assert 1 == 2" in text
    assert "    # line %23 two" not in text and "    # line # two" in text
    assert "    ok 3 tests.guest.test_a::test_skip # SKIP no bcc" in text
    assert "ok 2 keyutils-suite" in text and "# SKIP no dh" in text
    assert "\n    ok 2 global.b\n" in text and "TAP version 13" not in text
    assert "ok 3 kselftest-container_test-debug" in text


def test_a_kselftest_that_stopped_short_is_not_ok(tmp_path: Path) -> None:
    short = KSELFTEST.replace("ok 2 global.b\n", "")
    (tmp_path / "kselftest-keyctl_container_test-perf.ktap").write_text(short)
    text = ktap.render(ktap.collect(tmp_path))
    assert "not ok 1 kselftest-keyctl_container_test-perf" in text


def test_names_cannot_forge_a_directive_or_a_line() -> None:
    assert ktap.clean_name("a # SKIP b\nok 2 x") == "a %23 SKIP b ok 2 x"
    assert ktap.clean_name("  ") == "unnamed"


def test_an_empty_suite_is_not_ok(tmp_path: Path) -> None:
    (tmp_path / "host.xml").write_text("<testsuites><testsuite name='x'/></testsuites>")
    assert ktap.render(ktap.collect(tmp_path)).splitlines()[-1] == "not ok 1 host"


def test_a_kernel_report_or_a_dead_guest_is_not_ok(tmp_path: Path) -> None:
    """No pytest case fails when KASAN reports or the guest dies; the
    boot's own line in the document does."""
    boots = [ktap.boot_suite("guest", "debug", False,
                             ["kernel     1 report(s): KASAN"]),
             ktap.boot_suite("keyutils", "perf", True, ["boot 10s"])]
    text = ktap.write_document(tmp_path, tmp_path / "results.ktap", boots).read_text()
    assert "    not ok 1 debug kernel: no kernel report, the guest ran to the end\n" in text
    assert "    # kernel 1 report(s): KASAN\n" in text
    assert "not ok 1 boot-guest\n" in text and "ok 2 boot-keyutils\n" in text
    assert "boot 10s" not in text


def test_a_known_keyutils_failure_is_todo_and_an_unknown_one_fails(tmp_path: Path) -> None:
    (tmp_path / "keyutils.json").write_text(json.dumps([
        {"name": "features/limits", "status": "fail", "seconds": 300.0, "detail": "timeout"},
        {"name": "keyctl/add/valid", "status": "pass", "seconds": 1.0, "detail": ""},
    ]))
    known = {"features/limits": "CPU-bound # under TCG"}
    text = ktap.render(ktap.collect(tmp_path, known))
    assert "    not ok 1 features/limits # TODO CPU-bound %23 under TCG\n" in text
    assert "\nok 1 keyutils-suite\n" in text
    text = ktap.render(ktap.collect(tmp_path, {}))
    assert "\nnot ok 1 keyutils-suite\n" in text and "TODO" not in text
