"""Bad input to every new system call and keyctl op gets a documented errno.

Hypothesis throws at each entry point, through the raw syscall(2) so that
no wrapper tidies the arguments: random and extreme integers; NULL,
unmapped, kernel and read-only pointers; huge lengths; closed fds and fds
of the wrong kind (eventfd, pidfd, a regular file, a keyring serial used
as an fd).  The only allowed results are success (undone at once) and the
errnos the series documents for that call (its kernel-doc "Return:" and
docs/).  Kernel reports fail the guest run as a whole.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from budget import examples
from conftest import RESULTS
from fail_nth import NAMESPACE_FAULT_ERRNOS, faults_allowed, nth_failure
from hypothesis import given, settings
from hypothesis import strategies as st

from kcont import upcalls
from kcont._binding import keyctl_lib, lib
from kcont.container import NAMESPACE_FLAGS, Container, create_raw
from kcont.keys import Keyring

# The numbers as the binding was compiled with them, from the series'
# uapi headers: a renumbered syscall or op cannot leave this file behind.
NR_CONTAINER_CREATE = lib.NR_container_create
NR_FORK_INTO_CONTAINER = lib.NR_fork_into_container
NR_KEYCTL = keyctl_lib.NR_keyctl
INTERCEPT = keyctl_lib.KEYCTL_CONTAINER_INTERCEPT
QUERY = keyctl_lib.KEYCTL_QUERY_REQUEST_KEY_AUTH
SET_KEYRING = keyctl_lib.KEYCTL_SET_CONTAINER_KEYRING
GRANT = keyctl_lib.KEYCTL_GRANT_PERMISSION
SUBJ_CONTAINER = keyctl_lib.KEY_ACE_SUBJ_CONTAINER
ALL_NAMESPACES = int(sum(NAMESPACE_FLAGS.values()))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]

LOOKUP = {errno.ENOKEY, errno.EACCES, errno.EKEYREVOKED, errno.EKEYEXPIRED, errno.ENOMEM,
          errno.EINVAL, errno.EPERM}
ALLOWED = {
    "container_create": {errno.EINVAL, errno.ENAMETOOLONG, errno.EFAULT, errno.EPERM,
                         errno.EOPNOTSUPP, errno.ENOMEM, errno.ENOSPC, errno.EMFILE,
                         errno.ENFILE},
    "fork_into_container": {errno.EBADF, errno.EINVAL, errno.ECANCELED, errno.ENOMEM,
                            errno.EAGAIN, errno.EPERM},
    "intercept": {errno.EBADF, errno.EINVAL, errno.EFAULT, errno.EPERM, errno.EACCES,
                  errno.ENOKEY, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.ECANCELED,
                  errno.ENOMEM} | LOOKUP,
    "query": {errno.EINVAL, errno.EKEYREVOKED, errno.EFAULT} | LOOKUP,
    "set_keyring": {errno.EBADF, errno.EINVAL, errno.EPERM, errno.ENOTDIR,
                    errno.EBUSY} | LOOKUP,
    "grant": {errno.EINVAL, errno.EBADF, errno.ENOSPC, errno.ENOMEM} | LOOKUP,
}


def raw(nr: int, *args: int) -> tuple[int, int]:
    """syscall(nr, args...): (return value, errno)."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a & (2**64 - 1)) for a in args))
    return ret, ctypes.get_errno()


@dataclass
class Targets:
    """Things worth pointing bad arguments at, made once per module."""

    box: Container
    queue: int
    key: int
    fds: dict[str, int]
    pointers: dict[str, int]


@pytest.fixture(scope="module")
def targets() -> Iterator[Targets]:
    session = Keyring.join_session()
    queue = session.add_keyring("kcont-bad-q")
    key = session.add("user", "kcont-bad-key", b"x")
    box = Container("kcont-bad", kill_on_close=True)
    closed = os.open("/dev/null", os.O_RDONLY)
    os.close(closed)
    fds = {"container": box.fd, "closed": closed, "eventfd": os.eventfd(0),
           "pidfd": os.pidfd_open(os.getpid()), "file": os.open("/proc/self/stat", os.O_RDONLY),
           "keyring-serial": queue.serial & 0x7FFFFFFF, "negative": -1, "huge": 2**31 - 1}
    # Make the kernel's lazily created caches (a PID namespace's "pid_2"
    # slab, say) now, not under injected faults: 6.1's sysfs_slab_add()
    # leaks the cache's kobject name when kobject_init_and_add() fails
    # (no kobject_put()), an upstream bug outside the series that
    # test_bad_input_under_faults found (docs/reliability.md).
    os.close(create_raw("kcont-bad-warm", ALL_NAMESPACES))
    readonly = _libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                          -1, 0)
    writable = ctypes.create_string_buffer(b"user\0", 4096)
    pointers = {"null": 0, "low": 0x10, "unmapped": 0xDEAD0000,
                "kernel": 0xFFFF888000000000, "noncanonical": 0x8000000000000000,
                "readonly": readonly, "string": ctypes.addressof(writable)}
    try:
        yield Targets(box, queue.serial, key.serial, fds, pointers)
    finally:
        for name in ("eventfd", "pidfd", "file"):
            os.close(fds[name])
        _libc.munmap(ctypes.c_void_p(readonly), 4096)
        box.close()
        del writable


