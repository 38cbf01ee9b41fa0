"""Attacks on the routing models' own surface: the switch, the user-namespace
registration, and the helper forked in the requester's context.

Written as an attacker would: a user with no capabilities, hostile
arguments, a registration for a namespace the caller does not own, a
requester that is killed while its helper runs, a requester confined by
no_new_privs and seccomp whose helper must stay as confined.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from adversary import NOBODY, become, no_new_privs
from agents import Agent
from containers import errno_in_child, reaped_within, run_child
from design_catalogue import QUEUE_PERM, route_of, route_tracing, select_when_unregistered
from upcall_fixtures import MARK_PREFIX, host_request_key_conf, sysctl, unique

from kcont import upcall_models, upcalls
from kcont.container import Container, unshare
from kcont.keys import Keyring, request_key

MODEL = Path("/proc/sys/kernel/keys/upcall_model")
KEYCTL_USERNS_INTERCEPT = int(upcalls.keyctl_lib.KEYCTL_USERNS_INTERCEPT)
USERNS_FD_PATH = "/proc/self/ns/user"


@pytest.fixture(scope="module")
def traced() -> Iterator[Path]:
    with route_tracing() as trace:
        yield trace


@pytest.fixture
def model_back() -> Iterator[None]:
    """Whatever a test selects, the container model after it."""
    try:
        yield
    finally:
        select_when_unregistered("container", False)


def _queue(session: int, name: str) -> Keyring:
    ring = Keyring(session).add_keyring(f"kcont-am-{name}")
    ring.setperm(QUEUE_PERM)
    return ring


def _userns_register(key_type: str, mask: int, queue: int, path: str = USERNS_FD_PATH) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        upcalls.userns_intercept(fd, key_type, mask, queue)
    finally:
        os.close(fd)


def _userns_remove(path: str = USERNS_FD_PATH) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return upcalls.remove_userns_intercepts(fd)
    finally:
        os.close(fd)


# The switch.

def test_the_model_cannot_change_while_a_registration_exists(session_keyring: int,
                                                             model_back: None) -> None:
    queue = _queue(session_keyring, "busy")
    with Container("kcont-am-busy", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        with pytest.raises(OSError) as busy:
            upcall_models.select("userns-walk")
        assert busy.value.errno == errno.EBUSY and upcall_models.active() == "container"
        # The same model again is no change: allowed.
        upcall_models.select("container")
        box.remove_intercepts()
    upcall_models.select("userns-walk")
    _userns_register("user", 0, queue.serial)
    with pytest.raises(OSError) as busy:
        upcall_models.select("container")
    assert busy.value.errno == errno.EBUSY and upcall_models.active() == "userns-walk"
    assert _userns_remove() == 1
    upcall_models.select("container")


@pytest.mark.parametrize("name", ["\n", "x" * 200, "containerx", "userns", "helper-in",
                                  "container container", "\udcff"])
def test_a_hostile_model_name_is_refused_and_changes_nothing(name: str,
                                                             model_back: None) -> None:
    raw = name.encode(errors="surrogateescape")
    fd = os.open(MODEL, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as bad:
            os.write(fd, raw)
    finally:
        os.close(fd)
    assert bad.value.errno == errno.EINVAL
    assert upcall_models.active() == "container"


def test_a_name_written_at_an_offset_is_refused(model_back: None) -> None:
    """No editing the current name in place ("container" + "x" at 9)."""
    fd = os.open(MODEL, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as bad:
            os.pwrite(fd, b"-walk", 6)
    finally:
        os.close(fd)
    assert bad.value.errno == errno.EINVAL and upcall_models.active() == "container"


def test_a_user_without_privilege_cannot_switch_the_model(model_back: None) -> None:
    def attempt() -> None:
        become(NOBODY)
        MODEL.write_text("helper-in-context")

    assert errno_in_child(attempt) == errno.EACCES
    assert upcall_models.active() == "container"


def test_a_registration_of_another_model_is_refused(session_keyring: int,
                                                    model_back: None) -> None:
    queue = _queue(session_keyring, "other")
    with pytest.raises(OSError) as wrong:
        _userns_register("user", 0, queue.serial)
    assert wrong.value.errno == errno.EOPNOTSUPP
    upcall_models.select("userns-intercept")
    with Container("kcont-am-other", trusted=False) as box:
        with pytest.raises(OSError) as wrong:
            box.intercept("user", queue=queue.serial)
        assert wrong.value.errno == errno.EOPNOTSUPP
    upcall_models.select("helper-in-context")
    with pytest.raises(OSError) as wrong:
        _userns_register("user", 0, queue.serial)
    assert wrong.value.errno == errno.EOPNOTSUPP


# KEYCTL_USERNS_INTERCEPT's arguments.

def test_every_bad_registration_gets_its_errno(session_keyring: int, model_back: None,
                                               tmp_path: Path) -> None:
    upcall_models.select("userns-walk")
    queue = _queue(session_keyring, "bad")
    user_key = Keyring(session_keyring).add("user", "kcont-am-notaring", "x")
    plain = tmp_path / "plain"
    plain.write_text("")

    def code(call: object) -> int:
        try:
            assert callable(call)
            call()
        except OSError as err:
            return err.errno or 0
        return 0

    assert code(lambda: upcalls.userns_intercept(9999, "user", 0, queue.serial)) == errno.EBADF
    assert code(lambda: _userns_register("user", 0, queue.serial, str(plain))) == errno.EINVAL
    assert code(lambda: _userns_register("user", 0, queue.serial,
                                         "/proc/self/ns/net")) == errno.EINVAL
    assert code(lambda: _userns_register("user", 0x80, queue.serial)) == errno.EINVAL
    # A mask means nothing to userns-walk: refused rather than ignored.
    assert code(lambda: _userns_register("user", 0x10, queue.serial)) == errno.EINVAL
    assert code(lambda: _userns_register("", 0, queue.serial)) == errno.EINVAL
    assert code(lambda: _userns_register("us*", 0, queue.serial)) == errno.EINVAL
    assert code(lambda: _userns_register("t" * 40, 0, queue.serial)) == errno.EINVAL
    assert code(lambda: _userns_register("user", 0, user_key.serial)) == errno.ENOTDIR
    assert code(lambda: _userns_register("user", 0, 0x7FFFFFF0)) == errno.ENOKEY
    fd = os.open(USERNS_FD_PATH, os.O_RDONLY)
    try:
        # A type pointer into nowhere.
        with pytest.raises(OSError) as fault:
            upcalls.keyctl_raw(KEYCTL_USERNS_INTERCEPT, fd, 8, 0, queue.serial)
        assert fault.value.errno == errno.EFAULT
    finally:
        os.close(fd)
    _userns_register("user", 0, queue.serial)
    assert code(lambda: _userns_register("user", 0, queue.serial)) == errno.EEXIST
    with sysctl("kernel.keys.max_intercepts", "3"):
        rings = [_queue(session_keyring, f"flood{i}") for i in range(3)]
        results = [code(lambda r=ring: _userns_register("user", 0, r.serial))
                   for ring in rings]
    assert results == [0, 0, errno.ENOSPC]
    assert _userns_remove() == 3


def test_no_capability_no_registration(session_keyring: int, model_back: None) -> None:
    """A user with no capabilities in the host's user namespace, and root
    confined by no_new_privs with every capability dropped, cannot register
    for it: that would take every host request with no daemon of its own."""
    upcall_models.select("userns-walk")
    queue = _queue(session_keyring, "nocap")

    def as_nobody() -> None:
        become(NOBODY)
        _userns_register("*", 0, queue.serial)

    def capless_root() -> None:
        from adversary import keep_only_caps
        no_new_privs()
        keep_only_caps()
        _userns_register("*", 0, queue.serial)

    assert errno_in_child(as_nobody) == errno.EPERM
    assert errno_in_child(capless_root) == errno.EPERM


def test_an_unprivileged_users_registration_sees_only_its_own_namespace(
        session_keyring: int, model_back: None, traced: Path) -> None:
    """Anyone may create a user namespace and register for it (the design
    needs no privilege), and gets only the requests made inside it: the
    host's own requests still go to the helper."""
    upcall_models.select("userns-walk")
    queue = Keyring(session_keyring).add_keyring("kcont-am-unpriv")
    queue.setperm(0x3F3F3F3F)
    mine = unique("unpriv-own")

    def unprivileged() -> dict[str, object]:
        become(1000)
        unshare(["user"])
        _userns_register("user", 0, queue.serial)
        pid = os.fork()
        if pid == 0:
            try:
                request_key("user", mine, "x")
            finally:
                os._exit(0)
        return {"pid": pid}

    with sysctl("kernel.unprivileged_userns_clone", "1"), \
            sysctl("kernel.keys.intercept_timeout", "2"):
        run_child(os.fork, unprivileged)
    hosts = unique("unpriv-host")
    with host_request_key_conf(f"create user {hosts} * /bin/keyctl instantiate %k host %S\n"):
        key = request_key("user", hosts, "x")
    assert key.read() == b"host"
    assert route_of(traced, hosts)["route"] == "helper"
    routed = route_of(traced, mine)
    assert routed["route"] == "intercepted" and routed["model"] == "userns-walk"


