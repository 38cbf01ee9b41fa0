"""Serving an upcall: the classic helper against request-key-daemon.

USAGE: .venv/bin/python bench/upcall.py [--profile perf]

Boots the kernel once and runs this file in the guest (``--guest``), which
measures, side by side, request_key() latency and throughput at 1, 8 and
64 concurrent requesters (threads, each request a new description) for:

- ``classic``: /sbin/request-key running ``keyctl instantiate`` (a line
  bind-mounted over the guest's /etc/request-key.conf);
- ``daemon-exec``: request-key-daemon in an untrusted container, the same
  ``keyctl instantiate`` line, exec'd per request;
- ``daemon-builtin``: the same daemon, an ``@static`` line: no fork;
- ``bare-server``: bench/bare_server.py in a third container: the
  daemon's wake-up, keyctl calls and one Python handler call, without its
  config, policy or log line (the lower bound for a Python daemon);
- ``floor``: the same keyctl calls as the built-in path, made in a loop by
  one thread with no wake-up: add_key() of the same payload (standing in
  for request_key()'s making of the key), then on a request held pending
  for the whole loop the daemon's calls: query, assume the authority, read
  the callout, describe, drop the authority; a link and an unlink (the
  delivery into the queue and the daemon's unlink), and the requester's
  read of the payload.  Nine calls through the same binding, as the
  served path makes, without the two task switches and without the
  daemon's own logic (config, policy, log line);
- ``kernel-only``: add_key() and read() alone, for scale.

Then, at one requester, ROUNDS rounds of daemon-builtin, bare-server and
floor in turn: the ratios the 3x target is judged on are the medians of
the per-round ratios, so that the machine's drift (TCG is noisy) falls on
all three alike.

Writes bench/results/upcall.json; bench/plots.py draws docs/img/upcall.svg.
Targets: daemon-builtin p50 at least 20x below classic, and within 3x of
the floor.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from guest_run import report_from_guest, run_in_guest

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 64)
REQUESTS = {1: 20, 8: 40, 64: 128}
ROUNDS, ROUND_REQUESTS = 7, 40
LINE = "/bin/keyctl instantiate %k %c %S"
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_names)}"


def load(one: Callable[[str], None], prefix: str, concurrency: int,
         count: int | None = None) -> dict:
    """Run ``count`` (default REQUESTS[concurrency]) requests from
    ``concurrency`` threads."""
    per_thread = (count or REQUESTS[concurrency]) // concurrency
    latencies: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            desc = unique(prefix)
            start = time.perf_counter()
            one(desc)
            took = time.perf_counter() - start
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {"n": len(latencies), "p50_ms": round(statistics.median(latencies) * 1e3, 3),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
                            * 1e3, 3),
            "per_s": round(len(latencies) / wall, 1)}


def requester(desc: str) -> None:
    from kcont.keys import request_key
    key = request_key("user", desc, "payload")
    if key.read() != b"payload":
        raise AssertionError(f"{desc}: wrong payload")


def kernel_only(desc: str) -> None:
    from kcont.keys import SESSION, Keyring
    key = Keyring(SESSION).add("user", desc, b"payload")
    if key.read() != b"payload":
        raise AssertionError(desc)


def make_floor(auth: int) -> Callable[[str], None]:
    """The served path's nine keyctl calls on the pending request ``auth``."""
    from kcont import upcalls
    from kcont.keys import SESSION, Key, Keyring, assume_authority

    session = Keyring(SESSION)
    scratch = session.add_keyring(unique("kcont-floor-"))
    target = upcalls.query_auth(auth).target_key

    def floor(desc: str) -> None:
        key = session.add("user", desc, b"payload")
        upcalls.query_auth(auth)
        with assume_authority(target) as authkey:
            authkey.read()
            Key(target).describe()
        key.link(scratch)
        key.unlink(scratch)
        if key.read() != b"payload":
            raise AssertionError(desc)
    return floor


