"""The attacker with a loop: container chains, container floods, request floods.

Containers are kernel memory that a task creates at will, so they are
bounded and accounted as user namespaces are: at most 32 levels deep,
at most ``/proc/sys/user/max_containers`` per user (charged up the user
namespace tree), in the creator's memory cgroup.  Pending requests are
bounded by the requesters' key quota, and thousands of them cost nothing
to the rest of the system: a revoke, invalidate or clear of an unrelated
keyring looks only at its own bucket of the pending requests' index.
"""

from __future__ import annotations

import errno
import json
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from agents import Agent
from cgroups import cgroup2_group
from containers import run_child
from upcall_fixtures import sysctl, tracefs, unique, wait_queued

from kcont import upcalls
from kcont.container import Container, clone_into, create_raw
from kcont.keys import Keyring

MAX_DEPTH = 32
MAX_CONTAINERS = Path("/proc/sys/user/max_containers")


def chain(levels: int) -> dict[str, int]:
    """Create a container, enter it, and so on, ``levels`` times: where the
    chain stopped and why (``errno`` 0 if every level was made).  Each
    level is a process, the init of its container, waiting for the next."""
    top = os.getpid()
    rfd, wfd = os.pipe()
    made = 0
    while True:
        if made == levels:
            os.write(wfd, json.dumps({"made": made, "errno": 0}).encode())
            break
        try:
            fd = create_raw(f"chain{made + 1}", 0)
        except OSError as err:
            os.write(wfd, json.dumps({"made": made, "errno": err.errno}).encode())
            break
        made += 1
        pid = clone_into(fd)
        os.close(fd)
        if pid:
            os.waitpid(pid, 0)
            break
    if os.getpid() != top:
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as report:
        result: dict[str, int] = json.loads(report.read())
    return result


def test_a_container_chain_stops_at_32_levels() -> None:
    """Each member creates a container and enters it: level 33 is refused
    with ENOSPC, as a 33rd user namespace level is."""
    result = run_child(os.fork, lambda: chain(MAX_DEPTH + 8))
    assert result == {"made": MAX_DEPTH, "errno": errno.ENOSPC}


@contextmanager
def max_containers(limit: int) -> Iterator[None]:
    old = MAX_CONTAINERS.read_text()
    MAX_CONTAINERS.write_text(str(limit))
    try:
        yield
    finally:
        MAX_CONTAINERS.write_text(old)


def flood(limit: int) -> dict[str, int]:
    """Create containers (keeping every fd) until refused."""
    fds = []
    try:
        for _ in range(limit + 16):
            fds.append(create_raw("flood", 0))
        return {"made": len(fds), "errno": 0}
    except OSError as err:
        return {"made": len(fds), "errno": err.errno}
    finally:
        for fd in fds:
            os.close(fd)


def test_a_container_flood_stops_at_the_users_limit() -> None:
    """A user's containers count against user.max_containers: the flood is
    refused with ENOSPC at the limit, and closing them gives the count
    back (a second flood gets as far)."""
    with max_containers(64):
        first = run_child(os.fork, lambda: flood(64))
        time.sleep(0.5)  # the last put frees a container from a work item
        second = run_child(os.fork, lambda: flood(64))
    assert first["errno"] == errno.ENOSPC and first["made"] <= 64, first
    assert second == first


MEMCG_FLOOD = 512


def accounted_kmallocs() -> dict[str, int]:
    """Objects in use per ``kmalloc-cg-*`` cache: the kmallocs charged to a
    memory cgroup (GFP_KERNEL_ACCOUNT) and no others.  Each cache is shrunk
    first (its per-cpu slabs flushed, KASAN's quarantine of it emptied),
    so that what is counted is live objects."""
    for cache in Path("/sys/kernel/slab").glob("kmalloc-cg-*"):
        (cache / "shrink").write_text("1")
    counts = {}
    for line in Path("/proc/slabinfo").read_text().splitlines()[2:]:
        name, active = line.split()[:2]
        if name.startswith("kmalloc-cg-"):
            counts[name] = int(active)
    return counts


def object_size(cache: str) -> int:
    """The object size a ``kmalloc-cg-96`` or ``kmalloc-cg-8k`` name says."""
    size = cache.removeprefix("kmalloc-cg-")
    return int(size[:-1]) * 1024 if size.endswith("k") else int(size)


def slab_bytes(group: Path) -> int:
    """Unreclaimable slab charged to ``group``, its statistics flushed."""
    time.sleep(2.5)  # memcg flushes its per-cpu statistics every 2 s
    for line in (group / "memory.stat").read_text().splitlines():
        key, value = line.split()
        if key == "slab_unreclaimable":
            return int(value)
    raise AssertionError(f"no slab_unreclaimable in {group}/memory.stat")


