"""Where `kcont-vm run -- true` spends its time, stock virtme init vs lean init.

USAGE: .venv/bin/python bench/boot_phases.py [--profiles debug perf] [--rounds 1]

Each profile is booted with virtme-ng's stock init (KCONT_FULL_INIT=1) and
with kcont-vm's lean init (vm/kcont_vm/lean-init.c), alternating, in one
run, so the two columns see the same machine load.  Phases come from the
guest's own printk timestamps; the end-to-end figure is the host's wall
clock.  Results: bench/results/boot_phases.json, and a plot in
docs/img/boot-phases.svg (bench/plots.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "vm"))

from kcont_vm import build as kbuild  # noqa: E402
from kcont_vm import runner  # noqa: E402
from kcont_vm.paths import Cache  # noqa: E402

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s(.*)$")
MARKS = {
    "init": "as init process",
    "tmpfiles": "virtme-ng-init: running systemd-tmpfiles",
    "basic": "virtme-ng-init: basic initialization done",
    "script": "virtme-ng-init: starting script",
    "off": "reboot: Power down",
}


def marks(console: str) -> dict[str, float]:
    """First printk timestamp of each mark in a console log."""
    found: dict[str, float] = {}
    for line in console.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        for name, text in MARKS.items():
            if name not in found and text in m.group(2):
                found[name] = float(m.group(1))
    return found


def phases(found: dict[str, float], wall: float) -> dict[str, float]:
    """Seconds per phase; what the printk clock cannot see is "host"."""
    kernel = found["init"]
    tmpfiles = found["basic"] - found["tmpfiles"]
    init_rest = found["script"] - kernel - tmpfiles
    command = found["off"] - found["script"]
    return {"kernel boot": kernel, "systemd-tmpfiles": tmpfiles,
            "rest of init (udev)": init_rest, "command + kmemleak scan": command,
            "host (QEMU start/exit)": max(wall - found["off"], 0.0), "total": wall}


def one_boot(profile: str, full_init: bool) -> dict[str, float]:
    cache = Cache.default()
    os.environ["KCONT_FULL_INIT"] = "1" if full_init else "0"
    outcome = runner.boot(runner.RunSpec(bzimage=cache.bzimage(profile), cmd=["true"],
                                         profile=profile), cache, log=lambda _m: None)
    if outcome.exit_code != 0:
        raise SystemExit(f"{profile} boot failed ({outcome.exit_code}): {outcome.console_log}")
    found = marks(outcome.console_log.read_text(errors="replace"))
    return {k: round(v, 2) for k, v in phases(found, outcome.seconds).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["debug", "perf"])
    parser.add_argument("--rounds", type=int, default=1)
    opts = parser.parse_args()
    for profile in opts.profiles:
        kbuild.build(profile)
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for _ in range(opts.rounds):
        for profile in opts.profiles:
            for init in ("stock", "lean"):
                row = one_boot(profile, full_init=init == "stock")
                results.setdefault(profile, {}).setdefault(init, []).append(row)
                print(profile, init, row, flush=True)
    out = ROOT / "bench" / "results" / "boot_phases.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
