"""What kcont-upcallsnoop costs the upcalls it watches.

USAGE: .venv/bin/python bench/upcallsnoop_overhead.py [--profile perf] [--rounds 2]

Boots the kernel once and, in the guest (``--guest``), measures request_key()
latency on two paths with the probes detached and attached, in alternating
rounds in the same guest (off, on, off, on, ...) so that drift hits both:

- ``classic``: /sbin/request-key running ``keyctl instantiate``;
- ``intercepted``: request-key-daemon in an untrusted container serving
  an ``@static`` line (bench/upcall.py's built-in path).

The attached tool is the real one, ``kcont-upcallsnoop --json`` with its
output read and thrown away.  Writes bench/results/upcallsnoop_overhead.json;
docs/probes.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guest_run import report_from_guest, run_in_guest
from upcall import LINE, in_container, load, requester, start_daemon

ROOT = Path(__file__).resolve().parents[1]
PER_ROUND = 40


def attach() -> subprocess.Popen[str]:
    """kcont-upcallsnoop --json, once it reports it is tracing."""
    from kcont.probes.upcallsnoop import READY

    snoop = subprocess.Popen([sys.executable, "-m", "kcont.probes.upcallsnoop", "--json"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert snoop.stderr is not None
    for line in snoop.stderr:
        if line.strip() == READY:
            return snoop
    raise SystemExit("kcont-upcallsnoop did not attach")


def guest(rounds: int) -> dict:
    from kcont.container import Container
    from kcont.keys import Keyring

    Keyring.join_session()
    work = Path(tempfile.mkdtemp(prefix="kcont-snoop-bench-"))
    conf = work / "request-key.conf"
    conf.write_text(f"create user kcont-sc:* * {LINE}\n"
                    + Path("/etc/request-key.conf").read_text())
    confdir = work / "daemon"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text("create user kcont-si:* * @static payload\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/request-key.conf"], check=True)
    box = Container("kcont-snoop-bench", trusted=False)
    daemon = start_daemon(box, confdir)
    samples: dict[str, dict[str, list[float]]] = {
        "classic": {"off": [], "on": []}, "intercepted": {"off": [], "on": []}}
    attach_s: list[float] = []
    try:
        for _ in range(rounds):
            for state in ("off", "on"):
                snoop = None
                if state == "on":
                    start = time.monotonic()
                    snoop = attach()
                    attach_s.append(time.monotonic() - start)
                samples["classic"][state].append(
                    load(requester, "kcont-sc:", 1, PER_ROUND)["p50_ms"])
                samples["intercepted"][state].append(in_container(
                    box, lambda: load(requester, "kcont-si:", 1, PER_ROUND))["p50_ms"])
                if snoop is not None:
                    snoop.terminate()
                    snoop.wait(timeout=60)
    finally:
        os.kill(daemon, 15)
        os.waitpid(daemon, 0)
        box.close()
        subprocess.run(["umount", "/etc/request-key.conf"], check=False)
    table = {path: {state: round(statistics.median(values), 3)
                    for state, values in by_state.items()}
             for path, by_state in samples.items()}
    return {"kernel": os.uname().release, "rounds": rounds, "per_round": PER_ROUND,
            "p50_ms_by_round": samples, "p50_ms": table,
            "attach_seconds": [round(s, 1) for s in attach_s],
            "ratios": {path: round(row["on"] / row["off"], 3) for path, row in table.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="perf")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.guest:
        report_from_guest(guest(opts.rounds), "upcallsnoop_overhead.json")
        return 0
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm.build import build

    data = run_in_guest(build(opts.profile).bzimage, opts.profile, Path(__file__),
                        ["--rounds", str(opts.rounds)], "upcallsnoop_overhead.json")
    out = ROOT / "bench" / "results" / "upcallsnoop_overhead.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
