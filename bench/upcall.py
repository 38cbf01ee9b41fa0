"""Serving an upcall: every way to answer a request_key(), side by side.

USAGE: .venv/bin/python bench/upcall.py [--profile perf] [--rounds N] [--baseline REV]
       [--paths PATH ...]

Compiles the two C programs in bench/c/ against the patched kernel's uapi
headers, boots the kernel once and runs this file in the guest
(``--guest``).  There, in ROUNDS interleaved rounds (the paths in a
rotated order each round), each path is timed at 1, 8 and 64 concurrent
requesters.  The requester is always bench/c/upcall_load.c: threads in one
process, each request one timed system call, so that the requester's own
language costs nothing and every path is timed the same way:

- ``classic``: /sbin/request-key running ``keyctl instantiate`` (a line
  bind-mounted over the guest's /etc/request-key.conf);
- ``daemon-exec``: request-key-daemon in an untrusted container, the same
  ``keyctl instantiate`` line, exec'd per request;
- ``daemon-builtin``: the same daemon, an ``@static`` line: no fork;
- ``bare-server``: bench/bare_server.py in its own container: the
  daemon's wake-up and keyctl calls and one Python handler call, without
  its config, policy or log line (the lower bound for a Python daemon);
- ``c-server``: bench/c/mech_server.c in its own container: the same
  mechanism (watch, query, assume, read the callout, instantiate) served
  in C, the lower bound for any server of it;
- ``seccomp``: the same request_key() call answered by a seccomp
  user-notification supervisor in C (upcall_load.c): the best
  kernel-to-user-to-kernel round trip this kernel has;
- ``floor``: the served path's keyctl calls in a Python loop with no
  wake-up (Python requester threads; kept for scale);
- ``kernel-only``: add_key() alone, from the C requester, for scale.

For the servers that answer in their own process (daemon-builtin,
bare-server, c-server) each measurement also records the server's CPU
time per request (/proc/PID/task/*/schedstat), which the machine's
scheduling noise touches far less than latency.  ``--baseline REV`` adds
``daemon-builtin@base``: request-key-daemon as it was at git revision
REV (its package only; the kcont binding is this tree's), served from a
fifth container beside today's, so that a change to the daemon is
measured side by side with what it replaces.

Each target is judged on the median of its per-round ratio, so that the
machine's drift (TCG is noisy) falls on both sides of a ratio alike.
Writes bench/results/upcall.json; bench/plots.py draws docs/img/upcall.svg.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
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
C_SOURCES = ROOT / "bench" / "c"
C_BUILD = ROOT / "bench" / "build"
BASELINE = C_BUILD / "baseline"
LOAD = C_BUILD / "upcall_load"
MECH_SERVER = C_BUILD / "mech_server"
CONCURRENCY = (1, 8, 64)
# Requests per measurement: the paths that fork and exec per request take
# about 0.1 s each under TCG, the others about 1 ms.
SLOW = ("classic", "daemon-exec")
REQUESTS = {"slow": {1: 16, 8: 40, 64: 128}, "fast": {1: 200, 8: 400, 64: 640}}
ROUNDS = 5
LINE = "/bin/keyctl instantiate %k %c %S"
PREFIXES = {"classic": "kcont-bc:", "daemon-exec": "kcont-bd:", "daemon-builtin": "kcont-bb:",
            "bare-server": "kcont-bs:", "c-server": "kcont-bm:", "seccomp": "kcont-bx:",
            "floor": "kcont-bf:", "kernel-only": "kcont-bk:",
            "daemon-builtin@base": "kcont-bz:"}
# (name, numerator, denominator, measure, at requesters, target, "min"/"max")
TARGETS = (
    ("classic / daemon-builtin, p50", "classic", "daemon-builtin", "p50_ms", 1, 20.0, "min"),
    ("daemon-builtin / bare-server, p50", "daemon-builtin", "bare-server", "p50_ms", 1, 1.5,
     "max"),
    ("daemon-builtin / bare-server, throughput", "daemon-builtin", "bare-server", "per_s", 64,
     0.8, "min"),
    ("c-server / seccomp, p50", "c-server", "seccomp", "p50_ms", 1, 1.5, "max"),
    ("daemon-exec / classic, p50", "daemon-exec", "classic", "p50_ms", 1, 1.0, "max"),
)
# Ratios reported beside the targets, for where the time goes.
REPORTED = (
    ("c-server / seccomp, p50 at 8", "c-server", "seccomp", "p50_ms", 8),
    ("c-server / seccomp, p50 at 64", "c-server", "seccomp", "p50_ms", 64),
    ("bare-server / c-server, p50", "bare-server", "c-server", "p50_ms", 1),
    ("daemon-builtin / c-server, p50", "daemon-builtin", "c-server", "p50_ms", 1),
    ("daemon-builtin / bare-server, p50 at 64", "daemon-builtin", "bare-server", "p50_ms", 64),
    ("c-server / kernel-only, p50", "c-server", "kernel-only", "p50_ms", 1),
    ("daemon-builtin / daemon-builtin@base, p50", "daemon-builtin", "daemon-builtin@base",
     "p50_ms", 1),
    ("daemon-builtin / daemon-builtin@base, throughput", "daemon-builtin",
     "daemon-builtin@base", "per_s", 64),
    ("daemon-builtin / bare-server, server CPU per request", "daemon-builtin", "bare-server",
     "server_cpu_us", 64),
    ("daemon-builtin / daemon-builtin@base, server CPU per request", "daemon-builtin",
     "daemon-builtin@base", "server_cpu_us", 64),
    ("bare-server / c-server, server CPU per request", "bare-server", "c-server",
     "server_cpu_us", 64),
)
_names = itertools.count()
Measure = Callable[[int, int], dict]


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}-{next(_names)}-"


def extract_baseline(rev: str) -> None:
    """request_key_daemon as it was at ``rev``, into BASELINE/."""
    import shutil

    shutil.rmtree(BASELINE, ignore_errors=True)
    BASELINE.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev,
                              "userspace/request_key_daemon"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(BASELINE)], input=archive, check=True)


def compile_c() -> None:
    """bench/c/*.c into bench/build/, against the patched uapi headers."""
    sys.path.insert(0, str(ROOT))
    from kcont._cffi_src.build import uapi_headers

    C_BUILD.mkdir(exist_ok=True)
    for program in (LOAD, MECH_SERVER):
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-Wall", "-Wextra", "-Werror",
                        "-pthread", "-I", str(uapi_headers()), "-o", str(program),
                        str(C_SOURCES / f"{program.name}.c")], check=True)


# ------------------------------------------------------------ requesters

def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (schedstat, ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):   # a thread ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def with_server_cpu(measure: Measure, server: int) -> Measure:
    """``measure``, plus the CPU time ``server`` spent per request meanwhile."""
    def measured(concurrency: int, count: int) -> dict:
        before = cpu_ns(server)
        result = measure(concurrency, count)
        result["server_cpu_us"] = round((cpu_ns(server) - before) / 1e3 / result["n"], 1)
        return result
    return measured


def run_load(box, mode: str, prefix: str, concurrency: int,  # type: ignore[no-untyped-def]
             count: int) -> dict:
    """upcall_load in ``box`` (a member of it), or here if ``box`` is None."""
    argv = [str(LOAD), mode, str(concurrency), str(count), unique(prefix)]
    if box is None:
        return json.loads(subprocess.run(argv, check=True, capture_output=True,
                                         text=True, timeout=600).stdout)
    rfd, wfd = os.pipe()
    pid = box.fork()
    if pid == 0:
        try:
            os.dup2(wfd, 1)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(wfd)
    with os.fdopen(rfd) as report:
        out = report.read()
    status = box.wait(pid)
    if status != 0:
        raise SystemExit(f"upcall_load {mode} {prefix} in {box.name}: wait status {status}")
    return json.loads(out)


def python_load(one: Callable[[str], None], prefix: str, concurrency: int,
                count: int) -> dict:
    """``count`` calls of ``one`` from ``concurrency`` Python threads (the floor)."""
    per_thread = count // concurrency
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
    return {"n": len(latencies), "p50_ms": round(statistics.median(latencies) * 1e3, 4),
            "p99_ms": round(latencies[math.ceil(0.99 * len(latencies)) - 1] * 1e3, 4),
            "per_s": round(len(latencies) / wall, 1)}


def make_floor(auth: int) -> Callable[[str], None]:
    """The served path's nine keyctl calls on the pending request ``auth``:
    add_key() of the payload (standing in for request_key()'s making of
    the key); query, assume the authority, read the callout, describe,
    drop the authority; a link and an unlink (the delivery into the queue
    and a server's unlink); the requester's read of the payload."""
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


# --------------------------------------------------------------- servers

class HeldRequests:
    """Requests held pending for the floor: members of ``box`` blocked in
    request_key() on a record nobody serves.  Each floor measurement takes
    a new one, since an unserved request ends at kernel.keys.
    intercept_timeout (30 s by default)."""

    def __init__(self, box) -> None:  # type: ignore[no-untyped-def]
        from kcont.keys import SESSION, Keyring

        self.box = box
        # The container's init, which outlives the requesters killed here.
        self.init = box.spawn(["sleep", "infinity"])
        self.queue = Keyring(SESSION).add_keyring(unique("kcont-floor-queue-"))
        box.intercept("user", queue=self.queue.serial)
        self.seen: set[int] = set()

    def measure(self, concurrency: int, count: int) -> dict:
        """The floor's loop on a fresh held request."""
        pid, auth = self._hold()
        try:
            return python_load(make_floor(auth), PREFIXES["floor"], concurrency, count)
        finally:
            os.kill(pid, 9)
            self.box.wait(pid)

    def _hold(self) -> tuple[int, int]:
        pid = self.box.fork()
        if pid == 0:
            from kcont.keys import Keyring, request_key
            Keyring.join_session()
            try:
                request_key("user", unique("kcont-held:"), "x")
            finally:
                os._exit(0)
        for _ in range(500):
            fresh = [key.serial for key in self.queue.linked() if key.serial not in self.seen]
            if fresh:
                self.seen.add(fresh[0])
                return pid, fresh[0]
            time.sleep(0.01)
        raise SystemExit("the held request never reached its queue")


def wait_ready(ready_r: int, what: str) -> None:
    """Wait up to 120 s for the readiness byte on ``ready_r``, then close it."""
    try:
        if not select.select([ready_r], [], [], 120)[0] or os.read(ready_r, 1) != b"R":
            raise SystemExit(f"{what} did not become ready")
    finally:
        os.close(ready_r)


def start_member(box, what: str, argv: Callable[[int], list[str]],  # type: ignore[no-untyped-def]
                 log: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Exec ``argv(ready_fd)`` as the first member of ``box`` (its stderr to
    ``log`` if given, its environment ``env`` if given) and wait for its
    readiness byte."""
    ready_r, ready_w = os.pipe()
    pid = box.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            if log is not None:
                os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
            os.set_inheritable(box.fd, True)
            os.set_inheritable(ready_w, True)
            args = argv(ready_w)
            os.execve(args[0], args, os.environ if env is None else env)
        finally:
            os._exit(127)
    os.close(ready_w)
    wait_ready(ready_r, what)
    return pid


def daemon_argv(box, confdir: Path) -> Callable[[int], list[str]]:  # type: ignore[no-untyped-def]
    """request-key-daemon serving ``box``.  Its log lines (stderr) go to a
    file on tmpfs, as to a log file when deployed: the guest's own stderr
    is a virtio console port, which under TCG costs more per line than
    serving the request."""
    from request_key_daemon import launch

    return lambda ready: launch.argv(box.fd, ready, ["--workers", "16",
                                                     "--config-dir", str(confdir)])


def bare_argv(box) -> Callable[[int], list[str]]:  # type: ignore[no-untyped-def]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from bare_server import "
            "serve_forever; serve_forever(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))")
    return lambda ready: [sys.executable, "-c", code, str(ROOT / "bench"), str(box.fd),
                          unique("kcont-bench-bare-"), str(ready)]


def mech_argv(box) -> Callable[[int], list[str]]:  # type: ignore[no-untyped-def]
    return lambda ready: [str(MECH_SERVER), str(box.fd), str(ready),
                          unique("kcont-bench-mech-")]


# ----------------------------------------------------------------- rounds

def summarise(rounds: list[dict]) -> dict:
    """The median over rounds of each measure, and the rounds themselves."""
    return {**{k: round(statistics.median(r[k] for r in rounds), 4)
               for k in ("p50_ms", "p99_ms", "per_s", "server_cpu_us") if k in rounds[0]},
            "n": sum(r["n"] for r in rounds), "rounds": rounds}


def ratio(rounds: list[dict[str, dict[int, dict]]], top: str, bottom: str, measure: str,
          conc: int) -> tuple[float, list[float]]:
    per_round = [r[top][conc][measure] / r[bottom][conc][measure] for r in rounds]
    return round(statistics.median(per_round), 3), [round(x, 3) for x in per_round]


def judge(rounds: list[dict[str, dict[int, dict]]]) -> tuple[list[dict], list[dict]]:
    """Every target and reported ratio whose two paths were measured."""
    measured = set(rounds[0])
    targets = []
    for name, top, bottom, measure, conc, target, sense in TARGETS:
        if not {top, bottom} <= measured:
            continue
        value, per_round = ratio(rounds, top, bottom, measure, conc)
        met = value >= target if sense == "min" else value <= target
        targets.append({"name": name, "requesters": conc, "ratio": value,
                        "target": f"{'>=' if sense == 'min' else '<='} {target}", "met": met,
                        "per_round": per_round})
    reported = []
    for name, top, bottom, measure, conc in REPORTED:
        if not {top, bottom} <= measured:
            continue
        value, per_round = ratio(rounds, top, bottom, measure, conc)
        reported.append({"name": name, "requesters": conc, "ratio": value,
                         "per_round": per_round})
    return targets, reported


def guest(rounds_n: int, only: list[str], baseline: bool) -> dict:
    from kcont.container import Container
    from kcont.keys import Keyring

    Keyring.join_session()
    # On tmpfs, as /etc is on a local file system in a container, not in
    # the guest's /tmp, an overlay on the host's 9p root.
    work = Path(tempfile.mkdtemp(prefix="kcont-bench-", dir="/run"))
    conf = work / "request-key.conf"
    conf.write_text(f"create user {PREFIXES['classic']}* * {LINE}\n"
                    + Path("/etc/request-key.conf").read_text())
    confdir = work / "daemon"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text(
        f"create user {PREFIXES['daemon-exec']}* * {LINE}\n"
        f"create user {PREFIXES['daemon-builtin']}* * @static payload\n"
        f"create user {PREFIXES['daemon-builtin@base']}* * @static payload\n")
    subprocess.run(["mount", "--bind", str(conf), "/etc/request-key.conf"], check=True)
    daemon_log = Path("/run/kcont-bench-daemon.log")     # tmpfs
    boxes = {name: Container(f"kcont-bench-{name}", trusted=False)
             for name in ("daemon", "bare", "mech", "held", "base")}
    servers = [(boxes["daemon"], start_member(boxes["daemon"], "request-key-daemon",
                                              daemon_argv(boxes["daemon"], confdir),
                                              daemon_log)),
               (boxes["bare"], start_member(boxes["bare"], "the bare server",
                                            bare_argv(boxes["bare"]))),
               (boxes["mech"], start_member(boxes["mech"], "the C server",
                                            mech_argv(boxes["mech"])))]
    held = HeldRequests(boxes["held"])
    servers.append((boxes["held"], held.init))
    if baseline:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(BASELINE / "userspace"), os.environ.get("PYTHONPATH", "")])}
        servers.append((boxes["base"], start_member(
            boxes["base"], "the baseline daemon", daemon_argv(boxes["base"], confdir),
            Path("/run/kcont-bench-daemon-base.log"), env)))
    pid_of = {box.name: pid for box, pid in servers}
    paths: dict[str, Measure] = {
        "classic": lambda c, n: run_load(None, "request", PREFIXES["classic"], c, n),
        "daemon-exec": lambda c, n: run_load(boxes["daemon"], "request",
                                             PREFIXES["daemon-exec"], c, n),
        "daemon-builtin": with_server_cpu(lambda c, n: run_load(
            boxes["daemon"], "request", PREFIXES["daemon-builtin"], c, n),
            pid_of[boxes["daemon"].name]),
        "bare-server": with_server_cpu(lambda c, n: run_load(
            boxes["bare"], "request", PREFIXES["bare-server"], c, n),
            pid_of[boxes["bare"].name]),
        "c-server": with_server_cpu(lambda c, n: run_load(
            boxes["mech"], "request", PREFIXES["c-server"], c, n), pid_of[boxes["mech"].name]),
        "seccomp": lambda c, n: run_load(None, "seccomp", PREFIXES["seccomp"], c, n),
        "floor": held.measure,
        "kernel-only": lambda c, n: run_load(None, "add", PREFIXES["kernel-only"], c, n),
    }
    if baseline:
        paths["daemon-builtin@base"] = with_server_cpu(lambda c, n: run_load(
            boxes["base"], "request", PREFIXES["daemon-builtin@base"], c, n),
            pid_of[boxes["base"].name])
    wanted = [*only, "daemon-builtin@base"] if only else []
    names = [name for name in paths if not wanted or name in wanted]
    rounds: list[dict[str, dict[int, dict]]] = []
    try:
        for index in range(rounds_n):
            order = names[index % len(names):] + names[:index % len(names)]
            this: dict[str, dict[int, dict]] = {name: {} for name in names}
            for conc in CONCURRENCY:
                for name in order:
                    count = REQUESTS["slow" if name in SLOW else "fast"][conc]
                    this[name][conc] = paths[name](conc, count)
            rounds.append(this)
            print(f"round {index + 1}/{rounds_n}: " + ", ".join(
                f"{name} {this[name][1]['p50_ms']:.3f}" for name in names), flush=True)
    finally:
        for box, pid in servers:
            os.kill(pid, 15)
            box.wait(pid)
        for box in boxes.values():
            box.close()
        subprocess.run(["umount", "/etc/request-key.conf"], check=False)
    results = {name: {str(conc): summarise([r[name][conc] for r in rounds])
                      for conc in CONCURRENCY} for name in names}
    targets, reported = judge(rounds)
    return {"kernel": os.uname().release, "rounds": rounds_n, "requests": REQUESTS,
            "results": results, "targets": targets, "reported": reported,
            "daemon_log_lines": len(daemon_log.read_text().splitlines())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="perf")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--paths", nargs="+", choices=list(PREFIXES), default=[],
                        metavar="PATH", help="measure only these paths (default: all); "
                        "the results go to bench/results/upcall.partial.json")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure request-key-daemon as it was at git revision REV")
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.guest:
        report_from_guest(guest(opts.rounds, opts.paths, bool(opts.baseline)), "upcall.json")
        return 0
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm.build import build

    bzimage = build(opts.profile).bzimage
    compile_c()
    if opts.baseline:
        extract_baseline(opts.baseline)
    data = run_in_guest(bzimage, opts.profile, Path(__file__),
                        ["--rounds", str(opts.rounds),
                         *(["--paths", *opts.paths] if opts.paths else []),
                         *(["--baseline", opts.baseline] if opts.baseline else [])],
                        "upcall.json")
    name = "upcall.partial.json" if opts.paths else "upcall.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(data, indent=1) + "\n")
    for target in data["targets"]:
        print(f"{target['name']} at {target['requesters']}: {target['ratio']} "
              f"(target {target['target']}: {'met' if target['met'] else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
