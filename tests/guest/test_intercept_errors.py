"""KEYCTL_CONTAINER_INTERCEPT and KEYCTL_QUERY_REQUEST_KEY_AUTH: every
documented errno, and who may call them."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import adversary
import pytest
from agents import Agent, request_in
from upcall_fixtures import serve, sysctl, unique, wait_queued

from kcont import upcalls
from kcont._binding import keyctl_lib
from kcont.container import Container
from kcont.keys import Keyring

KEYCTL_CONTAINER_INTERCEPT = keyctl_lib.KEYCTL_CONTAINER_INTERCEPT
KEYCTL_QUERY_REQUEST_KEY_AUTH = keyctl_lib.KEYCTL_QUERY_REQUEST_KEY_AUTH


@pytest.fixture
def box() -> Iterator[Container]:
    with Container("kcont-err", trusted=False) as c:
        yield c


def _errno(call, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as err:
        call(*args, **kwargs)
    return err.value.errno


@pytest.mark.parametrize("key_type,mask,expected", [
    ("user", 0x80, errno.EINVAL),                 # unknown mask bit
    ("user", 0xFFFFFFFF, errno.EINVAL),
    ("x" * 33, 0, errno.EINVAL),                  # longer than KEY_INTERCEPT_TYPE_MAX
    ("", 0, errno.EINVAL),
    ("us*r", 0, errno.EINVAL),                    # "*" only on its own
    ("**", 0, errno.EINVAL),
])
def test_bad_type_or_mask(box: Container, queue: Keyring, key_type: str, mask: int,
                          expected: int) -> None:
    assert _errno(upcalls.intercept, box.fd, key_type, mask, queue.serial) == expected


def test_longest_type_name_is_accepted(box: Container, queue: Keyring) -> None:
    upcalls.intercept(box.fd, "t" * upcalls.TYPE_MAX, 0, queue.serial)
    assert box.remove_intercepts("t" * upcalls.TYPE_MAX) == 1


def test_null_type_only_for_removal(box: Container, queue: Keyring) -> None:
    assert _errno(upcalls.keyctl_raw, KEYCTL_CONTAINER_INTERCEPT, box.fd, 0, 0,
                  queue.serial) == errno.EINVAL
    box.intercept("user", queue=queue.serial)
    box.intercept("*", ns={"net"}, queue=queue.serial)
    assert upcalls.keyctl_raw(KEYCTL_CONTAINER_INTERCEPT, box.fd, 0, 0, 0) == 2


@pytest.mark.parametrize("pointer", [1, 0xFFFFFFFFFFFFF000, 0x7FFFFFFFF000])
def test_bad_type_pointer(box: Container, queue: Keyring, pointer: int) -> None:
    assert _errno(upcalls.keyctl_raw, KEYCTL_CONTAINER_INTERCEPT, box.fd, pointer, 0,
                  queue.serial) == errno.EFAULT


def test_bad_fds(queue: Keyring) -> None:
    read_end, write_end = os.pipe()
    try:
        assert _errno(upcalls.intercept, read_end, "user", 0, queue.serial) == errno.EINVAL
    finally:
        os.close(read_end)
        os.close(write_end)
    assert _errno(upcalls.intercept, read_end, "user", 0, queue.serial) == errno.EBADF
    assert _errno(upcalls.intercept, -1, "user", 0, queue.serial) == errno.EBADF


def test_bad_queues(session_keyring: int, box: Container) -> None:
    session = Keyring(session_keyring)
    plain = session.add("user", "kcont-err:plain", b"x")
    assert _errno(upcalls.intercept, box.fd, "user", 0, plain.serial) == errno.ENOTDIR
    assert _errno(upcalls.intercept, box.fd, "user", 0, 0x7FFFFFF0) == errno.ENOKEY
    locked = session.add_keyring("kcont-err-locked")
    locked.setperm(0x0B000000)          # possessor View, Read, Search: no Write
    assert _errno(upcalls.intercept, box.fd, "user", 0, locked.serial) == errno.EACCES
    revoked = session.add_keyring("kcont-err-revoked")
    revoked.revoke()
    assert _errno(upcalls.intercept, box.fd, "user", 0, revoked.serial) == errno.EKEYREVOKED


def test_duplicate_and_limit(box: Container, queue: Keyring) -> None:
    box.intercept("user", ns={"uts"}, queue=queue.serial)
    assert _errno(box.intercept, "user", ns={"uts"}, queue=queue.serial) == errno.EEXIST
    with sysctl("kernel.keys.max_intercepts", "3"):
        box.intercept("user", ns={"ipc"}, queue=queue.serial)
        box.intercept("*", queue=queue.serial)
        assert _errno(box.intercept, "logon", queue=queue.serial) == errno.ENOSPC
    assert box.remove_intercepts("user", ns={"uts"}) == 1
    assert box.remove_intercepts("user", ns={"uts"}) == 0


def test_dead_container(queue: Keyring) -> None:
    with Container("kcont-err-dead") as dead:
        pid = dead.fork()
        if pid == 0:
            os._exit(0)
        dead.wait()
        assert dead.dead
        assert _errno(dead.intercept, "user", queue=queue.serial) == errno.ECANCELED


def _as_nobody(body) -> int | None:  # type: ignore[no-untyped-def]
    """Run ``body`` in a child that dropped to uid/gid 65534 (no capabilities)."""
    from containers import errno_in_child

    def dropped() -> None:
        adversary.become(adversary.NOBODY)
        body()

    return errno_in_child(dropped)


def test_every_op_needs_cap_sys_admin_in_the_containers_user_ns(
        box: Container, queue: Keyring, session_keyring: int) -> None:
    assert _as_nobody(lambda: upcalls.intercept(box.fd, "user", 0, queue.serial)) == errno.EPERM
    assert _as_nobody(lambda: upcalls.remove_intercepts(box.fd)) == errno.EPERM
    assert _as_nobody(lambda: upcalls.set_container_keyring(box.fd, queue.serial)) == errno.EPERM


def test_a_daemon_owning_its_user_ns_may_intercept_for_its_container_only(
        queue: Keyring) -> None:
    with Container("kcont-err-parent") as parent, \
            Container("kcont-err-userns", ns={"user"}) as own:
        daemon = Agent(own)
        try:
            daemon.call("intercept", own.fd, "user", 0, queue.serial)
            with pytest.raises(OSError) as denied:
                daemon.call("intercept", parent.fd, "user", 0, queue.serial)
            removed = daemon.call("remove_intercepts", own.fd, None, 0)
        finally:
            daemon.stop()
    assert denied.value.errno == errno.EPERM
    assert removed == 1


def test_delivery_to_a_revoked_queue_fails_with_ekeyrevoked(queue: Keyring) -> None:
    with Container("kcont-err-rq", trusted=True) as box:
        box.intercept("user", queue=queue.serial)
        queue.revoke()
        result = request_in(box, "user", unique("revoked-q"))
    assert result.get("errno") == errno.EKEYREVOKED, result


def test_query_errors(session_keyring: int, queue: Keyring) -> None:
    plain = Keyring(session_keyring).add("user", "kcont-err:q", b"x")
    assert _errno(upcalls.query_auth, plain.serial) == errno.EINVAL
    assert _errno(upcalls.query_auth, 0x7FFFFFF0) == errno.ENOKEY
    with Container("kcont-err-query", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        agent = Agent(box)
        try:
            pending = agent.request("user", unique("query"))
            (auth,) = wait_queued([queue], 1)[queue.serial]
            bad_buffer = _errno(upcalls.keyctl_raw, KEYCTL_QUERY_REQUEST_KEY_AUTH, auth, 1)
            serve(auth)
            pending.result()
            after = _errno(upcalls.query_auth, auth)
        finally:
            agent.stop()
    assert bad_buffer == errno.EFAULT
    assert after in (errno.EKEYREVOKED, errno.ENOKEY)