def test_an_unprivileged_user_registers_for_a_container_it_made(session_keyring: int,
                                                                model_back: None) -> None:
    """The container model needs no privilege either: a user makes a
    container with a user namespace of its own and is root there, which is
    what adding a record asks; the host's init_container has no fd, so
    nobody registers for the host's requests this way."""
    queue = Keyring(session_keyring).add_keyring("kcont-am-unpriv-ctr")
    queue.setperm(0x3F3F3F3F)

    def unprivileged() -> int:
        become(1000)
        with Container("kcont-am-unpriv", ns={"user", "uts"}, trusted=False) as box:
            box.intercept("user", queue=queue.serial)
            return box.remove_intercepts()

    with sysctl("kernel.unprivileged_userns_clone", "1"):
        assert run_child(os.fork, unprivileged) == 1


# helper-in-context: the helper is the requester's, and no more.

CTX_SCRIPT = Path("/tmp/kcont-ctx-helper")
CTX_MARKS = Path("/tmp/kcont-ctx-marks")


@pytest.fixture
def context_helper() -> Iterator[str]:
    """A request-key.conf line for "kcont-ctx:*" whose program records who
    and where it ran: uid, NoNewPrivs, Seccomp, network namespace, and
    whether it holds the requester's fd 77."""
    CTX_SCRIPT.write_text(
        '#!/bin/sh\n'
        'fd=no; [ -e /proc/$$/fd/77 ] && fd=yes\n'
        'echo "$2 uid=$(id -u) $(grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status'
        ' | tr -d "\\t" | tr "\\n" " ")net=$(stat -L -c %i /proc/self/ns/net) fd77=$fd"'
        ' >> /tmp/kcont-ctx-marks\n'
        'case "$2" in *sleep*) sleep 20 ;; esac\n'
        'exec /bin/keyctl instantiate "$1" ctx "$3"\n')
    CTX_SCRIPT.chmod(0o755)
    CTX_MARKS.write_text("")
    CTX_MARKS.chmod(0o666)
    # request-key.conf patterns take one "*", at the end: the prefix unique() gives.
    with host_request_key_conf(f"create user {MARK_PREFIX}kcont-ctx:* * {CTX_SCRIPT}"
                               " %k %d %S\n"):
        yield "kcont-ctx:"


