"""The attacker with a grant: a key that is usable is not destroyable.

A container granted Search on a key can use it (request_key() finds it
through the container keyring) without reading it.  Search is also what
KEYCTL_INVALIDATE asks for, but a member may invalidate a granted key
only with the grant's own invalidate bit: otherwise any member could
destroy, for everyone, a key it was only allowed to use.
"""

from __future__ import annotations

import errno

import pytest
from agents import Agent

from kcont._binding import keyctl_lib
from kcont.container import Container, fork_into
from kcont.keys import Keyring
from kcont.upcalls import Perm

POSSESSOR_ALL = 0x3F000000
USER_SEARCH = 0x00080000


@pytest.mark.parametrize("grant,allowed", [
    (Perm.SEARCH, False),
    (Perm.SEARCH | Perm.VIEW | Perm.READ, False),
    (Perm.SEARCH | Perm.INVAL, True),
    (Perm.INVAL, True),
], ids=["search", "search-read", "search-inval", "inval"])
def test_a_member_invalidates_a_granted_key_only_with_the_invalidate_bit(
        session_keyring: int, grant: Perm, allowed: bool) -> None:
    ring = Keyring(session_keyring).add_keyring("adv-grant")
    ring.setperm(POSSESSOR_ALL | USER_SEARCH)
    key = ring.add("user", "adv-grant:usable", b"secret")
    key.setperm(POSSESSOR_ALL)
    with Container("adv-granted") as box:
        box.set_keyring(ring.serial)
        key.grant(box, grant)
        member = Agent(box, fork=lambda: fork_into(box.fd))
        try:
            if Perm.SEARCH in grant:  # usable: the member's request finds it
                found = member.request("user", "adv-grant:usable", callout=None).result()
                assert found.get("serial") == key.serial, found
            try:
                member.call("keyctl_raw", keyctl_lib.KEYCTL_INVALIDATE, key.serial)
                outcome = 0
            except OSError as err:
                outcome = err.errno or -1
        finally:
            member.stop()
    assert outcome == (0 if allowed else errno.EACCES)
    if not allowed:
        assert key.read() == b"secret"
