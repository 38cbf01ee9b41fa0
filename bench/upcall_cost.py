"""What interception costs: the patched kernel against the unpatched one.

USAGE: .venv/bin/python bench/upcall_cost.py [--iterations N] [--rounds R]

One run builds (or reuses) the perf kernel twice, with the series and with
an empty series (the base, in its own work tree and build directory),
boots each once and runs this same file in the guest with ``--guest``.
Measured in each guest, loops interleaved in rounds:

- ``existing``: request_key() of a key already in the session keyring
  (the search path, which the series must not slow down);
- ``classic``: a classic upcall from init_container (/sbin/request-key
  runs Debian's request-key-debug.sh, which instantiates the key);

and on the patched kernel only:

- ``rejected``: an untrusted member's request no record matches,
  refused at the boundary;
- ``deep``: a request from a container 8 levels deep with 100
  non-matching records on every level (the walk visits all 800) against
  ``shallow``: a container with one record.  Both end rejected, so the
  difference is the walk.

Each kernel is booted ``--pairs`` times, alternately (A B A B), and each
guest also times a pure user-space loop: under TCG a whole boot can run
some percent faster or slower than another, which is not the kernel's
doing, and the loop shows how much.  Reported: patched over unpatched
(raw, and divided by the loop's ratio), median over the pairs; ratios
within the patched guest.  Absolute times are printed but never compared across
runs.  Results: bench/results/upcall_cost.json, plotted by bench/plots.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from guest_run import report_from_guest, run_in_guest

ROOT = Path(__file__).resolve().parents[1]
DEPTH, RECORDS_PER_LEVEL = 8, 100
_names = itertools.count()


# ---------------------------------------------------------------- guest side

def per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_names)}"


def rejected_request() -> None:
    from kcont.keys import request_key
    try:
        request_key("user", unique("kcont-bench-rej:"), "x")
    except OSError as err:
        if err.errno != 126:            # ENOKEY
            raise
    else:
        raise AssertionError("an untrusted request with no record was served")


def in_chain(depth: int, records: int, body: Callable[[], dict]) -> dict:
    """Run ``body`` in a container ``depth`` levels deep, each level with
    ``records`` records that never match, and return what it returned."""
    from kcont import upcalls
    from kcont.container import Container
    from kcont.keys import Keyring

    queue = Keyring.join_session("kcont-bench").add_keyring("kcont-bench-q")
    # Members do not possess it (no session keyring): let uid 0 write to it.
    queue.setperm(0x3F3F0000)
    rfd, wfd = os.pipe()

    def level(n: int) -> None:
        box = Container(f"kcont-bench-{n}", trusted=False)
        for i in range(records):
            upcalls.intercept(box.fd, f"nomatch{i}", 0, queue.serial)
        pid = box.fork()
        if pid == 0:
            try:
                if n == depth:
                    os.write(wfd, json.dumps(body()).encode())
                else:
                    level(n + 1)
            finally:
                os._exit(0)
        box.wait(pid)
        box.close()

    pid = os.fork()
    if pid == 0:
        try:
            level(1)
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as report:
        data = report.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def guest(opts: argparse.Namespace) -> dict:
    from kcont.keys import Keyring, request_key

    session = Keyring.join_session()
    session.add("user", "kcont-bench:existing", b"x")
    n, rounds = opts.iterations, opts.rounds
    patched = Path("/proc/sys/kernel/keys/intercept_timeout").exists()
    samples: dict[str, list[float]] = {"existing": [], "classic": [], "calib": []}

    def calibration() -> int:
        return sum(range(200))

    for _ in range(rounds):
        # Pure user-space work: how fast this boot's emulated CPU runs.
        samples["calib"].append(per_call(calibration, n * 100))
        samples["existing"].append(per_call(
            lambda: request_key("user", "kcont-bench:existing"), n * 100))
        samples["classic"].append(per_call(
            lambda: request_key("user", unique("debug:kcont-bench-"), "x", session), n))
    result: dict = {"kernel": os.uname().release, "patched": patched, "iterations": n,
                    "rounds": rounds}
    if patched:
        Path("/proc/sys/kernel/keys/max_intercepts").write_text(str(RECORDS_PER_LEVEL))

        def walk() -> dict:
            times = [per_call(rejected_request, n) for _ in range(rounds)]
            return {"per_round": times}

        samples["deep"] = in_chain(DEPTH, RECORDS_PER_LEVEL, walk)["per_round"]
        samples["shallow"] = in_chain(1, 1, walk)["per_round"]
        samples["rejected"] = in_chain(1, 0, walk)["per_round"]
    result["median_us"] = {k: round(statistics.median(v) * 1e6, 1) for k, v in samples.items()}
    result["per_round_us"] = {k: [round(x * 1e6, 1) for x in v] for k, v in samples.items()}
    return result


# ----------------------------------------------------------------- host side

def build_base_perf(log: Callable[[str], None]) -> Path:
    """The perf kernel with an empty series, in its own tree and build dir."""
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm import build as kbuild
    from kcont_vm import kconfig
    from kcont_vm.gitutil import git
    from kcont_vm.paths import Cache
    from kcont_vm.source import BASE_TAG, ensure_base, source_id

    cache = Cache.default()
    ensure_base(cache, log)
    src = cache.root / "src-base"
    if not (src / ".git").exists():
        git(cache.base, "worktree", "prune")
        git(cache.base, "worktree", "add", "-q", "--detach", str(src), BASE_TAG)
    out = cache.root / "build" / "perf-base"
    out.mkdir(parents=True, exist_ok=True)
    frags = kconfig.fragments(ROOT / "kernel" / "config", "perf")
    key = kbuild.build_key(source_id(), [], frags, "perf-base", kbuild.gcc_version())
    stamp = out / "kcont-base-key"
    bzimage = out / "arch" / "x86" / "boot" / "bzImage"
    if stamp.exists() and stamp.read_text() == key and bzimage.exists():
        log(f"unpatched perf kernel: cached ({out})")
        return bzimage
    log(f"building the unpatched perf kernel into {out}")
    kbuild.configure(src, out, frags, log)
    env = dict(os.environ, CCACHE_DIR=str(cache.ccache), CCACHE_MAXSIZE="8G")
    with (out / "kcont-build.log").open("w") as build_log:
        subprocess.run(kbuild.make_argv(src, out), env=env, check=True, stdout=build_log,
                       stderr=subprocess.STDOUT)
    stamp.write_text(key)
    return bzimage


def boot_and_measure(bzimage: Path, opts: argparse.Namespace) -> dict:
    return run_in_guest(bzimage, "perf", Path(__file__),
                        ["--iterations", str(opts.iterations), "--rounds", str(opts.rounds)],
                        "upcall_cost.json")


def normalised(run: dict, name: str) -> list[float]:
    """Each round's time divided by the same round's calibration loop, so
    that a boot whose emulated CPU runs slower overall does not count."""
    return [t / c for t, c in zip(run["per_round_us"][name], run["per_round_us"]["calib"],
                                  strict=True)]


def ratios(bases: list[dict], patcheds: list[dict]) -> dict:
    """Patched/unpatched per pair of boots (raw and normalised), median over
    the pairs; the within-patched ratios from every patched boot."""
    def cross(name: str, norm: bool) -> float:
        values = []
        for base, patched in zip(bases, patcheds, strict=True):
            b = normalised(base, name) if norm else base["per_round_us"][name]
            p = normalised(patched, name) if norm else patched["per_round_us"][name]
            values.append(statistics.median(p) / statistics.median(b))
        return round(statistics.median(values), 3)

    def within(num: str, den: str) -> float:
        return round(statistics.median(p["median_us"][num] / p["median_us"][den]
                                       for p in patcheds), 4)

    return {
        "existing_patched_over_unpatched": cross("existing", False),
        "classic_patched_over_unpatched": cross("classic", False),
        "existing_normalised": cross("existing", True),
        "classic_normalised": cross("classic", True),
        "calib_patched_over_unpatched": cross("calib", False),
        "rejected_over_classic": within("rejected", "classic"),
        "deep_over_shallow": within("deep", "shallow"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2, help="boots of each kernel, alternated")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.guest:
        report_from_guest(guest(opts), "upcall_cost.json")
        return 0
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm import build as kbuild

    base_image = build_base_perf(print)
    patched_image = kbuild.build("perf").bzimage
    bases, patcheds = [], []
    for _ in range(opts.pairs):     # A B A B: boot-to-boot drift hits both
        bases.append(boot_and_measure(base_image, opts))
        patcheds.append(boot_and_measure(patched_image, opts))
    report = {"unpatched": bases[0], "patched": patcheds[0], "boots": {
                  "unpatched": bases, "patched": patcheds},
              "ratios": ratios(bases, patcheds),
              "targets": {"existing_patched_over_unpatched": 1.02,
                          "classic_patched_over_unpatched": 1.02}}
    out = ROOT / "bench" / "results" / "upcall_cost.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