def _marks() -> dict[str, str]:
    lines = [line.split(" ", 1) for line in CTX_MARKS.read_text().splitlines() if line]
    return {desc: rest for desc, rest in lines}


SECCOMP_SET_MODE_FILTER = 1
SYS_SECCOMP = 317


def allow_all_seccomp_filter() -> None:
    """A seccomp filter that allows everything: enough to see it inherited."""
    insn = struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000)  # BPF_RET|BPF_K, ALLOW
    buf = ctypes.create_string_buffer(insn)
    prog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, prog) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "seccomp")


@pytest.mark.parametrize("name", ["helper-in-context", "container"])
def test_the_in_context_helper_is_as_confined_as_its_requester(
        name: str, context_helper: str, model_back: None, traced: Path) -> None:
    """A requester with uid 1000, no_new_privs, a seccomp filter and a
    network namespace of its own: in context its helper runs with all
    four; the classic helper (container model, trusted host) runs as root
    in the init network namespace, for contrast.  Neither leaves the
    requester a child to reap."""
    upcall_models.select(name)
    desc = unique(context_helper)

    def confined() -> dict[str, object]:
        unshare(["net"])
        net = os.stat("/proc/self/ns/net").st_ino
        become(1000)
        no_new_privs()
        allow_all_seccomp_filter()
        secret = os.open("/proc/self/status", os.O_RDONLY)
        os.dup2(secret, 77, inheritable=True)
        chld: list[int] = []
        signal.signal(signal.SIGCHLD, lambda *_: chld.append(1))
        key = request_key("user", desc, "x")
        try:
            os.waitpid(-1, os.WNOHANG)
            children = "some"
        except ChildProcessError:
            children = "none"
        return {"net": net, "payload": key.read().decode(), "sigchld": len(chld),
                "children": children}

    seen = run_child(os.fork, confined)
    mark = _marks()[desc]
    assert seen["payload"] == "ctx"
    # Reaped by the kernel either way; but exec gives the forked helper
    # SIGCHLD as its exit signal, so the requester hears of its helper:
    # the design's side effect, shown rather than hidden.
    assert seen["children"] == "none", seen
    assert seen["sigchld"] == (1 if name == "helper-in-context" else 0), seen
    # It starts with no open file of its requester's, as the usermode helper.
    assert "fd77=no" in mark, mark
    route = route_of(traced, desc)
    assert route["model"] == name
    if name == "helper-in-context":
        assert route["route"] == "in-context"
        assert f"net={seen['net']}" in mark and "uid=1000" in mark, mark
        assert "NoNewPrivs:1" in mark and "Seccomp:2" in mark, mark
    else:
        assert route["route"] == "helper"
        host_net = os.stat("/proc/1/ns/net").st_ino
        assert f"net={host_net}" in mark and "uid=0" in mark and "NoNewPrivs:0" in mark, mark


