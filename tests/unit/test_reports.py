"""Kernel report detection on recorded console samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm import reports

SAMPLES = Path(__file__).parent / "data" / "console"
BAD = sorted(SAMPLES.glob("bad-*.log"))
GOOD = sorted(SAMPLES.glob("good-*.log"))
EXPECTED_KIND = {
    "bad-kasan.log": "kasan", "bad-lockdep.log": "lockdep", "bad-warn.log": "warning",
    "bad-kmemleak.log": "kmemleak", "bad-rcu-stall.log": "rcu-stall",
    "bad-hung-task.log": "hung-task", "bad-oops.log": "bug", "bad-gpf.log": "oops",
    "bad-panic.log": "panic", "bad-soft-lockup.log": "soft-lockup",
    "bad-atomic-sleep.log": "atomic-sleep", "bad-recursive-lock.log": "lockdep",
    "bad-suspicious-rcu.log": "lockdep", "bad-kasan-la57-early-irq.log": "kasan",
}


def test_every_bad_sample_has_an_expected_kind() -> None:
    assert {p.name for p in BAD} == set(EXPECTED_KIND)
    assert GOOD, "at least one clean console sample"


@pytest.mark.parametrize("sample", BAD, ids=lambda p: p.name)
def test_bad_sample_is_reported(sample: Path) -> None:
    found = reports.find_reports(sample.read_text().splitlines())
    assert found, f"{sample.name} must fail the run"
    assert found[0].kind == EXPECTED_KIND[sample.name]


@pytest.mark.parametrize("sample", GOOD, ids=lambda p: p.name)
def test_good_sample_is_clean(sample: Path) -> None:
    assert reports.find_reports(sample.read_text().splitlines()) == []


def test_one_splat_is_one_report() -> None:
    text = (SAMPLES / "bad-kasan.log").read_text().splitlines()
    found = reports.find_reports(text)
    assert len(found) == 1
    assert "key_put" in found[0].text


def test_reports_carry_line_numbers_and_context() -> None:
    lines = ["[    1.000000] fine", *(SAMPLES / "bad-warn.log").read_text().splitlines()]
    (report,) = reports.find_reports(lines)
    assert report.line_number == 2
    assert "construct_key" in report.text


def test_two_separate_reports() -> None:
    lines = (SAMPLES / "bad-panic.log").read_text().splitlines()
    lines = ["[    0.1] fine"] * 3 + lines + ["[    9.0] x"] * 50 + \
        (SAMPLES / "bad-rcu-stall.log").read_text().splitlines()
    assert [r.kind for r in reports.find_reports(lines)] == ["panic", "rcu-stall"]


@pytest.mark.parametrize("line,expected", [
    ("[    1.000000] hello", True),
    ("<4>[   62.000000] WARNING: suspicious RCU usage", True),
    ("[  123.456789][  T100] with caller id", True),
    ("plain stderr", False),
    ("[not a timestamp] x", False),
])
def test_is_printk(line: str, expected: bool) -> None:
    assert reports.is_printk(line) is expected
