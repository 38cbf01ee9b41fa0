"""``kcont-vm soak``: the reliability suites for as long as asked, then a report.

One boot of the debug kernel; in it, soak_guest.py runs the state
machine, the bad-input fuzzer, the fault-injection sweep and the races
round after round with fresh seeds.  The host then reads the console
(kernel reports, each pinned to the round that was running) and the
rounds' counts, and writes soak-results/report.md (the tables
docs/reliability.md quotes) and report.json.  Exit 0 only with zero
kernel reports, zero failed tests (a divergence from the model is a
failed test) and zero kmemleak reports.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcont_vm.build import build
from kcont_vm.errors import EXIT_GUEST_DIED, EXIT_KERNEL_REPORT, EXIT_OK, EXIT_TESTS_FAILED
from kcont_vm.paths import Cache, repo_root
from kcont_vm.reports import Report
from kcont_vm.runner import RunSpec, boot, new_run_dir

# Not under test-results/, which every `kcont-vm test` starts by emptying.
SOAK_DIR = Path("soak-results")
ROUND_BEGINS = re.compile(r"kcont-soak: round (\d+) begins")
ROUND_MARK = re.compile(r"^\[\s*(\d+\.\d+)\] kcont-soak: round \d+ (?:begins|ends)")
# After the deadline: the last round (it starts before and ends after), kmemleak, shutdown.
GRACE_SECONDS = 2400


@dataclass
class Verdict:
    code: int
    lines: list[str]


def report_rounds(console: list[str], found: list[Report]) -> dict[int, list[str]]:
    """Each kernel report's kind by the round running when it was printed
    (round 0: before the first round began)."""
    begins = [(number, int(m.group(1))) for number, line in enumerate(console, 1)
              if (m := ROUND_BEGINS.search(line))]
    by_round: dict[int, list[str]] = {}
    for report in found:
        running = max((r for line, r in begins if line <= report.line_number), default=0)
        by_round.setdefault(running, []).append(report.kind)
    return by_round


def round_span(console: list[str]) -> float | None:
    """Seconds of guest uptime from the first round's start to the last
    round's end (kmemleak scans between rounds included); None if unmarked."""
    stamps = [float(m.group(1)) for line in console if (m := ROUND_MARK.search(line))]
    return stamps[-1] - stamps[0] if len(stamps) >= 2 else None


