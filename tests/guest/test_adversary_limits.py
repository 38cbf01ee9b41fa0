"""The attacker with a loop: container chains, container floods, request floods.

Containers are kernel memory that a task creates at will, so they are
bounded and accounted as user namespaces are: at most 32 levels deep,
at most ``/proc/sys/user/max_containers`` per user (charged up the user
namespace tree), in the creator's memory cgroup.  Pending requests are
bounded by the requesters' key quota, and thousands of them cost nothing
to the rest of the system: a revoke, invalidate or clear of an unrelated
keyring looks only at the requests queued on that keyring.
"""

from __future__ import annotations

import errno
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from agents import Agent
from containers import run_child
from upcall_fixtures import sysctl, unique, wait_queued

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


def revokes_per_second(session: Keyring, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        session.add_keyring(f"adv-unrelated-{i}").revoke()
    return count / (time.perf_counter() - start)


def test_thousands_of_pending_requests_cost_unrelated_revokes_nothing(
        session_keyring: int, queue: Keyring) -> None:
    """1000 requests pending on one container's queue: revoking keyrings
    that are not queues runs as fast as with none pending (the sweep looks
    up the revoked keyring's own requests).  Measured in rounds before,
    during and after, as a ratio; every request is answered (ENOKEY)
    when the record goes."""
    session = Keyring(session_keyring)
    scratch = session.add_keyring("adv-scratch")
    idle, loaded = [], []
    with ExitStack() as stack:
        stack.enter_context(sysctl("kernel.keys.intercept_timeout", "120"))
        for _ in range(3):
            idle.append(revokes_per_second(scratch, 300))
        c = stack.enter_context(Container("adv-flood"))
        c.intercept("user", queue=queue.serial)
        agent = Agent(c)
        stack.callback(agent.stop)
        pending = agent.request("user", [unique("adv-flood") for _ in range(1000)])
        assert len(wait_queued([queue], 1000, timeout=120)[queue.serial]) == 1000
        for _ in range(3):
            loaded.append(revokes_per_second(scratch, 300))
        c.remove_intercepts()  # every request ends (ENOKEY) while its requester lives
        results = pending.results(timeout=300)
        stack.close()
    for _ in range(3):
        idle.append(revokes_per_second(scratch, 300))
    ratio = statistics.median(idle) / statistics.median(loaded)
    assert ratio < 2.0, f"revokes {ratio:.1f}x slower with 1000 requests pending"
    assert {r.get("errno") for r in results} == {errno.ENOKEY}
