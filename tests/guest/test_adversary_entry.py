"""The attacker at the door: holding a container's fd is not enough to enter it.

Entering a container gives the child the container's credentials,
namespaces and root.  The kernel asks of the caller what setns() of each
of those namespaces and a change to those credentials would ask, refuses
a gain under ``no_new_privs``, never lets a tracer follow, and makes the
fd close-on-exec unless asked otherwise.  Each test here is an attempt to
get in without those rights; each is refused with EPERM.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import adversary
import pytest
from containers import run_child
from upcall_fixtures import sysctl

from kcont import _binding
from kcont.container import Container, Flag, clone_into, create_raw, fork_into, unshare

OTHER_UID = 1001
WALL = 0x40000000
OWNER_UID = 1000


ENTRIES: dict[str, Callable[[int], int]] = {"clone3": clone_into,
                                            "fork_into_container": fork_into}
# The way in the tests below use; each test runs with both.
_entry = clone_into


@pytest.fixture(params=sorted(ENTRIES))
def entry(request: pytest.FixtureRequest) -> Iterator[str]:
    global _entry
    _entry = ENTRIES[request.param]
    yield request.param
    _entry = clone_into


def try_enter(fd: int) -> int | str:
    """Enter the container behind ``fd``: the errno, or what the child saw
    ('entered as root', 'entered') if the kernel let the caller in."""
    try:
        pid = _entry(fd)
    except OSError as err:
        return err.errno or -1
    if pid == 0:
        os._exit(0 if os.getuid() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return "entered as root" if os.waitstatus_to_exitcode(status) == 0 else "entered"


def send_fd(fd: int, receive: Callable[[socket.socket], object]) -> object:
    """Pass ``fd`` over SCM_RIGHTS to a child that runs ``receive(sock)``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        def child() -> object:
            ours.close()
            return receive(theirs)

        pid_result: list[object] = []
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            try:
                os.write(wfd, repr(child()).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        theirs.close()
        socket.send_fds(ours, [b"x"], [fd])
        with os.fdopen(rfd) as report:
            pid_result.append(report.read())
        os.waitpid(pid, 0)
        return pid_result[0]
    finally:
        ours.close()


@pytest.fixture
def root_container() -> Iterator[Container]:
    """A container made by root, with new namespaces: its members are root."""
    with Container("adv-root", ns={"uts", "net", "ipc", "mnt"}) as c:
        yield c


def test_an_unprivileged_task_that_inherits_a_root_containers_fd_cannot_enter(
        root_container: Container, entry: str) -> None:
    def body() -> int | str:
        adversary.become(adversary.NOBODY)
        return try_enter(root_container.fd)

    assert run_child(os.fork, body) == errno.EPERM


def test_an_unprivileged_task_sent_the_fd_over_scm_rights_cannot_enter(
        root_container: Container, entry: str) -> None:
    def receive(sock: socket.socket) -> int | str:
        adversary.become(adversary.NOBODY)
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
        return try_enter(fds[0])

    assert send_fd(root_container.fd, receive) == repr(errno.EPERM)


def test_an_unprivileged_task_that_steals_the_fd_with_pidfd_getfd_cannot_enter(
        root_container: Container, entry: str) -> None:
    """A holder that dropped to nobody and exec'd keeps the fd; another
    nobody process, allowed to ptrace it (same uid, dumpable once it has
    exec'd), takes it with pidfd_getfd()."""
    os.set_inheritable(root_container.fd, True)
    holder = os.fork()
    if holder == 0:
        adversary.become(adversary.NOBODY)
        os.execvp("sleep", ["sleep", "60"])
    try:
        def steal() -> int | str:
            adversary.become(adversary.NOBODY)
            stolen = adversary.pidfd_getfd(holder, root_container.fd)
            return try_enter(stolen)

        deadline = time.monotonic() + 30
        while Path(f"/proc/{holder}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "the holder never exec'd"
            time.sleep(0.05)
        assert run_child(os.fork, steal) == errno.EPERM
    finally:
        os.kill(holder, 9)
        os.waitpid(holder, 0)


def test_another_uid_cannot_enter_a_user_namespace_container(entry: str) -> None:
    """uid 1000 makes a container with its own user namespace (full
    capabilities inside) and sends the fd out; uid 1001 must not get in,
    the owner still does (afterwards: its child is the init, and the
    container dies with it)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with sysctl("kernel.unprivileged_userns_clone", "1"):
        owner = os.fork()
        if owner == 0:
            body_of_owner(ours, theirs)
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 64, 1)
    try:
        def other() -> int | str:
            adversary.become(OTHER_UID)
            return try_enter(fds[0])

        other_result = run_child(os.fork, other)
        ours.send(b"go")
        # The owner is unmapped inside: its child sees the overflow uid.
        assert (other_result, ours.recv(64)) == (errno.EPERM, b"'entered'")
    finally:
        ours.close()
        os.close(fds[0])
        os.waitpid(owner, 0)


def body_of_owner(ours: socket.socket, theirs: socket.socket) -> None:
    """uid 1000: make the container, try it, send the fd, wait; never returns."""
    ours.close()
    try:
        adversary.become(OWNER_UID)
        with Container("adv-userns", ns={"user", "uts"}) as c:
            socket.send_fds(theirs, [b"fd"], [c.fd])
            theirs.recv(2)  # the other uid has tried
            theirs.send(repr(try_enter(c.fd)).encode())
    finally:
        os._exit(0)


@pytest.mark.parametrize("nnp", [False, True], ids=["plain", "no_new_privs"])
def test_no_new_privs_refuses_entry_that_gains_capabilities(root_container: Container,
                                                             nnp: bool, entry: str) -> None:
    """A root task keeping only what entry needs (CAP_SYS_ADMIN,
    CAP_SYS_CHROOT) may enter a root container, which has every
    capability: a gain.  Under no_new_privs it must not."""
    def body() -> int | str:
        adversary.keep_only_caps(adversary.CAP_SYS_ADMIN, adversary.CAP_SYS_CHROOT)
        if nnp:
            adversary.no_new_privs()
        return try_enter(root_container.fd)

    assert run_child(os.fork, body) == (errno.EPERM if nnp else "entered as root")


def test_a_task_in_another_pid_namespace_cannot_enter_one_it_cannot_see(entry: str) -> None:
    """setns() enters only the caller's pid namespace or a descendant."""
    with Container("adv-pid", ns={"pid"}) as c:
        def body() -> int | str:
            unshare(["pid"])
            return run_child(os.fork, lambda: try_enter(c.fd))

        assert run_child(os.fork, body) == errno.EPERM


def test_the_fd_is_close_on_exec_unless_asked() -> None:
    fd = create_raw("adv-cloexec", 0)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)
    fd = create_raw("adv-keep", Flag.FD_NO_CLOEXEC)
    try:
        assert not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)


