"""The attacker next door: a container that shares a uid and keyrings with another.

Containers without a user namespace of their own run as the same uids
and may share keyrings: the uid's user-session keyring, or a session
keyring their members inherited.  A key constructed for one container's
request must still never answer another container's request, whether it
is complete (found) or still being constructed (joined): each container
is a key domain of its own.  Keys the host or a managing ancestor
provides (in the container's keyring, say) are found by the members
below, as before.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from agents import Agent
from upcall_fixtures import serve, unique, wait_queued

from kcont import keys
from kcont.container import Container
from kcont.keys import Keyring


@pytest.fixture
def second_queue(session_keyring: int) -> Keyring:
    ring = Keyring(session_keyring).add_keyring("kcont-test-q2")
    ring.setperm(0x3F3F0000)
    return ring


@pytest.fixture
def neighbours(queue: Keyring, second_queue: Keyring) -> Iterator[tuple[Agent, Agent]]:
    """Two containers, no user namespace, "user" upcalls to a queue each;
    their agents keep the keyrings they were started with (the test's)."""
    with Container("adv-dom-a") as a, Container("adv-dom-b") as b:
        a.intercept("user", queue=queue.serial)
        b.intercept("user", queue=second_queue.serial)
        first, second = Agent(a), Agent(b)
        try:
            yield first, second
        finally:
            first.stop()
            second.stop()


def test_a_key_constructed_for_one_container_does_not_answer_anothers(
        queue: Keyring, second_queue: Keyring, neighbours: tuple[Agent, Agent]) -> None:
    """A's request is served; B then asks for the same key through the
    same keyrings: B's request goes to B's queue and gets B's answer."""
    a, b = neighbours
    desc = unique("adv-dom")
    mine = a.request("user", desc, own_session=False)
    (auth,) = wait_queued([queue], 1)[queue.serial]
    serve(auth, payload="for-a")
    assert mine.result(timeout=30).get("payload") == "for-a"

    theirs = b.request("user", desc, own_session=False)
    queued = wait_queued([second_queue], 1, timeout=15)[second_queue.serial]
    if queued:
        serve(queued[0], payload="for-b")
    result = theirs.result(timeout=30)
    assert result.get("payload") != "for-a", "B got the key constructed for A"
    assert queued and result.get("payload") == "for-b", result


def test_a_key_under_construction_for_one_container_is_not_joined_by_another(
        queue: Keyring, second_queue: Keyring, neighbours: tuple[Agent, Agent]) -> None:
    """A's request is pending when B asks for the same key: B does not
    wait for A's key, its request reaches B's queue."""
    a, b = neighbours
    desc = unique("adv-join")
    mine = a.request("user", desc, own_session=False)
    (auth,) = wait_queued([queue], 1)[queue.serial]
    try:
        theirs = b.request("user", desc, own_session=False)
        queued = wait_queued([second_queue], 1, timeout=15)[second_queue.serial]
        assert queued, "B joined the construction of A's key"
        serve(queued[0], payload="for-b")
        assert theirs.result(timeout=30).get("payload") == "for-b"
    finally:
        serve(auth, payload="for-a")
    assert mine.result(timeout=30).get("payload") == "for-a"


def test_a_member_finds_its_managers_keys_and_never_a_siblings(session_keyring: int) -> None:
    """A member of an outer container (the manager of an inner one) adds a
    key to a keyring every container here searches (linked into uid 0's
    user-session keyring, which they share): the inner container's
    members find it (their ancestors' domains come after their own); a
    sibling of the outer container does not (another branch of the tree)."""
    desc = unique("adv-managed")
    shared = Keyring(session_keyring).add_keyring("adv-shared")
    shared.setperm(0x3F3F0000)
    user_session = Keyring.special(keys.USER_SESSION, create=True)
    shared.link(user_session)
    try:
        with Container("adv-dom-outer") as outer, Container("adv-dom-sibling") as sibling:
            manager, stranger = Agent(outer), Agent(sibling)
            try:
                added = manager.sh("sh", "-c", f"id=$(keyctl add user {desc} managed "
                                   f"{shared.serial}) && keyctl setperm $id 0x3f3f0000")
                assert added["rc"] == 0, added
                with manager.create("adv-dom-inner", 0) as inner:
                    member = Agent(inner)
                    try:
                        found = member.request("user", desc, callout=None,
                                               own_session=False).result(timeout=30)
                    finally:
                        member.stop()
                refused = stranger.request("user", desc, callout=None,
                                           own_session=False).result(timeout=30)
            finally:
                manager.stop()
                stranger.stop()
    finally:
        shared.unlink(user_session)
    assert found.get("payload") == "managed", \
        f"the inner member did not find its manager's key: {found}"
    assert refused.get("errno") == errno.ENOKEY, refused
