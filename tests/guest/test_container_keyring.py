"""KEYCTL_SET_CONTAINER_KEYRING and KEY_SPEC_CONTAINER_KEYRING."""

from __future__ import annotations

import errno

import pytest
from agents import Agent

from kcont import upcalls
from kcont.container import Container
from kcont.keys import Keyring

# Possessor all, user all: the members run as uid 0 and do not possess
# the container keyring, so its user bits are what lets them search it.
OPEN_TO_UID0 = 0x3F3F0000


def test_a_key_there_is_found_by_members_only(session_keyring: int) -> None:
    ring = Keyring(session_keyring).add_keyring("kcont-ck")
    ring.setperm(OPEN_TO_UID0)
    key = ring.add("user", "kcont-ck:db", b"secret")
    key.setperm(OPEN_TO_UID0)
    with Container("kcont-ck-member", trusted=False) as box, \
            Container("kcont-ck-other", trusted=False) as other:
        box.set_keyring(ring.serial)
        member, outsider = Agent(box), Agent(other)
        try:
            found = member.request("user", "kcont-ck:db", callout=None).result()
            missed = outsider.request("user", "kcont-ck:db", callout=None).result()
            named = member.call("container_keyring_id")
            with pytest.raises(OSError) as none:
                outsider.call("container_keyring_id")
        finally:
            member.stop()
            outsider.stop()
    assert found.get("serial") == key.serial and found.get("payload") == "secret", found
    assert missed.get("errno") == errno.ENOKEY, missed
    assert named == ring.serial
    assert none.value.errno == errno.ENOKEY


def test_set_once_then_ebusy(session_keyring: int) -> None:
    first = Keyring(session_keyring).add_keyring("kcont-ck-1")
    second = Keyring(session_keyring).add_keyring("kcont-ck-2")
    with Container("kcont-ck-once") as box:
        box.set_keyring(first.serial)
        with pytest.raises(OSError) as busy:
            box.set_keyring(second.serial)
    assert busy.value.errno == errno.EBUSY


def test_the_container_keeps_its_keyring_alive(session_keyring: int) -> None:
    ring = Keyring(session_keyring).add_keyring("kcont-ck-kept")
    ring.setperm(OPEN_TO_UID0)
    key = ring.add("user", "kcont-ck:kept", b"kept")
    key.setperm(OPEN_TO_UID0)
    with Container("kcont-ck-kept") as box:
        box.set_keyring(ring.serial)
        ring.unlink(Keyring(session_keyring))
        member = Agent(box)
        try:
            found = member.request("user", "kcont-ck:kept", callout=None).result()
        finally:
            member.stop()
    assert found.get("payload") == "kept", found


@pytest.mark.parametrize("case,expected", [
    ("not-a-keyring", errno.ENOTDIR),
    ("no-such-key", errno.ENOKEY),
    ("closed-fd", errno.EBADF),
    ("not-a-container", errno.EINVAL),
])
def test_bad_input(session_keyring: int, case: str, expected: int) -> None:
    import os

    user_key = Keyring(session_keyring).add("user", "kcont-ck:plain", b"x")
    ring = Keyring(session_keyring).add_keyring("kcont-ck-bad")
    with Container("kcont-ck-bad") as box:
        fd, serial = box.fd, ring.serial
        if case == "not-a-keyring":
            serial = user_key.serial
        elif case == "no-such-key":
            serial = 0x7FFFFFF0
        read_end, write_end = os.pipe()
        if case == "closed-fd":
            os.close(read_end)
            fd = read_end
        elif case == "not-a-container":
            fd = read_end
        with pytest.raises(OSError) as err:
            upcalls.set_container_keyring(fd, serial)
        for end in (read_end, write_end):
            if not (case == "closed-fd" and end == read_end):
                os.close(end)
    assert err.value.errno == expected
