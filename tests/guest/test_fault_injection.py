"""Every allocation failure on the series' new paths is a clean error.

Systematic fault injection, as syzkaller does it: writing N to
/proc/thread-self/fail-nth makes the Nth fault-injection point this
thread reaches fail (failslab or fail_page_alloc, both in the debug
profile, with sleeping allocations allowed to fail).  For each operation,
N runs from 1 until the operation no longer reaches an Nth point: every
allocation it makes has failed once.  Each failure must come back as a
documented errno, leave no half-made object behind (no container, record
or grant that answers afterwards), and the operation must work again at
once.  Kernel reports (KASAN, lockdep, WARN) and kmemleak leaks fail the
whole guest run, which the harness checks after the suite.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agents import Agent, Pending
from conftest import RESULTS
from fail_nth import NAMESPACE_FAULT_ERRNOS, faults_allowed, nth_failure
from upcall_fixtures import serve, unique

from kcont import upcalls
from kcont.container import NAMESPACE_FLAGS, Container, Flag, create_raw, fork_into
from kcont.keys import Keyring

MAX_POINTS = 20000      # more fault points than this in one call: a loop somewhere
KIND_OF_FLAG = {flag: kind for kind, flag in NAMESPACE_FLAGS.items()}
def points_to_try(dense: int, stride: int) -> Iterator[int]:
    """1..dense, then every ``stride``-th point: fork reaches thousands of
    fault points in the copy of a Python process, and the new code is in
    the first ones; the rest are sampled."""
    yield from range(1, dense + 1)
    n = dense
    while n < MAX_POINTS:
        n += stride
        yield n


def sweep(op: Callable[[], object], allowed: set[int], undo: Callable[[object], None],
          dense: int = MAX_POINTS, stride: int = 1, tail: int = 0) -> tuple[int, int]:
    """Fail each fault point of ``op`` in turn (with ``stride``, the first
    ``dense`` and the last ``tail`` each, every ``stride``-th between).
    Returns (fault points tried, failures that surfaced as an errno);
    asserts every errno is allowed."""
    tried, surfaced = sweep_points(op, allowed, undo, dense, stride, tail)
    name = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]
    REPORT[name] = {"fault_points": tried, "errors_returned": surfaced}
    return tried, surfaced


def sweep_points(op: Callable[[], object], allowed: set[int], undo: Callable[[object], None],
                 dense: int, stride: int, tail: int = 0) -> tuple[int, int]:
    surfaced = 0

    def fail_at(n: int) -> bool:
        nonlocal surfaced
        reached, outcome = nth_failure(n, op)
        if isinstance(outcome, OSError):
            assert outcome.errno in allowed, \
                f"fault point {n}: {errno.errorcode.get(outcome.errno or 0)} ({outcome})"
            surfaced += 1
        else:
            undo(outcome)
        return reached

    for tried, n in enumerate(points_to_try(dense, stride)):
        if not fail_at(n):
            # The last points (what the operation does after the sampled
            # middle, its own unwinding included) are each failed too.
            # The last one reached is between the previous sample and n.
            between = [m for m in range(max(dense + 1, n - stride - tail + 1), n)
                       if (m - dense) % stride]
            return tried + sum(fail_at(m) for m in between), surfaced
    pytest.fail(f"more than {MAX_POINTS} fault points")


def listed(name: str) -> bool:
    """Whether a container of that name is in /proc/containers."""
    return name in Path("/proc/containers").read_text()


REPORT: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    """Fault points and surfaced failures per operation, for
    docs/reliability.md: fault-injection.json in the run's results."""
    yield
    (RESULTS / "fault-injection.json").write_text(json.dumps(REPORT, indent=1) + "\n")


@pytest.fixture(autouse=True)
def _faults() -> Iterator[None]:
    with faults_allowed():
        yield


@pytest.mark.parametrize("kinds", [Flag(0), Flag.NEW_UTS_NS | Flag.NEW_IPC_NS | Flag.NEW_NET_NS,
                                   Flag.NEW_USER_NS | Flag.NEW_PID_NS | Flag.NEW_FS_NS,
                                   Flag.NEW_CGROUP_NS | Flag.UNTRUSTED])
def test_container_create(kinds: Flag) -> None:
    """ENOMEM, or what namespace creation of the same kinds gives.

    A new network namespace alone reaches about a thousand fault points
    (IPv6, AF_RXRPC and kAFS each set up per-namespace state; 511 without
    them), all in the networking core's own setup, and unwound by it before
    the container's code sees one error.  So with NEW_NET_NS the first 200
    points and the last 100 are each failed, every 5th between."""
    ns_errnos: set[int] = set()
    for flag, kind in KIND_OF_FLAG.items():
        if flag & kinds:
            ns_errnos |= NAMESPACE_FAULT_ERRNOS.get(kind, set())
    sampled = {"dense": 200, "stride": 5, "tail": 100} if kinds & Flag.NEW_NET_NS else {}
    points, surfaced = sweep(lambda: create_raw("kcont-fail", int(kinds)),
                             {errno.ENOMEM, errno.EMFILE, errno.ENFILE} | ns_errnos,
                             lambda fd: os.close(int(fd)),  # type: ignore[call-overload]
                             **sampled)
    assert points > 0, "container_create reached no fault point"
    assert surfaced > 0, "no injected failure came back as ENOMEM"
    assert not listed("kcont-fail"), "a failed container_create left a container"
    os.close(create_raw("kcont-after", int(kinds)))