def grown_by_one_each(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The caches that grew by (nearly) one object per item of the flood:
    objects that earlier tests freed may leave them meanwhile."""
    return {name: after.get(name, 0) - count for name, count in before.items()
            if after.get(name, 0) - count >= MEMCG_FLOOD * 0.8}


def memcg_flood(group: Path, queue: int) -> dict[str, object]:
    """In ``group``: make MEMCG_FLOOD containers, then a record on each,
    then drop them all; the accounted caches that grew, and the group's
    slab after each step."""
    (group / "cgroup.procs").write_text(str(os.getpid()))
    steps: dict[str, object] = {"slab0": slab_bytes(group)}
    objects = accounted_kmallocs()
    fds = [create_raw("memcg", 0) for _ in range(MEMCG_FLOOD)]
    steps["slab1"] = slab_bytes(group)
    steps["containers"] = grown_by_one_each(objects, objects := accounted_kmallocs())
    for fd in fds:
        upcalls.intercept(fd, "user", 0, queue)
    steps["slab2"] = slab_bytes(group)
    steps["records"] = grown_by_one_each(objects, accounted_kmallocs())
    for fd in fds:
        os.close(fd)
    time.sleep(1)  # the last put frees a container from a work item
    steps["slab3"] = slab_bytes(group)
    return steps


def test_a_members_containers_and_records_are_charged_to_its_memory_cgroup(
        queue: Keyring) -> None:
    """A member that floods containers and records pays for them in its
    own memory cgroup, as for user namespaces.  Each container is an
    accounted kmalloc of its own size (a ``kmalloc-cg-*`` cache of objects
    of 256 bytes or more grows by one object per container: the struct,
    not just its small key domain, whose count other tests' frees can
    blur), each record one; the member's group is charged the records'
    size (a record is the only thing adding one allocates), and freeing
    them all gives the charge back."""
    with cgroup2_group("kcont-adv-memcg", "memory", {}) as group:
        steps = run_child(os.fork, lambda: memcg_flood(group, queue.serial))
    # The struct container itself (1k here), not only its 32-byte key domain.
    assert any(object_size(cache) >= 256 for cache in steps["containers"]), \
        f"containers not accounted: {steps}"
    assert steps["records"], f"records not accounted: {steps}"
    record_size = max(object_size(cache) for cache in steps["records"])
    charged = steps["slab2"] - steps["slab1"]
    assert charged >= 0.9 * MEMCG_FLOOD * record_size, \
        f"{charged} bytes charged to the member for its records: {steps}"
    assert steps["slab3"] - steps["slab0"] < (steps["slab2"] - steps["slab0"]) / 2, \
        f"charge kept after free: {steps}"


SWEEP = "key_intercept_queue_gone"


@contextmanager
def sweep_timer() -> Iterator[Callable[[], list[float]]]:
    """Time every call of the revoke/invalidate/clear sweep with ftrace's
    function_graph tracer (top-level only in 6.1): a function that reads
    the durations (us) since its last call.  The hook's own time, not the
    revoke's, so that the machine's noise does not hide its cost."""
    tracing = tracefs()
    tracer = (tracing / "current_tracer").read_text().strip()
    functions = (tracing / "set_ftrace_filter").read_text()
    pattern = re.compile(r"([\d.]+) us\s*\|\s*" + SWEEP + r"\(\);")

    def durations() -> list[float]:
        text = (tracing / "trace").read_text()
        (tracing / "trace").write_text("")
        return [float(m.group(1)) for m in pattern.finditer(text)]

    try:
        (tracing / "set_ftrace_filter").write_text(SWEEP)
        (tracing / "current_tracer").write_text("function_graph")
        (tracing / "trace").write_text("")
        yield durations
    finally:
        (tracing / "current_tracer").write_text(tracer)
        # An empty filter reads as a comment ("all functions enabled").
        (tracing / "set_ftrace_filter").write_text(
            "" if functions.startswith("#") else functions)


def revoke_unrelated(session: Keyring, count: int) -> None:
    for i in range(count):
        session.add_keyring(f"adv-unrelated-{i}").revoke()


def test_thousands_of_pending_requests_cost_unrelated_revokes_nothing(
        session_keyring: int, queue: Keyring) -> None:
    """1000 requests pending on one container's queue: the sweep that
    every revoke in the system runs looks up the revoked keyring's own
    requests, so for keyrings that are not queues it takes as long as
    with none pending (10th percentile of 200 revokes each, timed by
    ftrace, a ratio under 3; the old walk of all 1000 took 12x).  The
    index hashes each request by its queue into 64 buckets, so a keyring
    whose hash shares the queue's bucket (1 in 64) still walks the
    queue's requests: the 10th percentile is the typical revoke.  Every
    request is answered (ENOKEY) when the record goes."""
    scratch = Keyring(session_keyring).add_keyring("adv-scratch")
    with ExitStack() as stack:
        stack.enter_context(sysctl("kernel.keys.intercept_timeout", "120"))
        durations = stack.enter_context(sweep_timer())
        revoke_unrelated(scratch, 50)  # warm-up: the traced code's first runs
        durations()
        revoke_unrelated(scratch, 200)
        idle = durations()
        c = stack.enter_context(Container("adv-flood"))
        c.intercept("user", queue=queue.serial)
        agent = Agent(c)
        stack.callback(agent.stop)
        pending = agent.request("user", [unique("adv-flood") for _ in range(1000)])
        assert len(wait_queued([queue], 1000, timeout=120)[queue.serial]) == 1000
        durations()
        revoke_unrelated(scratch, 200)
        loaded = durations()
        c.remove_intercepts()  # every request ends (ENOKEY) while its requester lives
        results = pending.results(timeout=300)
    assert len(idle) >= 200 and len(loaded) >= 200, (len(idle), len(loaded))
    # The 10th percentile: a vCPU preempted by the host only adds time.
    fast_idle, fast_loaded = (statistics.quantiles(d, n=10)[0] for d in (idle, loaded))
    ratio = fast_loaded / fast_idle
    print(f"sweep p10 {fast_idle:.1f} us idle, {fast_loaded:.1f} us with 1000 pending: "
          f"{ratio:.2f}x (medians {statistics.median(idle):.1f}, "
          f"{statistics.median(loaded):.1f} us)")
    assert ratio < 3.0, (f"the sweep took {ratio:.1f}x as long with 1000 requests pending "
                         f"({fast_loaded:.1f} us against {fast_idle:.1f} us)")
    assert {r.get("errno") for r in results} == {errno.ENOKEY}
