"""KEYCTL_CONTAINER_INTERCEPT against the kernel: delivery, trust, nothing hangs.

Requesters are agents' children inside containers; the test process keeps
the queue keyrings (in its session keyring) and serves by hand, as a
daemon would, through kcont's API.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agents import Agent, request_in, requester_below
from upcall_fixtures import (
    marked,
    marking_helper,
    serve,
    sysctl,
    trace_instance,
    trace_stamps,
    unique,
    wait_queued,
)

from kcont import upcalls
from kcont.container import Container
from kcont.keys import Key, Keyring, assume_authority, instantiate, negate, reject, request_key
from kcont.watch import KeyChange, KeyEvent, WatchQueue


@pytest.fixture(scope="module", autouse=True)
def mark() -> Iterator[None]:
    with marking_helper():
        yield


@pytest.fixture
def queue(session_keyring: int) -> Keyring:
    return Keyring(session_keyring).add_keyring("kcont-queue")


def test_capabilities_announce_the_new_operations() -> None:
    caps = upcalls.capabilities()
    assert len(caps) >= 2
    want = upcalls.Caps1.CONTAINER_INTERCEPT | upcalls.Caps1.QUERY_REQUEST_KEY_AUTH | \
        upcalls.Caps1.CONTAINER_KEYRING | upcalls.Caps1.GRANT_PERMISSION | \
        upcalls.Caps1.QUERY_REQUESTER_COMM
    assert caps[1] & want == want


def test_untrusted_without_record_is_rejected_at_once_and_no_helper_runs() -> None:
    desc = unique("untrusted")
    with Container("kcont-untrusted", trusted=False) as box:
        result = request_in(box, "user", desc)
    assert result["errno"] == errno.ENOKEY, result
    assert result["elapsed"] < 2.0, result
    assert desc not in marked()


def test_trusted_without_record_falls_back_to_the_helper() -> None:
    desc = unique("trusted")
    with Container("kcont-trusted", trusted=True) as box:
        result = request_in(box, "user", desc)
    assert result.get("payload") == "marked", result
    assert desc in marked()


def test_init_container_requests_use_the_helper() -> None:
    desc = unique("init")
    result = request_in(None, "user", desc)
    assert result.get("payload") == "marked", result
    assert desc in marked()


def test_record_delivers_the_auth_key_and_the_requester_gets_the_key(queue: Keyring) -> None:
    desc = unique("deliver")
    with Container("kcont-deliver", trusted=True) as box:
        box.intercept("user", queue=queue.serial)
        agent = Agent(box)
        try:
            pending = agent.request("user", desc, callout="info")
            (auth,) = wait_queued([queue], 1)[queue.serial]
            request = serve(auth, payload="from-the-queue")
            result = pending.result()
        finally:
            agent.stop()
    assert result.get("payload") == "from-the-queue", result
    assert Key(request.target_key).describe().description == desc
    assert desc not in marked(), "a trusted request a record took must not reach the helper"


@pytest.mark.parametrize("action", ["instantiate", "negate", "reject"])
def test_serving_by_hand_through_the_api(queue: Keyring, action: str) -> None:
    desc = unique(action)
    with WatchQueue() as watch, Container("kcont-by-hand", trusted=False) as box:
        watch.watch(queue.serial, 7)
        box.intercept("user", ns={"uts", "net"}, queue=queue.serial)
        agent = Agent(box)
        try:
            pending = agent.request("user", desc, callout="callout-data")
            auth = _linked_auth(watch, queue.serial)
            request = upcalls.query_auth(auth)
            assert request.container_id == box.id and request.operation == "create"
            with assume_authority(request.target_key) as authkey:
                assert authkey.read() == b"callout-data"
                if action == "instantiate":
                    instantiate(request.target_key, "by-hand")
                elif action == "negate":
                    negate(request.target_key)
                else:
                    reject(request.target_key, errno.EKEYREJECTED)
            result = pending.result()
        finally:
            agent.stop()
    expected = {"instantiate": None, "negate": errno.ENOKEY, "reject": errno.EKEYREJECTED}
    if action == "instantiate":
        assert result.get("payload") == "by-hand", result
    else:
        assert result.get("errno") == expected[action], result


def _linked_auth(watch: WatchQueue, ring: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([watch], [], [], 1.0)[0]:
            for event in watch.read():
                if isinstance(event, KeyEvent) and event.change is KeyChange.LINKED \
                        and event.key == ring:
                    return event.aux
    raise TimeoutError("no NOTIFY_KEY_LINKED on the queue keyring")


def test_query_maps_ids_and_pid_into_the_callers_namespaces(queue: Keyring) -> None:
    desc = unique("query")
    with Container("kcont-q-req", trusted=False) as box, \
            Container("kcont-q-daemon", ns={"user", "pid"}, trusted=False) as daemon_box:
        box.intercept("user", queue=queue.serial)
        box_id = box.id
        requester, daemon = Agent(box), Agent(daemon_box)
        try:
            pending = requester.request("user", desc)
            (auth,) = wait_queued([queue], 1)[queue.serial]
            outside = upcalls.query_auth(auth)
            named = Path(f"/proc/{outside.requester_pid}/comm").read_text().rstrip("\n")
            # Reading a request takes possessing it, as serving does: the
            # daemon (uid 0, not possessing the queue) links it in.
            queue.setperm(0x3F3F0000)
            daemon.possess(queue.serial)
            inside = daemon.call("query_auth", auth)
            serve(auth)
            result = pending.result()
        finally:
            requester.stop()
            daemon.stop()
    assert (outside.operation, outside.fsuid, outside.fsgid) == ("create", 0, 0)
    assert outside.requester_pid == result["tid"]      # the requesting thread
    assert outside.requester_comm == named != ""
    assert outside.container_id == box_id and outside.spare_is_zero
    assert outside.target_key > 0 and outside.session_keyring == pending.session
    # The daemon's user namespace maps nothing, its pid namespace sees nobody.
    assert (inside["fsuid"], inside["fsgid"], inside["requester_pid"]) == (65534, 65534, 0)
    assert inside["requester_comm"] == ""     # the name goes with the pid
    assert inside["container_id"] == box_id and inside["target_key"] == outside.target_key


def test_the_query_names_the_requester_as_it_was_when_it_asked(queue: Keyring) -> None:
    """The requester's name is the kernel's record of it at request time:
    renamed afterwards (as a pid reused meanwhile would be another task's),
    /proc shows the new name and the query still the one that asked."""
    tid_r, tid_w = os.pipe()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    with Container("kcont-q-comm", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        pid = box.fork()
        if pid == 0:
            try:
                Keyring.join_session()

                def ask() -> None:
                    os.write(tid_w, str(threading.get_native_id()).encode())
                    with contextlib.suppress(OSError):
                        request_key("user", unique("comm"), "x")

                asker = threading.Thread(target=ask)
                asker.start()
                tid = int(os.read(tid_r, 32))
                os.read(go_r, 1)
                # Only a thread of the same process may rename it.
                Path(f"/proc/self/task/{tid}/comm").write_text("kcont-renamed")
                os.write(done_w, b"R")
                asker.join()
            finally:
                os._exit(0)
        go = True
        try:
            (auth,) = wait_queued([queue], 1)[queue.serial]
            before = upcalls.query_auth(auth)
            named = Path(f"/proc/{before.requester_pid}/comm").read_text()
            os.write(go_w, b"G")
            go = False
            assert os.read(done_r, 1) == b"R"
            after = upcalls.query_auth(auth)
            renamed = Path(f"/proc/{before.requester_pid}/comm").read_text()
            serve(auth)
        finally:
            if go:      # let the member go on: its request ends at the timeout
                os.write(go_w, b"G")
            status = box.wait(pid)
    assert status == 0
    assert named == before.requester_comm + "\n" and before.requester_comm != ""
    assert renamed == "kcont-renamed\n"
    assert after.requester_comm == before.requester_comm     # the name it asked with


def test_unserved_request_times_out(queue: Keyring) -> None:
    with sysctl("kernel.keys.intercept_timeout", "2"), \
            Container("kcont-timeout", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        result = request_in(box, "user", unique("timeout"))
    assert result.get("errno") == errno.ETIMEDOUT, result
    assert 1.5 <= result["elapsed"] < 15, result


PENDING = 100


def _remove(outer: Container, queue: Keyring, agent: Agent) -> None:
    assert outer.remove_intercepts("user") == 1


def _revoke(outer: Container, queue: Keyring, agent: Agent) -> None:
    queue.revoke()


def _clear(outer: Container, queue: Keyring, agent: Agent) -> None:
    queue.clear()


def _invalidate(outer: Container, queue: Keyring, agent: Agent) -> None:
    queue.invalidate()


def _kill(outer: Container, queue: Keyring, agent: Agent) -> None:
    agent.stop()


ENDINGS: dict[str, tuple[Callable[[Container, Keyring, Agent], None], int]] = {
    "remove": (_remove, errno.ENOKEY),
    "revoke": (_revoke, errno.EKEYREVOKED),
    "clear": (_clear, errno.EKEYREVOKED),
    "invalidate": (_invalidate, errno.EKEYREVOKED),
    "container-death": (_kill, errno.ECANCELED),
}


# The kernel completes a record's pending requests in one pass: their
# completion events, stamped by the kernel, fall within this many seconds
# (TCG with KASAN; one request at a time to the timeout would be minutes).
AT_ONCE_S = 5.0


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_ending_a_record_completes_all_its_pending_requests_at_once(
        queue: Keyring, ending: str) -> None:
    """100 requests wait on one record (in the parent of the requesters'
    container, so that the record's container can die without them); then
    the record goes and all 100 fail at once with the documented errno.

    "At once" is read from the kernel's own timestamps on keys:
    key_upcall_complete, not from when the requesters report back: 100
    Python threads waking under TCG on a busy host take seconds to say so."""
    end, expected = ENDINGS[ending]
    with sysctl("kernel.keys.intercept_timeout", "120"), \
            trace_instance(f"kcont-ending-{ending}", ("key_upcall_complete",)) as trace, \
            Container("kcont-outer", trusted=False) as outer, \
            requester_below(outer, "kcont-inner") as (outer_agent, requester):
        record = outer.id
        outer.intercept("user", queue=queue.serial)
        descs = [unique(ending) for _ in range(PENDING)]
        pending = requester.request("user", descs)
        queued = wait_queued([queue], PENDING, timeout=300)[queue.serial]
        assert len(queued) == PENDING
        start = time.monotonic()
        end(outer, queue, outer_agent)
        results = pending.results(timeout=120)
        took = time.monotonic() - start
        stamps = trace_stamps(trace, f"record_container={record} ")
    assert sorted(r.get("errno") for r in results) == [expected] * PENDING
    # Not one left to the 120 s timeout (which would also change the errno).
    assert took < 60, f"{PENDING} requests took {took:.1f} s to fail after {ending}"
    assert len(stamps) == PENDING, f"{len(stamps)} completions traced for {PENDING} requests"
    spread = max(stamps) - min(stamps)
    assert spread < AT_ONCE_S, f"the kernel completed {PENDING} requests over {spread:.2f} s"


def test_auth_key_dropped_unserved_fails_the_request_instead_of_hanging(queue: Keyring) -> None:
    """A daemon that unlinks the auth key without answering drops its last
    reference; the kernel then rejects the key with ENOKEY (no hang, and
    long before the intercept timeout)."""
    with sysctl("kernel.keys.intercept_timeout", "120"), \
            Container("kcont-dropped", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        agent = Agent(box)
        try:
            pending = agent.request("user", unique("dropped"))
            (auth,) = wait_queued([queue], 1)[queue.serial]
            Key(auth).unlink(queue)
            result = pending.result(timeout=60)
        finally:
            agent.stop()
    assert result.get("errno") == errno.ENOKEY, result
