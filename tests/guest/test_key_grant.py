"""KEYCTL_GRANT_PERMISSION: the container as a subject in key permissions."""

from __future__ import annotations

import errno

import pytest
from agents import Agent

from kcont import upcalls
from kcont._binding import keyctl_lib
from kcont.container import Container
from kcont.keys import Keyring
from kcont.upcalls import Perm

# The test possesses the key (it is in its session keyring) and manages
# it through the possessor bits; members run as uid 0 but do not possess
# it, so the user bits are theirs: give them nothing but Search on the
# keyring, and nothing at all on the key.
POSSESSOR_ALL = 0x3F000000
USER_SEARCH = 0x00080000


def _setup(session_keyring: int, tag: str) -> tuple[Keyring, Keyring]:
    ring = Keyring(session_keyring).add_keyring(f"kcont-acl-{tag}")
    ring.setperm(POSSESSOR_ALL | USER_SEARCH)
    key = ring.add("user", f"kcont-acl:{tag}", b"secret")
    key.setperm(POSSESSOR_ALL)
    return ring, Keyring(key.serial)


def test_search_without_read_and_nothing_for_another_container(session_keyring: int) -> None:
    ring, key = _setup(session_keyring, "search")
    with Container("kcont-acl-a") as granted, Container("kcont-acl-b") as other:
        granted.set_keyring(ring.serial)
        other.set_keyring(ring.serial)
        key.grant(granted, Perm.SEARCH)
        a, b = Agent(granted), Agent(other)
        try:
            found = a.request("user", "kcont-acl:search", callout=None).result()
            missed = b.request("user", "kcont-acl:search", callout=None).result()
            key.grant(granted, 0)
            revoked = a.request("user", "kcont-acl:search", callout=None).result()
        finally:
            a.stop()
            b.stop()
    assert found.get("serial") == key.serial, found
    assert found.get("read_errno") == errno.EACCES, found
    assert missed.get("errno") in (errno.ENOKEY, errno.EACCES), missed
    assert revoked.get("errno") in (errno.ENOKEY, errno.EACCES), revoked


def test_read_grant_lets_members_read(session_keyring: int) -> None:
    ring, key = _setup(session_keyring, "read")
    with Container("kcont-acl-read") as box:
        box.set_keyring(ring.serial)
        key.grant(box, Perm.SEARCH | Perm.READ | Perm.VIEW)
        agent = Agent(box)
        try:
            found = agent.request("user", "kcont-acl:read", callout=None).result()
        finally:
            agent.stop()
    assert found.get("payload") == "secret", found


def test_descendants_get_nothing(session_keyring: int) -> None:
    ring, key = _setup(session_keyring, "child")
    with Container("kcont-acl-parent") as parent:
        parent.set_keyring(ring.serial)
        key.grant(parent, Perm.SEARCH)
        outer = Agent(parent)
        child = outer.create("kcont-acl-child", 0)
        child.set_keyring(ring.serial)
        inner = Agent(child)
        try:
            missed = inner.request("user", "kcont-acl:child", callout=None).result()
        finally:
            inner.stop()
            outer.stop()
            child.close()
    assert missed.get("errno") in (errno.ENOKEY, errno.EACCES), missed


def test_revoke_and_invalidate_grants(session_keyring: int) -> None:
    _, key = _setup(session_keyring, "revoke")
    other = Keyring(session_keyring).add("user", "kcont-acl:inval", b"x")
    other.setperm(POSSESSOR_ALL)
    with Container("kcont-acl-rv") as box:
        key.grant(box, Perm.REVOKE)
        other.grant(box, Perm.INVAL)
        agent = Agent(box)
        try:
            with pytest.raises(OSError) as denied:
                agent.call("keyctl_raw", keyctl_lib.KEYCTL_REVOKE, other.serial)  # not granted
            agent.call("keyctl_raw", keyctl_lib.KEYCTL_REVOKE, key.serial)    # granted
            agent.call("keyctl_raw", keyctl_lib.KEYCTL_INVALIDATE, other.serial)  # granted
        finally:
            agent.stop()
    assert denied.value.errno == errno.EACCES
    with pytest.raises(OSError) as gone:
        key.read()
    assert gone.value.errno == errno.EKEYREVOKED


def test_seventeenth_entry_is_enospc_and_perm_zero_removes(session_keyring: int) -> None:
    _, key = _setup(session_keyring, "many")
    boxes = [Container(f"kcont-acl-{i}") for i in range(upcalls.ACL_MAX + 1)]
    try:
        for box in boxes[:-1]:
            key.grant(box, Perm.VIEW)
        with pytest.raises(OSError) as full:
            key.grant(boxes[-1], Perm.VIEW)
        key.grant(boxes[0], 0)
        key.grant(boxes[-1], Perm.VIEW)
        key.grant(boxes[1], Perm.VIEW | Perm.SEARCH)   # an update needs no new slot
    finally:
        for box in boxes:
            box.close()
    assert full.value.errno == errno.ENOSPC


@pytest.mark.parametrize("case,expected", [
    ("subject-type", errno.EINVAL),
    ("perm-bits", errno.EINVAL),
    ("closed-fd", errno.EBADF),
    ("not-a-container", errno.EINVAL),
    ("no-setattr", errno.EACCES),
    ("no-such-key", errno.ENOKEY),
])
def test_bad_input(session_keyring: int, case: str, expected: int) -> None:
    import os

    _, key = _setup(session_keyring, "bad")
    with Container("kcont-acl-bad") as box:
        serial, subject, perm = key.serial, box.fd, int(Perm.SEARCH)
        subject_type = keyctl_lib.KEY_ACE_SUBJ_CONTAINER
        read_end, write_end = os.pipe()
        os.close(write_end)
        if case == "subject-type":
            subject_type = keyctl_lib.KEY_ACE_SUBJ_CONTAINER + 1   # no such subject type
        elif case == "perm-bits":
            perm = keyctl_lib.KEY_ACE__PERMS + 1   # the first bit past the known ones
        elif case == "closed-fd":
            os.close(read_end)
            subject = read_end
        elif case == "not-a-container":
            subject = read_end
        elif case == "no-setattr":
            key.setperm(0x01000000)     # possessor View only
        elif case == "no-such-key":
            serial = 0x7FFFFFF0
        with pytest.raises(OSError) as err:
            upcalls.keyctl_raw(keyctl_lib.KEYCTL_GRANT_PERMISSION, serial, subject_type, subject,
                               perm)
        if case != "closed-fd":
            os.close(read_end)
    assert err.value.errno == expected
