"""What runs first inside the guest: prepare the machine, run CMD, scan for leaks.

virtme-ng starts this through ``--exec``.  It gives the command a writable
/tmp and mounted debugfs/tracefs (bcc needs both), clears kmemleak's
record of boot-time objects so only the command's leaks count, runs the
command, then triggers a kmemleak scan whose report it forwards to the
kernel log, where the host's report detection sees it like any other.
The command's exit code is written to the results directory too, so the
host can tell "CMD failed" from "the guest died".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

KMEMLEAK = Path("/sys/kernel/debug/kmemleak")
MOUNTS = (
    ("debugfs", "/sys/kernel/debug"),
    ("tracefs", "/sys/kernel/tracing"),
)
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


def mounted(target: str) -> bool:
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def prepare() -> None:
    """Mount what bcc and the kmemleak scan need; make /tmp writable."""
    for fstype, target in MOUNTS:
        if Path(target).is_dir() and not mounted(target):
            subprocess.run(["mount", "-t", fstype, fstype, target], check=False)
    if not os.access("/tmp", os.W_OK) or not mounted("/tmp"):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/tmp"],
                       check=False)


def kmsg(line: str) -> None:
    """Put a line into the kernel log (printk.devkmsg=on lifts the rate limit)."""
    try:
        with open("/dev/kmsg", "w") as dev:
            dev.write(line[:900] + "\n")
    except OSError:
        print(line, file=sys.stderr)


def kmemleak_clear() -> None:
    if KMEMLEAK.exists():
        KMEMLEAK.write_text("clear\n")


def kmemleak_scan(min_age: float = 5.5) -> int:
    """Scan twice (objects younger than 5 s are not reported yet); forward the report."""
    if not KMEMLEAK.exists():
        return 0
    time.sleep(min_age)
    for _ in range(2):
        KMEMLEAK.write_text("scan\n")
    report = KMEMLEAK.read_text()
    leaks = report.count("unreferenced object")
    if leaks:
        kmsg(f"kcont-guest: kmemleak: {leaks} new suspected memory leaks after the command")
        for line in report.splitlines():
            kmsg(f"kcont-guest: {line}")
    return leaks


def run(argv: list[str]) -> int:
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError:
        print(f"kcont-vm: {argv[0]}: command not found in the guest", file=sys.stderr)
        return EXIT_NOT_FOUND
    except PermissionError:
        print(f"kcont-vm: {argv[0]}: not executable in the guest", file=sys.stderr)
        return EXIT_NOT_EXECUTABLE


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kcont_vm.guest")
    parser.add_argument("--results", type=Path, help="host-shared directory for guest-rc")
    parser.add_argument("--no-kmemleak", action="store_true")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    opts = parser.parse_args(args)
    cmd = opts.cmd[1:] if opts.cmd[:1] == ["--"] else opts.cmd
    if not cmd:
        parser.error("no command")
    prepare()
    if not opts.no_kmemleak:
        kmemleak_clear()
    rc = run(cmd)
    if not opts.no_kmemleak:
        kmemleak_scan()
    if opts.results:
        (opts.results / "guest-rc").write_text(f"{rc}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
