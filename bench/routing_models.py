"""What each routing model costs: the route, the round trip, a registration.

USAGE: .venv/bin/python bench/routing_models.py [--requests 30] [--rounds 3]

Boots the perf kernel once and runs this file in the guest with
``--guest``.  For each routing model and each depth (1 and 8), a member
``depth`` levels down (nested containers; nested user namespaces for the
models that need them) makes ``--requests`` requests per round:

- container: the record is on the outermost container (the walk climbs
  ``depth`` levels);
- userns-walk: the registration is the outermost container's user
  namespace's, which the nested containers share (the harness's
  containers write no uid maps, so they cannot nest user namespaces):
  the walk finds it in the requester's own user namespace at any depth;
- userns-intercept: the registration is the requester's user
  namespace's, made by the requester's own container, pinning its
  namespaces (no walk);
- helper-in-context: nothing registered; the helper is forked from the
  requester.

The bench process serves the intercepted requests as a daemon would.
Measured: the time the kernel spends in key_upcall_route() (ftrace's
function_graph, which times that one function: the routing decision, and
the delivery into the queue where there is one) and the requester's
round trip (request_key() until the key is usable).  Rounds interleave
the models so that the machine's noise falls on all alike; reported are
medians and their ratios to the container model at depth 1, per round
and the median of those.  Memory per registration: the growth of the
kmalloc caches over 64 registrations, per registration.

Results: bench/results/routing_models.json, plotted by bench/plots.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from guest_run import report_from_guest, run_in_guest  # noqa: E402

MODELS = ("container", "userns-walk", "userns-intercept", "helper-in-context")
DEPTHS = (1, 8)
TRACING = Path("/sys/kernel/tracing")
# unique() prefixes "kcont-mark:"; request-key.conf takes one trailing "*".
HELPER_CONF = "create user kcont-mark:kcont-rm-* * /bin/keyctl instantiate %k ctx %S\n"


# ---------------------------------------------------------------- guest side

def _guest_imports() -> None:
    for path in ("tests/guest", "tests", "."):
        sys.path.insert(0, str(ROOT / path))


@contextmanager
def route_timer() -> Iterator[Path]:
    """function_graph on key_upcall_route only; yields the trace file."""
    if not (TRACING / "trace").exists():
        os.system(f"mount -t tracefs nodev {TRACING}")
    (TRACING / "tracing_on").write_text("0")
    (TRACING / "set_graph_function").write_text("key_upcall_route")
    (TRACING / "set_ftrace_filter").write_text("key_upcall_route")
    (TRACING / "current_tracer").write_text("function_graph")
    (TRACING / "max_graph_depth").write_text("1")
    try:
        yield TRACING / "trace"
    finally:
        (TRACING / "tracing_on").write_text("0")
        (TRACING / "current_tracer").write_text("nop")
        (TRACING / "set_graph_function").write_text("")
        (TRACING / "set_ftrace_filter").write_text("")
        (TRACING / "max_graph_depth").write_text("0")


DURATION = re.compile(r"([0-9.]+) us\s+\|\s+key_upcall_route\(\);")


def route_durations(trace: Path) -> list[float]:
    return [float(m.group(1)) for m in DURATION.finditer(trace.read_text())]


class World:
    """A chain of ``depth`` containers and the registration of one model."""

    def __init__(self, model: str, depth: int, session: object, stack: ExitStack) -> None:
        from agents import Agent

        from kcont.container import Container, Flag, namespace_flags

        # The outermost container has a user namespace of its own under the
        # user-namespace models; nested ones cannot (the harness's
        # containers write no uid maps, and an unmapped creator may not
        # make a user namespace), so they share it.
        outer_ns = {"uts", "user"} if model != "container" else {"uts"}
        ns = {"uts"}
        self.agents: list[Agent] = []
        box = Container(f"kcont-rm-{model}-{depth}", ns=outer_ns, trusted=False)
        stack.callback(box.close)
        for level in range(depth):
            agent = Agent(box)
            stack.callback(agent.stop)
            self.agents.append(agent)
            if level + 1 < depth:
                box = agent.create(f"kcont-rm-{model}-{depth}-{level}",
                                   namespace_flags(ns) | Flag.UNTRUSTED)
                stack.callback(box.close)
        self.queue = None
        if model == "helper-in-context":
            return
        ring = session.add_keyring(f"kcont-rmq-{model}-{depth}")  # type: ignore[attr-defined]
        ring.setperm(0x3F3F0000)
        self.queue = ring
        if model == "container":
            outer = self.agents[0].container
            outer.intercept("user", queue=ring.serial)
            stack.callback(outer.remove_intercepts)
            return
        registrar = self.agents[0] if model == "userns-walk" else self.agents[-1]
        registrar.possess(ring.serial)
        mask = 0 if model == "userns-walk" else 0x3F & ~0x08  # all but pid and user
        registrar.call("userns_intercept_own", "user", mask, ring.serial)

    @property
    def requester(self):  # type: ignore[no-untyped-def]
        return self.agents[-1]


def serve_forever(queues: list[object], stop: threading.Event) -> None:
    """Serve whatever lands in the queues, as a daemon would."""
    from upcall_fixtures import serve

    from kcont.keys import Keyring

    seen: set[int] = set()
    while not stop.is_set():
        busy = False
        for ring in queues:
            for key in Keyring(ring.serial).linked():  # type: ignore[attr-defined]
                if key.serial in seen:
                    continue
                seen.add(key.serial)
                busy = True
                with suppress(OSError):
                    serve(key.serial, payload="served")
        if not busy:
            time.sleep(0.001)


def measure(world: World, requests: int, trace: Path) -> tuple[list[float], list[float]]:
    """Route durations (us) and round trips (us) of ``requests`` requests."""
    from upcall_fixtures import unique

    (TRACING / "trace").write_text("")
    (TRACING / "tracing_on").write_text("1")
    descs = [unique("kcont-rm-") for _ in range(requests)]
    rtt = []
    for desc in descs:
        start = time.perf_counter()
        result = world.requester.request("user", desc).result()
        rtt.append((time.perf_counter() - start) * 1e6)
        assert "serial" in result, result
    (TRACING / "tracing_on").write_text("0")
    return route_durations(trace), rtt


def slab_bytes() -> int:
    """Bytes in the kmalloc caches (active objects x size): the accounted
    ones where the kernel has a memory controller, the plain ones else."""
    total = 0
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        fields = line.split()
        if fields[0].startswith("kmalloc-") and not fields[0].startswith("kmalloc-rcl"):
            total += int(fields[1]) * int(fields[3])
    return total


def registration_memory(model: str, session: object, count: int = 64) -> float:
    """Slab growth per registration, over ``count`` registrations."""
    from agents import Agent

    from kcont.container import Container

    with ExitStack() as stack:
        boxes = []
        for i in range(count // 16):
            box = Container(f"kcont-rm-mem-{model}-{i}", ns={"user", "uts"}, trusted=False)
            stack.callback(box.close)
            agent = Agent(box)
            stack.callback(agent.stop)
            boxes.append((box, agent))
        rings = []
        for i in range(count):
            ring = session.add_keyring(f"kcont-rm-mem-{i}")  # type: ignore[attr-defined]
            ring.setperm(0x3F3F0000)
            rings.append(ring)
        before = slab_bytes()
        for i, ring in enumerate(rings):
            box, agent = boxes[i // 16]
            if model == "container":
                box.intercept("user", queue=ring.serial)
            else:
                mask = 0x10 if model == "userns-intercept" else 0
                agent.call("userns_intercept_own", "user", mask, ring.serial)
        grown = slab_bytes() - before
        for box, _ in boxes:
            if model == "container":
                box.remove_intercepts()
        for ring in rings:
            ring.revoke()
    # The registrations go with their queues; guest() waits for that
    # before it selects the next model.
    return grown / count


def guest(opts: argparse.Namespace) -> dict:
    _guest_imports()
    from upcall_fixtures import host_request_key_conf, sysctl

    from kcont.keys import Keyring

    session = Keyring.join_session()
    route_us: dict[str, list[list[float]]] = {}
    rtt_us: dict[str, list[list[float]]] = {}
    memory: dict[str, float] = {}
    with sysctl("kernel.unprivileged_userns_clone", "1"), \
            host_request_key_conf(HELPER_CONF), route_timer() as trace:
        for round_no in range(opts.rounds):
            for model in MODELS:
                _select(model)
                for depth in DEPTHS:
                    name = f"{model}@{depth}"
                    with ExitStack() as stack:
                        world = World(model, depth, session, stack)
                        stop = threading.Event()
                        queues = [world.queue] if world.queue is not None else []
                        server = threading.Thread(target=serve_forever, args=(queues, stop))
                        server.start()
                        try:
                            routes, rtts = measure(world, opts.requests, trace)
                        finally:
                            stop.set()
                            server.join()
                        if world.queue is not None:
                            world.queue.revoke()
                    route_us.setdefault(name, []).append(routes)
                    rtt_us.setdefault(name, []).append(rtts)
                _back_to_container()
                print(f"round {round_no + 1}: {model} done", flush=True)
        for model in MODELS[:3]:
            _select(model)
            memory[model] = registration_memory(model, session)
            _back_to_container()
    return summarise(route_us, rtt_us, memory, opts)


def _select(model: str) -> None:
    """Put ``model`` in force once the last world's registrations are gone
    (a user namespace's go with their queue keyring), as the guest tests
    do."""
    from design_catalogue import select_when_unregistered

    select_when_unregistered(model, False, timeout=20.0)


def _back_to_container() -> None:
    _select("container")


def summarise(route_us: dict[str, list[list[float]]], rtt_us: dict[str, list[list[float]]],
              memory: dict[str, float], opts: argparse.Namespace) -> dict:
    """Medians per round, and each one's ratio to container@1 of the same round."""
    def per_round(data: dict[str, list[list[float]]]) -> dict[str, list[float]]:
        return {name: [statistics.median(r) if r else float("nan") for r in rounds]
                for name, rounds in data.items()}

    route_med, rtt_med = per_round(route_us), per_round(rtt_us)

    def ratio(med: dict[str, list[float]], name: str) -> float:
        base = med["container@1"]
        return round(statistics.median(m / b for m, b in zip(med[name], base, strict=True)), 3)

    return {
        "requests_per_round": opts.requests, "rounds": opts.rounds,
        "route_us_median": {n: round(statistics.median(v), 2) for n, v in route_med.items()},
        "rtt_us_median": {n: round(statistics.median(v), 1) for n, v in rtt_med.items()},
        "route_ratio_to_container_at_1": {n: ratio(route_med, n) for n in route_med},
        "rtt_ratio_to_container_at_1": {n: ratio(rtt_med, n) for n in rtt_med},
        "route_us_per_round": route_med, "rtt_us_per_round": rtt_med,
        "registration_bytes": {m: round(b) for m, b in memory.items()},
    }


# ----------------------------------------------------------------- host side

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="per model, depth and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.guest:
        report_from_guest(guest(opts), "routing_models.json")
        return 0
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm import build as kbuild

    image = kbuild.build("perf").bzimage
    report = run_in_guest(image, "perf", Path(__file__),
                          ["--requests", str(opts.requests), "--rounds", str(opts.rounds)],
                          "routing_models.json")
    out = ROOT / "bench" / "results" / "routing_models.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("route_ratio_to_container_at_1",
                                             "rtt_ratio_to_container_at_1",
                                             "registration_bytes")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