def totals(rounds: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Each suite's counts (steps, calls, faults) summed over the rounds."""
    summed: dict[str, Counter[str]] = {}
    for entry in rounds:
        for name, counts in entry["counts"].items():
            bucket = summed.setdefault(name.removesuffix(".json"), Counter())
            if name == "fault-injection.json":
                for op, row in counts.items():
                    bucket[f"{op}: fault points"] += row["fault_points"]
                    bucket[f"{op}: errors returned"] += row["errors_returned"]
            else:
                bucket.update({k: v for k, v in counts.items() if isinstance(v, int)})
    return summed


def render(soak: dict[str, Any], by_round: dict[int, list[str]], hours: float,
           boot_seconds: float, span: float | None = None) -> str:
    rounds = soak["rounds"]
    seconds = sum(r["seconds"] for r in rounds)
    failed = sum(len(r["failed"]) + r["skipped"] for r in rounds)
    leaks = sum(r["kmemleak"] or 0 for r in rounds)
    kernel = sum(len(kinds) for kinds in by_round.values())
    out = [
        "# kcont soak report", "",
        f"Asked: {hours:g} h.  Ran {len(rounds)} rounds, {seconds / 3600:.2f} h of tests "
        f"in one debug boot of {boot_seconds / 3600:.2f} h (KASAN, lockdep, kmemleak)."
        + ("" if span is None else
           f"  From the first round's start to the last one's end: {span / 60:.1f} min "
           "(the tests, and the kmemleak scan after each round)."), "",
        "| | count |", "|---|---|",
        f"| rounds | {len(rounds)} |",
        f"| tests run | {sum(r['tests'] for r in rounds)} |",
        f"| failed tests (model divergences included) | {failed} |",
        f"| kernel reports | {kernel} |",
        f"| kmemleak reports | {leaks} |", "",
        "## Rounds", "",
        "| round | seed | seconds | tests | failed | kmemleak | kernel reports |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        out.append(f"| {r['round']} | {r['seed']} | {r['seconds']:.0f} | {r['tests']} | "
                   f"{', '.join(r['failed']) or 0} | {r['kmemleak']} | "
                   f"{', '.join(by_round.get(r['round'], [])) or 0} |")
    if by_round.get(0):
        out += ["", f"Kernel reports before the first round: {', '.join(by_round[0])}"]
    for suite, counts in totals(rounds).items():
        out += ["", f"## {suite}", "", "| what | total |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    out += ["", "Reproduce a round: `.venv/bin/kcont-vm run -- python -m pytest -p "
                "no:cacheprovider --hypothesis-seed=SEED tests/guest/test_<suite>.py`", ""]
    return "\n".join(out)


def judge(soak: dict[str, Any] | None, by_round: dict[int, list[str]],
          command_rc: int | None) -> Verdict:
    if soak is None or not soak["rounds"]:
        return Verdict(EXIT_GUEST_DIED, ["soak: no round finished"])
    rounds = soak["rounds"]
    lines = []
    code = EXIT_OK
    if any(by_round.values()):
        code = EXIT_KERNEL_REPORT
        lines.append("soak: kernel reports in rounds "
                     + ", ".join(str(r) for r, kinds in sorted(by_round.items()) if kinds))
    if any(r["failed"] or r["skipped"] for r in rounds):
        code = code or EXIT_TESTS_FAILED
        lines.append("soak: failures in rounds "
                     + ", ".join(str(r["round"]) for r in rounds if r["failed"] or r["skipped"]))
    if any(r["kmemleak"] for r in rounds):
        code = code or EXIT_KERNEL_REPORT
        lines.append("soak: kmemleak reports in rounds "
                     + ", ".join(str(r["round"]) for r in rounds if r["kmemleak"]))
    if command_rc is None:
        code = code or EXIT_GUEST_DIED
        lines.append("soak: the guest died before the soak ended")
    return Verdict(code, lines)


def run_soak(hours: float, profile: str = "debug", scale: float = 1.0) -> int:
    root = repo_root()
    out = root / SOAK_DIR
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    image = build(profile).bzimage
    seconds = hours * 3600
    spec = RunSpec(bzimage=image, profile=profile, timeout=seconds + GRACE_SECONDS,
                   cmd=[sys.executable, "-m", "kcont_vm.soak_guest", "--seconds",
                        f"{seconds:.0f}", "--scale", f"{scale:g}"])
    print(f"== soak: {hours:g} h on the {profile} kernel, one boot ==", flush=True)
    outcome = boot(spec, run_dir=new_run_dir(Cache.default()))
    outcome.keep(out, "console.log")
    soak_json = outcome.results / "soak.json"
    soak = json.loads(soak_json.read_text()) if soak_json.exists() else None
    console = outcome.console_log.read_text(errors="replace").splitlines()
    by_round = report_rounds(console, outcome.reports)
    verdict = judge(soak, by_round, outcome.command_rc)
    if soak is not None:
        span = round_span(console)
        (out / "report.md").write_text(render(soak, by_round, hours, outcome.seconds, span))
        (out / "report.json").write_text(json.dumps(
            {"hours": hours, "boot_seconds": round(outcome.seconds), "verdict": verdict.code,
             "rounds_span_seconds": span, "kernel_reports": by_round,
             "totals": totals(soak["rounds"]), **soak},
            indent=1) + "\n")
    status = "PASS" if verdict.code == EXIT_OK else f"FAIL (exit {verdict.code})"
    print("\n".join(["== kcont-vm soak summary ==", *verdict.lines, f"result: {status}",
                     f"report: {out / 'report.md'}"]), flush=True)
    return verdict.code