INTS = st.one_of(st.integers(-3, 40), st.sampled_from([2**31 - 1, -2**31, 2**32 - 1, 2**63 - 1,
                                                      -2**63, 2**64 - 1, 0x7FF, 0x800, 0xFFF]),
                 st.integers(-2**63, 2**64 - 1))


def fd_arg(t: Targets) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(sorted(t.fds.values())), INTS)


def other_fd_arg(t: Targets) -> st.SearchStrategy[int]:
    """Any fd but the live container's: a success there would fork into it,
    or attach a keyring to it for good."""
    return st.one_of(st.sampled_from(sorted(v for k, v in t.fds.items() if k != "container")),
                     INTS)


def ptr_arg(t: Targets) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(sorted(t.pointers.values())), INTS)


def serial_arg(t: Targets) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([t.queue, t.key, 0, -1, -3, -7, -9, -10]), INTS)


CALLS: Counter[str] = Counter()   # op: outcome -> calls, for docs/reliability.md


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    (RESULTS / "bad-input.json").write_text(json.dumps(CALLS, indent=1, sort_keys=True) + "\n")


def check(op: str, ret: int, err: int) -> None:
    CALLS[f"{op}: {'ok' if ret >= 0 else errno.errorcode.get(err, err)}"] += 1
    if ret >= 0:
        return
    assert err in ALLOWED[op], f"{op}: undocumented {errno.errorcode.get(err, err)}"


@dataclass(frozen=True)
class Call:
    """One raw call drawn by a fuzzer, and how to undo it if it succeeded."""

    op: str
    nr: int
    args: tuple[int, ...]
    undo: Callable[[int], object] = lambda ret: None

    def make(self) -> tuple[int, int]:
        return raw(self.nr, *self.args)


def draw_create(t: Targets, data: st.DataObject) -> Call:
    name = data.draw(ptr_arg(t), "name")
    flags = data.draw(st.one_of(st.integers(0, 0xFFF), INTS), "flags")
    spares = [data.draw(st.one_of(st.just(0), INTS), f"spare{i}") for i in range(3)]
    return Call("container_create", NR_CONTAINER_CREATE, (name, flags, *spares), os.close)


def draw_intercept(t: Targets, data: st.DataObject) -> Call:
    fd = data.draw(fd_arg(t), "fd")
    key_type = data.draw(ptr_arg(t), "type")
    mask = data.draw(st.one_of(st.integers(0, 0xFF), INTS), "mask")
    queue = data.draw(serial_arg(t), "queue")
    return Call("intercept", NR_KEYCTL, (INTERCEPT, fd, key_type, mask, queue),
                lambda ret: upcalls.remove_intercepts(t.box.fd, None, 0))


def draw_query(t: Targets, data: st.DataObject) -> Call:
    return Call("query", NR_KEYCTL, (QUERY, data.draw(serial_arg(t), "auth"),
                                     data.draw(ptr_arg(t), "buf")))


def draw_set_keyring(t: Targets, data: st.DataObject) -> Call:
    fd = data.draw(other_fd_arg(t), "fd")
    return Call("set_keyring", NR_KEYCTL, (SET_KEYRING, fd, data.draw(serial_arg(t), "keyring")))


def draw_grant(t: Targets, data: st.DataObject) -> Call:
    key = data.draw(serial_arg(t), "key")
    subject_type = data.draw(st.one_of(st.integers(0, 3), INTS), "subject_type")
    subject = data.draw(fd_arg(t), "subject")
    perm = data.draw(st.one_of(st.integers(0, 0x1FF), INTS), "perm")
    return Call("grant", NR_KEYCTL, (GRANT, key, subject_type, subject, perm),
                lambda ret: raw(NR_KEYCTL, GRANT, key, subject_type, subject, 0))


DRAWERS: dict[str, Callable[[Targets, st.DataObject], Call]] = {
    "container_create": draw_create, "intercept": draw_intercept, "query": draw_query,
    "set_keyring": draw_set_keyring, "grant": draw_grant}


