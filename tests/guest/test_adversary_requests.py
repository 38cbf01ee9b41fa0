"""The attacker at a request: ending, reading or outliving another's upcall.

A request delivered to a queue keyring is in the hands of whoever can
reach that keyring, and of the kernel's bookkeeping.  These tests drop
the authorisation key's last reference while the garbage collector is
held off, invalidate the authorisation, and read a request from outside the
container it belongs to.  The kernel must stay clean (no report on the
console), every requester must get an answer, and only a task that can
serve a request may read it.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterator

import adversary
import pytest
from agents import Agent
from containers import run_child
from upcall_fixtures import sysctl, unique, wait_queued

from kcont import upcalls
from kcont.container import Container
from kcont.keys import Key, Keyring


@pytest.fixture
def member(queue: Keyring) -> Iterator[tuple[Container, Agent]]:
    """A container whose "user" upcalls go to ``queue``, and its init."""
    with Container("adv-req") as c:
        c.intercept("user", queue=queue.serial)
        agent = Agent(c)
        try:
            yield c, agent
        finally:
            agent.stop()


WINDOW_ATTEMPTS = 5


def test_a_request_whose_auth_key_dies_unclaimed_leaves_nothing_dangling(
        session_keyring: int, queue: Keyring, member: tuple[Container, Agent]) -> None:
    """The daemon unlinks the authorisation key (its last reference) and,
    before the garbage collector destroys it, the record goes and any
    keyring is revoked: the revoke's sweep must not touch the freed record.

    The window is held open by a SCHED_FIFO task spinning on CPU 0, where
    the unlink queued its RCU callback: the callback drops the last
    reference and queues the collector's work on CPU 0, which cannot run
    there until the task sleeps.  /proc/keys shows the usage reach 0.

    The collector's work may already be queued on the other CPU (a timer
    for some other key's expiry fires there), and then it takes this key
    before the window opens.  So the attack is tried again, with a fresh
    request, until the window opens once; every attempt, missed or not,
    must leave the kernel clean and the requester answered."""
    container, agent = member
    missed: list[str] = []

    def attack(auth: int) -> str:
        # A name of its own each time: replacing the last attempt's keyring
        # would drop its last reference and queue the collector.
        other = Keyring(session_keyring).add_keyring(unique("adv-other"))
        adversary.realtime_on_cpu(0)
        Key(auth).unlink(queue)
        if not adversary.spin_until_unreferenced(auth, timeout=3.0):
            if adversary.key_usage(auth) is None:
                return "the key was collected before the window opened"
            return "the key was still referenced after 3 s"
        container.remove_intercepts()
        other.revoke()
        return "window"

    for _ in range(WINDOW_ATTEMPTS):
        pending = agent.request("user", unique("adv-uaf"))
        (auth,) = wait_queued([queue], 1)[queue.serial]
        with sysctl("kernel.sched_rt_runtime_us", "-1"), \
                adversary.kernel_reports() as found:
            outcome = run_child(os.fork, functools.partial(attack, auth))
            result = pending.result(timeout=60)
        assert found == [], outcome   # pending.result() raised had it gone unanswered
        if outcome == "window":
            break
        missed.append(outcome)
    else:
        pytest.fail(f"the window never opened in {WINDOW_ATTEMPTS} attempts: {missed}")
    assert result.get("errno") == errno.ENOKEY, (result, missed)


def test_invalidating_an_intercepted_auth_key_ends_the_request_at_once(
        queue: Keyring, member: tuple[Container, Agent]) -> None:
    """The possessor of a request may give it up by invalidating its
    authorisation key (nobody but the kernel can revoke one): the requester
    gets EKEYREVOKED at once, not whatever the garbage collector decides
    when it finds the key unreferenced."""
    _, agent = member
    pending = agent.request("user", unique("adv-inval"))
    (auth,) = wait_queued([queue], 1)[queue.serial]
    Key(auth).invalidate()
    result = pending.result(timeout=20)
    assert result.get("errno") == errno.EKEYREVOKED, result
    assert result["elapsed"] < 10, result


def test_another_container_cannot_read_a_request_it_cannot_serve(
        queue: Keyring, member: tuple[Container, Agent]) -> None:
    """Same uid, another container, no possession of the queue: the
    authorisation key's user View is not enough to read whose request it
    is, for which key, from which keyrings."""
    _, agent = member
    pending = agent.request("user", unique("adv-peek"))
    (auth,) = wait_queued([queue], 1)[queue.serial]
    try:
        with Container("adv-peeker") as other:
            peeker = Agent(other)
            try:
                with pytest.raises(OSError) as err:
                    peeker.call("query_auth", auth)
            finally:
                peeker.stop()
        assert err.value.errno == errno.EACCES
        assert upcalls.query_auth(auth).container_id  # the possessor still reads it
    finally:
        Key(auth).unlink(queue)
        pending.result(timeout=60)
