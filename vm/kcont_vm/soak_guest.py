"""The guest half of ``kcont-vm soak``: the reliability suites, round after round.

Runs in one boot of the debug kernel (KASAN, lockdep, kmemleak).  Each
round runs the four reliability suites under pytest with a fresh
hypothesis seed, then has kmemleak scan, so that a leak is pinned to the
round (and the seed) that made it.  Round boundaries go to the kernel log
(/dev/kmsg), where the host finds them next to any kernel report.  Rounds
start until the time asked has passed, so a soak lasts at least that
long (plus one round).  soak.json is rewritten after every round: a guest that dies
still leaves the rounds it finished.

usage (in the guest): python -m kcont_vm.soak_guest --seconds S [--scale X]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kcont_vm.junit import read_junit
from kcont_vm.paths import repo_root

SUITES = ("test_state_machine.py", "test_bad_input.py", "test_fault_injection.py",
          "test_races.py")
# What each suite leaves in KCONT_RESULTS (the counts the report adds up).
COUNTS = ("state-machine.json", "bad-input.json", "fault-injection.json", "races.json")
KMEMLEAK = Path("/sys/kernel/debug/kmemleak")
ROUND_MARK = "kcont-soak: round"


def kmsg(line: str) -> None:
    """A line in the kernel log: the host reads rounds and reports from one stream."""
    with open("/dev/kmsg", "w") as log:
        log.write(line + "\n")


def kmemleak_scan(round_dir: Path) -> int | None:
    """New suspected leaks since the last scan (None without kmemleak).

    Objects younger than kmemleak's minimum age (5 s) are not judged yet:
    wait that out first.  A report is kept in the round's directory and
    forwarded to the kernel log in the form the host's report scan knows.
    """
    if not KMEMLEAK.exists():
        return None
    time.sleep(5.5)
    KMEMLEAK.write_text("scan")
    KMEMLEAK.write_text("scan")
    text = KMEMLEAK.read_text()
    leaks = text.count("unreferenced object")
    if leaks:
        (round_dir / "kmemleak.txt").write_text(text)
        kmsg(f"kcont-soak: kmemleak: {leaks} new suspected memory leaks")
        for line in text.splitlines():
            kmsg(f"kcont-soak: {line}")
    KMEMLEAK.write_text("clear")
    return leaks


def run_round(number: int, seed: int, scale: float, out: Path) -> dict[str, Any]:
    round_dir = out / f"round-{number:03d}"
    round_dir.mkdir(parents=True, exist_ok=True)
    guest = repo_root() / "tests" / "guest"
    junit = round_dir / "junit.xml"
    argv = [sys.executable, "-m", "pytest", *(str(guest / s) for s in SUITES),
            "-p", "no:cacheprovider", f"--hypothesis-seed={seed}", f"--junitxml={junit}",
            "-o", "junit_family=xunit2", "-q", "--timeout=1800"]
    env = {**os.environ, "KCONT_RESULTS": str(round_dir), "KCONT_BUDGET_SCALE": str(scale)}
    kmsg(f"{ROUND_MARK} {number} begins (seed {seed})")
    start = time.monotonic()
    rc = subprocess.run(argv, env=env, check=False).returncode
    seconds = time.monotonic() - start
    leaks = kmemleak_scan(round_dir)
    kmsg(f"{ROUND_MARK} {number} ends (pytest exit {rc}, kmemleak {leaks})")
    counts = read_junit(junit) if junit.exists() else None
    return {
        "round": number, "seed": seed, "seconds": round(seconds, 1), "pytest_rc": rc,
        "tests": counts.tests if counts else 0,
        "failed": counts.failed_names if counts else ["(no junit: pytest died)"],
        "skipped": counts.skipped if counts else 0,
        "kmemleak": leaks,
        "counts": {name: json.loads((round_dir / name).read_text())
                   for name in COUNTS if (round_dir / name).exists()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kcont_vm.soak_guest")
    parser.add_argument("--seconds", type=float, required=True,
                        help="start rounds until this many seconds have passed")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="KCONT_BUDGET_SCALE for each round (examples per round)")
    opts = parser.parse_args(argv)
    out = Path(os.environ.get("KCONT_RESULTS", "/tmp"))
    start = time.monotonic()
    rounds: list[dict[str, Any]] = []
    seeds = random.SystemRandom()
    # At least the time asked: a round starts while any is left (the last
    # one ends after the deadline).
    while time.monotonic() - start < opts.seconds:
        rounds.append(run_round(len(rounds) + 1, seeds.randrange(2**32), opts.scale, out))
        (out / "soak.json").write_text(json.dumps(
            {"asked_seconds": opts.seconds, "scale": opts.scale, "rounds": rounds},
            indent=1) + "\n")
        last = rounds[-1]
        print(f"kcont-soak: round {last['round']}: {last['tests']} tests, "
              f"{len(last['failed'])} failed, kmemleak {last['kmemleak']}, "
              f"{last['seconds']:.0f}s (seed {last['seed']})", flush=True)
    failed = any(r["pytest_rc"] != 0 or r["kmemleak"] for r in rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