def run(call: Call) -> None:
    ret, err = call.make()
    if ret >= 0:
        call.undo(ret)
    check(call.op, ret, err)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_container_create(targets: Targets, data: st.DataObject) -> None:
    run(draw_create(targets, data))


@settings(max_examples=examples(100))
@given(data=st.data())
def test_fork_into_container(targets: Targets, data: st.DataObject) -> None:
    fd = data.draw(other_fd_arg(targets), "fd")
    ret, err = raw(NR_FORK_INTO_CONTAINER, fd)
    if ret == 0:
        os._exit(0)
    if ret > 0:
        os.waitpid(ret, 0)
    check("fork_into_container", ret, err)


@settings(max_examples=examples(200))
@given(data=st.data())
def test_keyctl_intercept(targets: Targets, data: st.DataObject) -> None:
    run(draw_intercept(targets, data))


@settings(max_examples=examples(150))
@given(data=st.data())
def test_keyctl_query(targets: Targets, data: st.DataObject) -> None:
    run(draw_query(targets, data))


@settings(max_examples=examples(150))
@given(data=st.data())
def test_keyctl_set_container_keyring(targets: Targets, data: st.DataObject) -> None:
    run(draw_set_keyring(targets, data))


@settings(max_examples=examples(200))
@given(data=st.data())
def test_keyctl_grant(targets: Targets, data: st.DataObject) -> None:
    run(draw_grant(targets, data))


# A failed allocation adds ENOMEM (documented for every call) and, for
# container_create, what namespace creation returns (test_fault_injection).
FAULT_ERRNOS = {"container_create": set().union(*NAMESPACE_FAULT_ERRNOS.values())}
CREATE_KINDS = (0, lib.CONTAINER_NEW_UTS_NS | lib.CONTAINER_NEW_IPC_NS, lib.CONTAINER_NEW_NET_NS,
                lib.CONTAINER_NEW_USER_NS | lib.CONTAINER_NEW_PID_NS, lib.CONTAINER_NEW_FS_NS,
                lib.CONTAINER_NEW_CGROUP_NS | lib.CONTAINER_UNTRUSTED)


def draw_valid(t: Targets, data: st.DataObject, op: str) -> Call | None:
    """Arguments that get past the checks, so that the call reaches its
    allocations (random ones mostly fail before any); None where a valid
    call would change the shared targets for good."""
    string = t.pointers["string"]           # "user"
    if op == "container_create":
        flags = data.draw(st.sampled_from(CREATE_KINDS), "flags") | lib.CONTAINER_FD_CLOEXEC
        return Call(op, NR_CONTAINER_CREATE, (string, flags, 0, 0, 0), os.close)
    if op == "intercept":
        mask = data.draw(st.integers(0, keyctl_lib.KEY_INTERCEPT__NS_MASK), "mask")
        return Call(op, NR_KEYCTL, (INTERCEPT, t.box.fd, string, mask, t.queue),
                    lambda ret: upcalls.remove_intercepts(t.box.fd, None, 0))
    if op == "grant":
        perm = data.draw(st.integers(1, keyctl_lib.KEY_ACE__PERMS), "perm")
        return Call(op, NR_KEYCTL, (GRANT, t.key, SUBJ_CONTAINER, t.box.fd, perm),
                    lambda ret: raw(NR_KEYCTL, GRANT, t.key, SUBJ_CONTAINER, t.box.fd, 0))
    return None


@settings(max_examples=examples(250))
@given(data=st.data(), op=st.sampled_from(sorted(DRAWERS)), valid=st.booleans(),
       nth=st.one_of(st.integers(1, 3), st.integers(1, 64)))
def test_bad_input_under_faults(targets: Targets, data: st.DataObject, op: str, valid: bool,
                                nth: int) -> None:
    """The fuzzer with its call's Nth fault point failing (fail-nth fails
    only this thread's allocations: the task filter), half the time with
    arguments valid enough to reach the allocations: still nothing but
    documented errnos, and, judged by the harness, no report and no leak."""
    call = (valid and draw_valid(targets, data, op)) or DRAWERS[op](targets, data)
    with faults_allowed():
        reached, outcome = nth_failure(nth, call.make)
    ret, err = outcome  # type: ignore[misc]
    if ret >= 0:
        call.undo(ret)
    CALLS[f"under faults: {op}: fault {'injected' if reached else 'not reached'}"] += 1
    allowed = ALLOWED[op] | (FAULT_ERRNOS.get(op, set()) if reached else set())
    assert ret >= 0 or err in allowed, f"{op}: undocumented {errno.errorcode.get(err, err)}"