def test_a_tracer_following_forks_does_not_follow_into_the_container(
        root_container: Container, entry: str) -> None:
    """The child that enters is never auto-attached (CLONE_UNTRACED):
    entry may change credentials, as exec of a set-uid program does."""
    rfd, wfd = os.pipe()
    tracee = os.fork()
    if tracee == 0:
        os.close(rfd)
        adversary.traceme()
        pid = _entry(root_container.fd)
        if pid == 0:
            os.execvp("sleep", ["sleep", "30"])
        os.write(wfd, f"{pid}\n".encode())
        os._exit(0)
    os.close(wfd)
    _, status = os.waitpid(tracee, 0)
    assert os.WIFSTOPPED(status)
    adversary.trace_forks(tracee)
    events = []
    while True:
        _, status = os.waitpid(tracee, 0)
        if os.WIFEXITED(status):
            break
        events.append(status >> 16)
        adversary.cont(tracee)
    with os.fdopen(rfd) as report:  # a line: the child holds the pipe too
        child = int(report.readline())
    try:
        tracer = adversary.tracer_of(child)
    finally:
        os.kill(child, 9)
        if tracer:  # ours to reap: a tracee is waited for with __WALL
            os.waitpid(child, WALL)
    assert (events, tracer) == ([], 0)


REFUSED_FLAGS = ["CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SYSVSEM", "CLONE_PARENT",
                 "CLONE_PTRACE", "CLONE_IO"]


def probe(fd: int, flags: int = 0, size: int | None = None) -> tuple[int, int]:
    """clone3(CLONE_INTO_CONTAINER | flags) with clone_args of ``size``
    bytes (default: the whole struct): (result, errno).  A child the kernel
    should not have made is reaped (it exited at once)."""
    lib = _binding.lib
    result = lib.kcont_clone_into_container_probe(
        fd, flags, lib.CLONE_ARGS_SIZE_VER3 if size is None else size)
    err = _binding.ffi.errno
    if result > 0:
        os.waitpid(result, 0)
    return result, err


@pytest.mark.parametrize("flag", REFUSED_FLAGS)
def test_clone3_refuses_flags_that_would_share_across_the_boundary(root_container: Container,
                                                                   flag: str) -> None:
    """The child must share nothing that the container separates from the
    caller: memory, fs, fd table, SysV undo, parent, tracer, io context."""
    assert probe(root_container.fd, getattr(_binding.lib, flag)) == (-1, errno.EINVAL)


def test_clone3_needs_the_struct_that_holds_the_container_fd(root_container: Container) -> None:
    assert probe(root_container.fd, size=_binding.lib.CLONE_ARGS_SIZE_VER2) == (-1, errno.EINVAL)


@pytest.mark.parametrize("fd,expected",
                         [(9999, errno.EBADF), (0, errno.EINVAL), (-1, errno.EINVAL)],
                         ids=["not-open", "not-a-container", "negative"])
def test_clone3_with_a_bad_fd(fd: int, expected: int) -> None:
    assert probe(fd) == (-1, expected)