def held_request(box) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A member of ``box`` blocked in request_key() on a record nobody serves:
    (its pid, the auth key waiting in the record's queue)."""
    from kcont.keys import SESSION, Keyring

    queue = Keyring(SESSION).add_keyring(unique("kcont-floor-queue-"))
    box.intercept("user", queue=queue.serial)
    pid = box.fork()
    if pid == 0:
        from kcont.keys import request_key
        Keyring.join_session()
        try:
            request_key("user", unique("kcont-held:"), "x")
        finally:
            os._exit(0)
    for _ in range(500):
        waiting = queue.linked()
        if waiting:
            return pid, waiting[0].serial
        time.sleep(0.01)
    raise SystemExit("the held request never reached its queue")


def in_container(box, body: Callable[[], dict]) -> dict:  # type: ignore[no-untyped-def]
    rfd, wfd = os.pipe()
    pid = box.fork()
    if pid == 0:
        os.close(rfd)
        try:
            from kcont.keys import Keyring
            Keyring.join_session()
            os.write(wfd, json.dumps(body()).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as report:
        data = report.read()
    box.wait(pid)
    return json.loads(data)


def wait_ready(ready_r: int, what: str) -> None:
    """Wait up to 120 s for the readiness byte on ``ready_r``, then close it."""
    try:
        if not select.select([ready_r], [], [], 120)[0] or os.read(ready_r, 1) != b"R":
            raise SystemExit(f"{what} did not become ready")
    finally:
        os.close(ready_r)


def start_daemon(box, confdir: Path, log: Path) -> int:  # type: ignore[no-untyped-def]
    """request-key-daemon as the container's init (its first member), its
    log lines (stderr) going to ``log``, as to a log file when deployed:
    the guest's own stderr is a virtio console port, which under TCG
    costs more per line than serving the request."""
    ready_r, ready_w = os.pipe()
    pid = box.fork()
    if pid == 0:
        os.close(ready_r)
        os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
        os.set_inheritable(box.fd, True)
        os.set_inheritable(ready_w, True)
        from request_key_daemon import launch

        os.execv(sys.executable, launch.argv(box.fd, ready_w,
                                             ["--workers", "16", "--config-dir", str(confdir)]))
    os.close(ready_w)
    wait_ready(ready_r, "request-key-daemon")
    return pid


def start_bare_server(box) -> int:  # type: ignore[no-untyped-def]
    """bench/bare_server.py as the container's first member, registered."""
    ready_r, ready_w = os.pipe()
    pid = box.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            from bare_server import serve_forever
            serve_forever(box.fd, unique("kcont-bench-bare-"), ready_w)
        finally:
            os._exit(1)
    os.close(ready_w)
    wait_ready(ready_r, "the bare server")
    return pid


def one_requester_rounds(box, bare, floor: Callable[[str], None]  # type: ignore[no-untyped-def]
                         ) -> tuple[list[dict], dict[str, float]]:
    """The three paths the 3x target compares, at one requester, taken in
    turn for ROUNDS rounds so that drift in the machine's speed falls on
    all three alike; each ratio is the median of the per-round ratios."""
    rounds = []
    for _ in range(ROUNDS):
        rounds.append({
            "daemon-builtin": in_container(
                box, lambda: load(requester, "kcont-bb:", 1, ROUND_REQUESTS))["p50_ms"],
            "bare-server": in_container(
                bare, lambda: load(requester, "kcont-bs:", 1, ROUND_REQUESTS))["p50_ms"],
            "floor": load(floor, "kcont-bf:", 1, ROUND_REQUESTS)["p50_ms"]})

    def ratio(top: str, bottom: str) -> float:
        return round(statistics.median(r[top] / r[bottom] for r in rounds), 2)
    return rounds, {"builtin_over_floor_p50": ratio("daemon-builtin", "floor"),
                    "builtin_over_bare_p50": ratio("daemon-builtin", "bare-server"),
                    "bare_over_floor_p50": ratio("bare-server", "floor")}


def guest() -> dict:
    from kcont.container import Container
    from kcont.keys import Keyring

    Keyring.join_session()
    # On tmpfs, as /etc is on a local file system in a container, not in
    # the guest's /tmp, an overlay on the host's 9p root.
    work = Path(tempfile.mkdtemp(prefix="kcont-bench-", dir="/run"))
    conf = work / "request-key.conf"
    conf.write_text(f"create user kcont-bc:* * {LINE}\n" + Path("/etc/request-key.conf")
                    .read_text())
    confdir = work / "daemon"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text(f"create user kcont-bd:* * {LINE}\n"
                                              "create user kcont-bb:* * @static payload\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/request-key.conf"], check=True)
    results: dict[str, dict] = {"classic": {}, "daemon-exec": {}, "daemon-builtin": {},
                                "bare-server": {}, "floor": {}, "kernel-only": {}}
    box = Container("kcont-bench", trusted=False)
    held = Container("kcont-bench-held", trusted=False)
    holder, auth = held_request(held)
    floor = make_floor(auth)
    daemon_log = Path("/run/kcont-bench-daemon.log")     # tmpfs
    daemon = start_daemon(box, confdir, daemon_log)
    bare = Container("kcont-bench-bare", trusted=False)
    bare_pid = start_bare_server(bare)
    try:
        for conc in CONCURRENCY:
            key = str(conc)
            results["classic"][key] = load(requester, "kcont-bc:", conc)
            results["daemon-exec"][key] = in_container(
                box, lambda c=conc: load(requester, "kcont-bd:", c))
            results["daemon-builtin"][key] = in_container(
                box, lambda c=conc: load(requester, "kcont-bb:", c))
            results["bare-server"][key] = in_container(
                bare, lambda c=conc: load(requester, "kcont-bs:", c))
            results["floor"][key] = load(floor, "kcont-bf:", conc)
            results["kernel-only"][key] = load(kernel_only, "kcont-bk:", conc)
        rounds, interleaved = one_requester_rounds(box, bare, floor)
    finally:
        os.kill(daemon, 15)
        os.waitpid(daemon, 0)
        box.close()
        os.kill(bare_pid, 9)
        bare.wait(bare_pid)
        bare.close()
        os.kill(holder, 9)      # its container dies with it: the request is cancelled
        held.wait(holder)
        held.close()
        subprocess.run(["umount", "/etc/request-key.conf"], check=False)
    one = {path: r["1"]["p50_ms"] for path, r in results.items()}
    return {"kernel": os.uname().release, "results": results,
            "daemon_log_lines": len(daemon_log.read_text().splitlines()),
            "ratios": {"classic_over_builtin_p50": round(one["classic"]
                                                         / one["daemon-builtin"], 1),
                       **interleaved},
            "rounds": rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="perf")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.guest:
        report_from_guest(guest(), "upcall.json")
        return 0
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm.build import build

    data = run_in_guest(build(opts.profile).bzimage, opts.profile, Path(__file__), [],
                        "upcall.json")
    (ROOT / "bench" / "results" / "upcall.json").write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(data["ratios"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