def test_fork_into_container() -> None:
    with Container("kcont-fail-fork") as box:
        init = Agent(box)
        try:
            def fork() -> int:
                pid = fork_into(box.fd)
                if pid == 0:
                    os._exit(0)
                return pid

            points, _ = sweep(fork, {errno.ENOMEM, errno.EAGAIN},
                              lambda pid: os.waitpid(int(pid), 0),  # type: ignore[call-overload]
                              dense=150, stride=97)
            assert points > 0
            assert not box.dead, "a failed fork_into_container killed the container"
            os.waitpid(fork(), 0)
        finally:
            init.stop()


def test_intercept_record() -> None:
    session = Keyring.join_session()
    queue = session.add_keyring("kcont-fail-q")
    with Container("kcont-fail-rec", kill_on_close=True) as box:
        def add() -> int:
            upcalls.intercept(box.fd, "user", 0x3, queue.serial)
            return 1

        def remove(_: object) -> None:
            assert upcalls.remove_intercepts(box.fd, "user", 0x3) == 1

        points, surfaced = sweep(add, {errno.ENOMEM}, remove)
        assert points > 0 and surfaced > 0
        # No half-made record: nothing to remove, and adding works.
        assert upcalls.remove_intercepts(box.fd, "user", 0x3) == 0
        add()
        assert upcalls.remove_intercepts(box.fd, "user", 0x3) == 1


def test_grant() -> None:
    session = Keyring.join_session()
    key = session.add("user", "kcont-fail-grant", b"x")
    with Container("kcont-fail-grant", kill_on_close=True) as box:
        def grant() -> int:
            upcalls.grant(key.serial, box.fd, upcalls.Perm.VIEW | upcalls.Perm.SEARCH)
            return 1

        def revoke_grant(_: object) -> None:
            upcalls.grant(key.serial, box.fd, 0)

        points, _ = sweep(grant, {errno.ENOMEM}, revoke_grant)
        assert points > 0
        grant()
        revoke_grant(None)


def test_set_container_keyring() -> None:
    session = Keyring.join_session()
    with Container("kcont-fail-ckr", kill_on_close=True) as box:
        ring = session.add_keyring("kcont-fail-ckr")
        done: list[bool] = []

        def attach() -> int:
            upcalls.set_container_keyring(box.fd, ring.serial)
            done.append(True)
            return 1

        sweep(attach, {errno.ENOMEM, errno.EBUSY}, lambda _: None)
        assert done, "never attached"
        with pytest.raises(OSError) as again:
            attach()
        assert again.value.errno == errno.EBUSY


def test_intercepted_request() -> None:
    """request_key() routed to a record: the auth key, the pending entry and
    the link into the queue keyring.  A request the faults let through is
    served from the queue; one they stop ends with ENOMEM at once (never a
    request stuck in a queue, never a hang)."""
    session = Keyring.join_session()
    queue = session.add_keyring("kcont-fail-deliver")
    with Container("kcont-fail-req", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        member = Agent(box)
        try:
            surfaced = 0
            for n in range(1, MAX_POINTS):
                pending = member.request("user", unique("user"), fail_nth=n)
                pending.namespaces()
                result = _serve_or_wait(pending, queue)
                if "errno" in result:
                    assert result["errno"] == errno.ENOMEM, f"fault point {n}: {result}"
                    surfaced += 1
                else:
                    assert result.get("payload") == "served", f"fault point {n}: {result}"
                if not result["fault_reached"]:
                    break
            else:
                pytest.fail(f"more than {MAX_POINTS} fault points")
            REPORT["test_intercepted_request"] = {"fault_points": n - 1,
                                                  "errors_returned": surfaced}
            assert n > 1 and surfaced > 0
            assert not queue.linked(), "an auth key was left in the queue"
        finally:
            member.stop()


def _serve_or_wait(pending: Pending, queue: Keyring) -> dict[str, object]:
    """Serve the request if it reaches the queue, else collect its error."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for auth in queue.linked():
            with contextlib.suppress(OSError):   # the request ended already
                serve(auth.serial, payload="served")
            with contextlib.suppress(OSError):   # or took its auth key along
                auth.unlink(queue)
        try:
            return pending.result(timeout=0.2)
        except TimeoutError:
            continue
    pytest.fail("the request neither failed nor reached the queue")
