"""The soak report: reports pinned to rounds, counts added up, the verdict."""

from __future__ import annotations

from typing import Any

from kcont_vm import reports, soak
from kcont_vm.errors import EXIT_GUEST_DIED, EXIT_KERNEL_REPORT, EXIT_OK, EXIT_TESTS_FAILED

CONSOLE = """\
[    1.000000] booting
[    2.000000] kcont-soak: round 1 begins (seed 11)
[    3.000000] kcont-soak: round 1 ends (pytest exit 0, kmemleak 0)
[    4.000000] kcont-soak: round 2 begins (seed 22)
[    5.000000] BUG: KASAN: slab-use-after-free in key_intercept_route+0x1/0x2
[    6.000000] kcont-soak: round 2 ends (pytest exit 0, kmemleak 0)
""".splitlines()


def _round(number: int, **over: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "round": number, "seed": number * 11, "seconds": 100.0, "pytest_rc": 0, "tests": 9,
        "failed": [], "skipped": 0, "kmemleak": 0,
        "counts": {
            "state-machine.json": {"create": 3, "request (intercepted)": 2},
            "fault-injection.json": {"test_grant": {"fault_points": 2, "errors_returned": 1}},
            "races.json": {"request/death: ECANCELED": 4},
        },
    }
    entry.update(over)
    return entry


def test_a_report_is_pinned_to_the_round_that_was_running() -> None:
    found = reports.find_reports(CONSOLE)
    assert [r.kind for r in found] == ["kasan"]
    assert soak.report_rounds(CONSOLE, found) == {2: ["kasan"]}


def test_a_report_before_the_first_round_is_round_zero() -> None:
    console = ["[    0.500000] WARNING: CPU: 0 PID: 1 at kernel/x.c:1 f+0x0/0x1", *CONSOLE[:2]]
    found = reports.find_reports(console)
    assert soak.report_rounds(console, found) == {0: ["warning"]}


def test_totals_add_every_suite_over_the_rounds() -> None:
    summed = soak.totals([_round(1), _round(2)])
    assert summed["state-machine"]["create"] == 6
    assert summed["state-machine"]["request (intercepted)"] == 4
    assert summed["fault-injection"]["test_grant: fault points"] == 4
    assert summed["fault-injection"]["test_grant: errors returned"] == 2
    assert summed["races"]["request/death: ECANCELED"] == 8


def test_verdicts() -> None:
    clean = {"rounds": [_round(1), _round(2)]}
    assert soak.judge(clean, {}, 0).code == EXIT_OK
    assert soak.judge(clean, {2: ["kasan"]}, 0).code == EXIT_KERNEL_REPORT
    failing = {"rounds": [_round(1, failed=["test_state_machine.py::x"])]}
    assert soak.judge(failing, {}, 1).code == EXIT_TESTS_FAILED
    skipping = {"rounds": [_round(1, skipped=1)]}
    assert soak.judge(skipping, {}, 0).code == EXIT_TESTS_FAILED
    leaking = {"rounds": [_round(1, kmemleak=3)]}
    verdict = soak.judge(leaking, {}, 1)
    assert verdict.code == EXIT_KERNEL_REPORT and "kmemleak" in verdict.lines[0]
    assert soak.judge(None, {}, None).code == EXIT_GUEST_DIED
    assert soak.judge({"rounds": []}, {}, 0).code == EXIT_GUEST_DIED
    assert soak.judge(clean, {}, None).code == EXIT_GUEST_DIED


def test_the_report_has_every_round_and_the_totals() -> None:
    text = soak.render({"rounds": [_round(1), _round(2)]}, {2: ["kasan"]}, 1.0, 3700.0)
    assert "| rounds | 2 |" in text
    assert "| kernel reports | 1 |" in text
    assert "| 2 | 22 | 100 | 9 | 0 | 0 | kasan |" in text
    assert "| create | 6 |" in text


def test_the_span_runs_from_the_first_round_start_to_the_last_round_end() -> None:
    assert soak.round_span(CONSOLE) == 4.0
    assert soak.round_span(CONSOLE[:2]) is None
    text = soak.render({"rounds": [_round(1)]}, {}, 1.0, 3800.0, 3677.2)
    assert "last one's end: 61.3 min" in text
