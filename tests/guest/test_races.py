"""Threads racing the series' teardown paths against its hot paths.

Three races, each run with hypothesis drawing the sizes
and the moment the second thread strikes:

- close against intercept: one thread adds and removes interception
  records through a container fd while another closes that fd (and opens
  an eventfd, which usually takes the same number);
- request against container death: requesters in a child container make
  requests that a record of the parent container intercepts, a server
  thread answers them, and the parent's init exits meanwhile; a second
  test (the regression test for a lost request, docs/reliability.md)
  holds each request between routing and delivery with the debug
  kernel's fault switch, so that the death lands inside that window
  every run;
- revoke against delivery: requests are delivered to a queue keyring and
  served while the queue is revoked, cleared or invalidated, some
  examples with the same switch holding each delivery.

Only documented outcomes are allowed, every requester gets an answer long
before the intercept timeout (a request lost between delivery and the
pending list would hang until then), and the kernel must stay silent
(KASAN, lockdep, kmemleak are judged on the console by the host).  What
each run saw is written to races.json for docs/reliability.md.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from operator import methodcaller
from typing import Any

import pytest
from agents import Agent, requester_below
from budget import examples
from conftest import RESULTS
from hypothesis import given, settings
from hypothesis import strategies as st
from upcall_fixtures import delivery_delay, sysctl, unique

from kcont import upcalls
from kcont.container import Container, create_raw
from kcont.keys import Key, Keyring, assume_authority, instantiate

BUDGET = examples(8)
# Requests get this long before the kernel times them out; a race that lost
# a request would show as ETIMEDOUT after it, so the results must come
# well before.
INTERCEPT_TIMEOUT = 60
ANSWER_WITHIN = 30.0
SEEN: Counter[str] = Counter()

# What a record operation may return once its fd is closed under it (EBADF)
# or replaced by an eventfd (EINVAL: not a container), besides its own errnos.
INTERCEPT_RACE = {errno.EBADF, errno.EINVAL, errno.EEXIST}
# A server that loses the race to the request's end: the authorisation is
# revoked (EKEYREVOKED), gone (ENOKEY), or no longer for this key (EPERM);
# or it holds the authority but the kernel ended the key first (EBUSY from
# instantiate: the key is no longer under construction).
SERVER_LOST = {errno.EKEYREVOKED, errno.ENOKEY, errno.EPERM, errno.EBUSY}
# Reading a queue keyring after it was revoked (EKEYREVOKED), or after it
# was invalidated and dropped from the session keyring, so that the test
# no longer possesses it (EACCES) or it is gone (ENOKEY).
QUEUE_GONE = {errno.EKEYREVOKED, errno.EACCES, errno.ENOKEY}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)     # interleave the Python threads finely
    yield
    sys.setswitchinterval(interval)
    (RESULTS / "races.json").write_text(json.dumps(SEEN, indent=1, sort_keys=True) + "\n")


@pytest.fixture(autouse=True)
def _timeout() -> Iterator[None]:
    with sysctl("kernel.keys.intercept_timeout", str(INTERCEPT_TIMEOUT)):
        yield


class Server(threading.Thread):
    """Serves, as a daemon would, every auth key that appears in the queues
    until stopped; counts what it did and what it lost to the race."""

    def __init__(self, queues: list[Keyring]) -> None:
        super().__init__(daemon=True)
        self.queues, self.stop = queues, threading.Event()
        # Set by the test before it ends the queues: from then on, reading
        # one may fail (revoked, gone, or no longer ours to read).
        self.queues_ended = threading.Event()
        self.done: set[int] = set()
        self.errors: list[object] = []

    def run(self) -> None:
        while not self.stop.is_set():
            for queue in self.queues:
                try:
                    linked = [k.serial for k in queue.linked()]
                except OSError as err:
                    if not self.queues_ended.is_set():
                        self.errors.append(f"read queue {queue.serial}: {err}")
                    elif err.errno not in QUEUE_GONE:
                        self.errors.append(f"read ended queue {queue.serial}: {err}")
                    continue
                for auth in linked:
                    if auth not in self.done:
                        self.done.add(auth)
                        self._serve(auth)
            time.sleep(0.001)

    def _serve(self, auth: int) -> None:
        """query, assume, instantiate: each step may lose the race."""
        stage = "query"
        try:
            target = upcalls.query_auth(auth).target_key
            stage = "assume"
            with assume_authority(target):
                stage = "instantiate"
                instantiate(target, "served")
            SEEN["served"] += 1
        except OSError as err:
            if err.errno in SERVER_LOST:
                SEEN[f"server lost at {stage} ({errno.errorcode[err.errno]})"] += 1
            else:
                self.errors.append(f"{stage} {auth}: {err}")

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        assert not self.is_alive(), "server thread stuck"
        assert not self.errors, f"server got undocumented errors: {self.errors}"


def _outcomes(results: list[dict[str, Any]], allowed: set[int], race: str) -> None:
    for result in results:
        if "serial" in result:
            SEEN[f"{race}: served"] += 1
            continue
        code = result.get("errno")
        assert code in allowed, f"{race}: {result}"
        assert result["elapsed"] < ANSWER_WITHIN, f"{race}: answered late: {result}"
        SEEN[f"{race}: {errno.errorcode[code]}"] += 1


# --------------------------------------------------- close against intercept

@settings(max_examples=BUDGET * 3, deadline=None)
@given(records=st.integers(1, 40), delay=st.floats(0, 0.02),
       wrong_kind=st.booleans())
def test_close_races_intercept(records: int, delay: float, wrong_kind: bool) -> None:
    session = Keyring.join_session()
    queues = [session.add_keyring(unique("rq")) for _ in range(4)]
    fd = create_raw("kcont-race-close", 0)
    errors: list[int] = []
    started = threading.Event()

    def churn() -> None:
        started.set()
        for i in range(records):
            try:
                upcalls.intercept(fd, "user", i % 128, queues[i % 4].serial)
                upcalls.remove_intercepts(fd, "user", i % 128)
            except OSError as err:
                errors.append(err.errno)

    thread = threading.Thread(target=churn)
    thread.start()
    started.wait()
    time.sleep(delay)
    os.close(fd)
    other = os.eventfd(0) if wrong_kind else None
    thread.join()
    if other is not None:
        os.close(other)
    for code in errors:
        assert code in INTERCEPT_RACE, errno.errorcode.get(code, code)
        SEEN[f"close/intercept: {errno.errorcode[code]}"] += 1
    SEEN["close/intercept: calls"] += 2 * records


# ---------------------------------------------- request against container death

@settings(max_examples=BUDGET, deadline=None)
@given(requests=st.integers(1, 24), delay=st.floats(0, 0.5), serving=st.booleans())
def test_request_races_container_death(requests: int, delay: float, serving: bool) -> None:
    """The record lives in the parent; the requesters in a child, which
    outlives the parent's death.  A request ends served, ECANCELED
    (pending when the parent died) or ENOKEY (routed after: the untrusted
    child has nowhere else to go)."""
    queue = Keyring.join_session().add_keyring(unique("rq"))
    with Container("kcont-race-outer", trusted=False) as outer, \
            requester_below(outer, "kcont-race-inner") as (outer_agent, requester):
        outer.intercept("user", queue=queue.serial)
        server = Server([queue])
        if serving:
            server.start()
        try:
            pending = requester.request("user", [unique("death") for _ in range(requests)])
            time.sleep(delay)
            outer_agent.stop()
            results = pending.results(timeout=ANSWER_WITHIN + 30)
        finally:
            if serving:
                server.finish()
    _outcomes(results, {errno.ECANCELED, errno.ENOKEY}, "request/death")


# A lost request shows as ETIMEDOUT after this.  Shorter than the usual
# 60 s to keep a failing run short; long enough that the first request
# pending (up to 12 × 250 ms before the death) is cancelled, not timed out,
# however slow the guest.
MID_ROUTE_TIMEOUT = 20


@settings(max_examples=BUDGET, deadline=None)
@given(threads=st.integers(2, 12), hold_ms=st.integers(50, 250), at=st.floats(0, 1))
def test_no_request_is_lost_to_a_container_dying_mid_route(threads: int, hold_ms: int,
                                                          at: float) -> None:
    """Regression: a request that has passed the routing's dead-container
    check when the record's container dies, but becomes pending only after
    the death has cancelled its container's requests, must still end
    (ECANCELED or ENOKEY), not leave its requester silent for the whole
    intercept timeout.

    The debug kernel's fault switch holds each routed request ``hold_ms``
    before its delivery, with the record's lock held, so the requests go
    through one by one; the parent's init exits ``at`` of the way through
    them, when one is inside that window and the rest wait on the lock.
    Nobody serves (a server would answer a lost request and hide it).
    Each request must end ECANCELED (pending at the death) or ENOKEY
    (routed after it), never ETIMEDOUT."""
    queue = Keyring.join_session().add_keyring(unique("rq"))
    with sysctl("kernel.keys.intercept_timeout", str(MID_ROUTE_TIMEOUT)), \
            delivery_delay(hold_ms), \
            Container("kcont-race-route", trusted=False) as outer, \
            requester_below(outer, "kcont-race-router") as (outer_agent, requester):
        outer.intercept("user", queue=queue.serial)
        pending = requester.request("user", [unique("route") for _ in range(threads)])
        pending.namespaces()
        time.sleep(at * threads * hold_ms / 1000)
        outer_agent.stop()
        results = pending.results(timeout=MID_ROUTE_TIMEOUT + 30)
    lost = [r for r in results if r.get("errno") == errno.ETIMEDOUT]
    assert not lost, f"{len(lost)} of {threads} requests lost to the container's death: {lost}"
    _outcomes(results, {errno.ECANCELED, errno.ENOKEY}, "mid-route death")


# ------------------------------------------------------ revoke against delivery

# Each ending is the Keyring method of that name.
ENDINGS: dict[str, Callable[[Keyring], None]] = {
    name: methodcaller(name) for name in ("revoke", "clear", "invalidate")}


@pytest.mark.parametrize("ending", list(ENDINGS))
@settings(max_examples=BUDGET, deadline=None)
@given(requests=st.integers(1, 24), delay=st.floats(0, 0.5), serving=st.booleans(),
       hold_ms=st.sampled_from([0, 0, 20, 100]))
def test_revoke_races_delivery(ending: str, requests: int, delay: float,
                               serving: bool, hold_ms: int) -> None:
    """A request ends served, or EKEYREVOKED: pending when the queue went,
    or delivered to it after (revoked and invalidated keyrings refuse the
    link; a cleared one takes it, and is then served or ended again).

    With ``hold_ms``, the debug kernel's fault switch holds each request
    that long between routing's choice of the record and its delivery, so
    they go one by one and the queue usually ends while one is held: its
    delivery must then find the queue ended (a revoked one refuses the
    link, an invalidated one is checked once the request is pending, a
    cleared one takes it and is cleared again)."""
    queue = Keyring.join_session().add_keyring(unique("rq"))
    with delivery_delay(hold_ms), \
            Container("kcont-race-queue", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        requester = Agent(box)
        server = Server([queue])
        clearer: Clearer | None = None
        if serving:
            server.start()
        try:
            descs = [unique(ending) for _ in range(requests)]
            pending = requester.request("user", descs)
            time.sleep(delay)
            server.queues_ended.set()
            ENDINGS[ending](queue)
            # A cleared queue still takes deliveries: with nobody serving,
            # keep clearing until every requester has its answer.
            clearer = Clearer(queue) if ending == "clear" and not serving else None
            results = pending.results(timeout=ANSWER_WITHIN + 30)
        finally:
            if serving:
                server.finish()
            if clearer is not None:
                clearer.finish()
            requester.stop()
    allowed = {errno.EKEYREVOKED}
    _outcomes(results, allowed, f"{ending}/delivery")
    SEEN[f"{ending}/delivery: requests"] += requests
    SEEN[f"{ending}/delivery: requests held {hold_ms} ms"] += requests
    if ending != "clear":
        with pytest.raises(OSError) as refused:
            Key(queue.serial).describe()
        assert refused.value.errno in (errno.EKEYREVOKED, errno.ENOKEY), refused.value



class Clearer(threading.Thread):
    """Clears a queue whenever something is linked in it, until stopped."""

    def __init__(self, queue: Keyring) -> None:
        super().__init__(daemon=True)
        self.queue, self.stop = queue, threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.queue.linked():
                self.queue.clear()
                SEEN["clear/delivery: cleared again"] += 1
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        assert not self.is_alive(), "clearer thread stuck"
