"""What the harness costs: cold build, incremental rebuild, boot-to-exit, guest suite.

USAGE: .venv/bin/python bench/harness.py [--profiles debug perf] [--skip-cold]

Cold builds run with ccache disabled into a scratch output directory, so
the cached builds are neither used nor disturbed.  The incremental figure
touches one file in security/keys of the build tree and re-runs make in
the cached build directory.  `kcont-vm run -- true` is timed end to end,
as a user sees it, for each profile in the same run.  Results go to
bench/results/harness.json; docs/harness-bench.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "vm"))

from kcont_vm import build as kbuild  # noqa: E402
from kcont_vm.paths import Cache  # noqa: E402
from kcont_vm.progress import BuildProgress  # noqa: E402
from kcont_vm.series import profile_stacks  # noqa: E402
from kcont_vm.source import prepare_src  # noqa: E402

TARGETS = {"cold": 12 * 60, "incremental": 2 * 60, "run_true_perf": 20, "run_true_debug": 60}


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def cold_build(profile: str, cache: Cache) -> float:
    """Configure and build into a scratch directory without ccache."""
    _, frags = kbuild.current_key(cache, profile)
    src = prepare_src(cache, profile_stacks(ROOT / "kernel", profile))
    with tempfile.TemporaryDirectory(prefix=f"kcont-cold-{profile}-") as scratch:
        out = Path(scratch)
        start = time.monotonic()
        kbuild.configure(src, out, frags, print)
        env = dict(os.environ, CCACHE_DISABLE="1")
        with BuildProgress(f"cold {profile}", expected=2300):
            subprocess.run(kbuild.make_argv(src, out), env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic() - start


def incremental_build(profile: str, cache: Cache) -> float:
    kbuild.build(profile, cache=cache)
    src = prepare_src(cache, profile_stacks(ROOT / "kernel", profile))
    (src / "security" / "keys" / "key.c").touch()
    env = dict(os.environ, CCACHE_DIR=str(cache.ccache))
    start = time.monotonic()
    subprocess.run(kbuild.make_argv(src, cache.build(profile)), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["debug", "perf"])
    parser.add_argument("--skip-cold", action="store_true")
    opts = parser.parse_args()
    cache = Cache.default()
    kcont_vm = str(ROOT / ".venv" / "bin" / "kcont-vm")
    results: dict[str, dict[str, float]] = {}
    for profile in opts.profiles:
        row: dict[str, float] = {}
        if not opts.skip_cold:
            row["cold_build_s"] = round(cold_build(profile, cache), 1)
        row["incremental_build_s"] = round(incremental_build(profile, cache), 1)
        row["run_true_s"] = round(timed([kcont_vm, "run", "--profile", profile, "--",
                                         "true"]), 1)
        results[profile] = row
        print(profile, row, flush=True)
    suite = ROOT / "test-results" / "guest.xml"
    if suite.exists():
        from kcont_vm.junit import read_junit

        results["guest_suite"] = {"seconds": round(read_junit(suite).seconds, 1)}
    out = ROOT / "bench" / "results" / "harness.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    shutil.copy(out, out.with_suffix(".last.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