def test_a_requester_killed_while_its_helper_runs_dies_at_once(context_helper: str,
                                                               model_back: None) -> None:
    """The requester waits for its in-context helper killably: SIGKILL ends
    it at once, and the helper, reparented, finishes on its own."""
    upcall_models.select("helper-in-context")
    desc = unique(context_helper + "sleep")
    pid = os.fork()
    if pid == 0:
        try:
            request_key("user", desc, "x")
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while desc not in _marks() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert desc in _marks(), "the helper never ran"
    os.kill(pid, signal.SIGKILL)
    status = reaped_within(pid, 5.0)
    assert status is not None and os.WIFSIGNALED(status), "the requester did not die at once"


def test_an_exiting_requesters_request_gets_the_classic_helper(
        context_helper: str, model_back: None, traced: Path) -> None:
    """The model's known gap: a request made where the requester has no
    context left (a file's release after exit_task_namespaces(), as a
    filesystem's would be) gets the host's helper, traced as such."""
    upcall_models.select("helper-in-context")
    desc = unique(context_helper + "exit")
    release = Path("/sys/kernel/debug/keys/request_on_release")

    def exits_with_the_file_open() -> None:
        fd = os.open(release, os.O_WRONLY)
        os.write(fd, f"user {desc} x".encode())
        os._exit(0)

    with Container("kcont-am-exit", ns={"net", "uts"}, trusted=True) as box:
        agent = Agent(box)
        try:
            pid = box.fork()
            if pid == 0:
                exits_with_the_file_open()
            reaped_within(pid, 30.0)
        finally:
            agent.stop()
    route = route_of(traced, desc, timeout=30)
    assert route["model"] == "helper-in-context" and route["route"] == "helper", route


@pytest.mark.parametrize("state", ["set-id", "pid namespace without init"])
def test_a_requester_that_cannot_have_a_helper_in_context_is_refused(
        state: str, context_helper: str, model_back: None, traced: Path) -> None:
    """A set-id requester (its handlers would run with lent privilege) and
    one whose new pid namespace has no init yet (its helper would become
    that init) get ENOKEY, never the host's helper: falling back to it
    would take a container's request out of the container."""
    upcall_models.select("helper-in-context")
    desc = unique(context_helper)

    def requester() -> int:
        if state == "set-id":
            os.setresgid(1000, 0, 0)
            os.setresuid(1000, 0, 0)
        else:
            unshare(["pid"])
        try:
            request_key("user", desc, "x")
        except OSError as err:
            return err.errno or 0
        return 0

    assert run_child(os.fork, requester) == errno.ENOKEY
    route = route_of(traced, desc)
    assert route["model"] == "helper-in-context" and route["route"] == "rejected", route
    assert desc not in _marks()
