"""The attacker as kernel clients make requests: waits, exits and nesting.

Filesystems and the DNS resolver call request_key() from kernel code:
they wait without being interruptible, and a file's release may make a
request while its task exits, after the task's namespaces are gone.  A
daemon serving one request may make another while it holds the first's
authority.  The harness stack's kernel requester
(``keys/kernel_request``, ``keys/request_on_release`` in debugfs) makes
these calls from a task the test controls.

Each test is a way to hang a task or crash the kernel through routing:
a member killed while a request nobody serves is pending must die at
once; a request made from an exiting task must be routed without its
namespaces (not through a NULL pointer); a nested request belongs to the
original requester, for routing as for the daemon's query.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import adversary
import pytest
from agents import Agent
from containers import reaped_within, run_child
from upcall_fixtures import KERNEL_REQUESTER, serve, sysctl, unique, wait_queued

from kcont import upcalls
from kcont.container import Container
from kcont.keys import Key, Keyring, assume_authority, request_key

KERNEL_REQUEST = KERNEL_REQUESTER / "kernel_request"
REQUEST_ON_RELEASE = KERNEL_REQUESTER / "request_on_release"
TIMEOUT_SYSCTL = Path("/proc/sys/kernel/keys/intercept_timeout")


@pytest.fixture
def member(queue: Keyring) -> Iterator[Container]:
    """A container whose "user" upcalls go to ``queue``; an agent is its init."""
    with Container("adv-kreq") as c:
        c.intercept("user", queue=queue.serial)
        agent = Agent(c)
        try:
            yield c
        finally:
            agent.stop()


def test_a_kernel_requester_dies_at_sigkill_while_nobody_serves(
        queue: Keyring, member: Container) -> None:
    """A member's kernel-side request_key() (as NFS's idmapper makes it)
    waits for a request that nobody serves: SIGKILL ends the task at once,
    not when the intercept timeout fires."""
    with sysctl("kernel.keys.intercept_timeout", "60"):
        pid = start_kernel_request(member, f"user {unique('adv-kill')} kernel")
        (auth,) = wait_queued([queue], 1)[queue.serial]
        os.kill(pid, signal.SIGKILL)
        status = reaped_within(pid, 5.0)
        try:
            assert status is not None, "the requester outlived SIGKILL by 5 s"
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        finally:
            if status is None:
                Key(auth).unlink(queue)
                os.waitpid(pid, 0)


@pytest.mark.parametrize("value", ["121", "3600", "86400"])
def test_the_intercept_timeout_cannot_exceed_the_hung_task_timeout(value: str) -> None:
    """No request waits past the hung-task detector's default (120 s):
    a longer intercept timeout is refused, the old one kept."""
    old = TIMEOUT_SYSCTL.read_text()
    with pytest.raises(OSError) as err:
        TIMEOUT_SYSCTL.write_text(value)
    assert err.value.errno == errno.EINVAL
    assert TIMEOUT_SYSCTL.read_text() == old
    with sysctl("kernel.keys.intercept_timeout", "120"):
        assert TIMEOUT_SYSCTL.read_text().strip() == "120"


def start_kernel_request(c: Container, spec: str) -> int:
    """A new member of ``c`` that makes a kernel-side request and exits
    when it ends: its pid, for the test to serve, kill or reap it."""
    pid = c.fork()
    if pid == 0:
        try:
            KERNEL_REQUEST.write_text(spec)
        finally:
            os._exit(0)
    return pid


def release_request_at_exit(c: Container, spec: str) -> int:
    """A member that exits with ``keys/request_on_release`` open: its last
    fput(), and so the request, runs after its namespaces were dropped."""
    pid = c.fork()
    if pid == 0:
        fd = os.open(REQUEST_ON_RELEASE, os.O_WRONLY)
        os.write(fd, spec.encode())
        os._exit(0)
    return pid


@pytest.mark.parametrize("pinned", [set(), {"uts"}, {"net", "user"}])
def test_a_request_from_an_exiting_task_is_routed_without_namespaces(
        queue: Keyring, pinned: set[str]) -> None:
    """An exiting member has no namespaces left to match: a record that
    pins none still takes its request, one that pins any refuses it
    (ENOKEY: the container is untrusted), and nothing reads a NULL
    nsproxy on the way."""
    with Container("adv-exit") as c, adversary.kernel_reports() as found:
        c.intercept("user", ns=pinned, queue=queue.serial)
        agent = Agent(c)
        try:
            desc = unique("adv-exit")
            pid = release_request_at_exit(c, f"user {desc} kernel")
            if not pinned:
                (auth,) = wait_queued([queue], 1)[queue.serial]
                serve(auth, payload="at-exit")
            status = reaped_within(pid, 30.0)
            assert status is not None, "the exiting member never finished its exit"
            delivered = [k.serial for k in queue.linked()]
        finally:
            agent.stop()
    assert found == []
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    if pinned:
        assert delivered == []


def test_a_nested_request_is_the_original_requesters(queue: Keyring) -> None:
    """A host task serving a member's request makes a request of its own
    while it holds the member's authority: that request is routed by the
    member's container (to its queue, not to the host's helper), and the
    query says it is the member's.  The record pins the container's own
    UTS namespace, matched against the member's, not the host task's."""
    with Container("adv-nest", ns={"uts"}) as member:
        member.intercept("user", ns={"uts"}, queue=queue.serial)
        outer = Agent(member)
        try:
            nested_request(queue, member, outer)
        finally:
            outer.stop()


def nested_request(queue: Keyring, member: Container, outer: Agent) -> None:
    """The body of the nested-request test, with the member's agent."""
    pending = outer.request("user", unique("adv-outer"), unshare=())
    (auth,) = wait_queued([queue], 1)[queue.serial]
    target = upcalls.query_auth(auth).target_key
    nested_desc = unique("adv-nested")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with assume_authority(target):
                request_key("user", nested_desc, "nested")
            code = 0
        finally:
            os._exit(code)
    queued = wait_queued([queue], 2, timeout=20)[queue.serial]
    nested = [a for a in queued if a != auth]
    try:
        assert len(nested) == 1, f"the nested request was not queued: {queued}"
        query = upcalls.query_auth(nested[0])
        assert query.container_id == member.id
        serve(nested[0], payload="nested")
    finally:
        serve(auth, payload="outer")
    status = reaped_within(pid, 30.0)
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert pending.result(timeout=30).get("payload") == "outer"


def kernel_request_in(c: Container, spec: str, requester: Path = KERNEL_REQUEST) -> int:
    """errno of a kernel-side request made by a new member through the
    kernel requester's file ``requester`` (0: a key)."""
    def body() -> int:
        try:
            requester.write_text(spec)
        except OSError as err:
            return err.errno or -1
        return 0
    return int(run_child(c.fork, body))


@pytest.mark.parametrize("own_net", [False, True])
def test_only_a_container_with_its_own_network_constructs_its_dns_keys(
        queue: Keyring, own_net: bool) -> None:
    """dns_resolver keys are shared by every task of a network namespace
    (the resolver's cache keyring): a container in the host's network
    namespace may not have its daemon answer its members' DNS queries,
    or it would answer the host's; one with its own namespace may."""
    with Container("adv-dns", ns={"net"} if own_net else set(), trusted=False) as c:
        c.intercept("dns_resolver", queue=queue.serial)
        agent = Agent(c)
        try:
            if own_net:
                pid = start_kernel_request(c, f"dns_resolver {unique('adv-dns')} kernel")
                queued = wait_queued([queue], 1, timeout=30)[queue.serial]
                assert len(queued) == 1
                serve(queued[0], payload="192.0.2.1\0")  # the resolver's payload ends in NUL
                status = reaped_within(pid, 30.0)
                assert status is not None and os.WIFEXITED(status)
            else:
                assert kernel_request_in(c, f"dns_resolver {unique('adv-dns')} kernel") == \
                    errno.ENOKEY
                assert queue.linked() == []
        finally:
            agent.stop()


SERVICE_REQUEST = KERNEL_REQUESTER / "service_request"
# KEY_POS_ALL | KEY_USR_VIEW | KEY_USR_READ | KEY_USR_SEARCH
POS_ALL_USR_FIND_READ = 0x3F0B0000


def service_request_errno(c: Container, spec: str) -> int:
    """A new member of ``c`` makes a request as a kernel service does for
    itself (under credentials put in place of its own, as NFS's and CIFS's
    id mappers make theirs): 0 if a key was found or made, else the errno."""
    return kernel_request_in(c, spec, SERVICE_REQUEST)


def test_a_container_keyring_does_not_answer_a_kernel_service(queue: Keyring) -> None:
    """A container's keyring serves its members' own searches.  A kernel
    service searching under its own credentials while it runs in a member
    (NFS mapping a file owner for stat()) must not find what the
    container's owner put there: the mapping would be the host's, for
    every user of the mount.  The request goes on to the host's helper,
    which knows no such key."""
    desc = unique("adv-svc-keyring")
    keyring = Keyring.join_session().add_keyring(unique("adv-ckeyring"))
    key = keyring.add("user", desc, b"forged by the container's owner")
    # Not possessed by the members: its owner lets their uid find and read.
    keyring.setperm(POS_ALL_USR_FIND_READ)
    key.setperm(POS_ALL_USR_FIND_READ)
    with Container("adv-svc-keyring") as c:
        c.set_keyring(keyring.serial)
        agent = Agent(c)
        try:
            # The member's own search finds it: the keyring works.
            assert run_child(c.fork, lambda: request_key("user", desc).read().decode()) == \
                "forged by the container's owner"
            assert service_request_errno(c, f"user {desc} svc") == errno.ENOKEY, \
                "a kernel service's search found the container keyring's key"
        finally:
            agent.stop()


def test_a_kernel_services_request_is_not_the_containers_to_intercept(
        queue: Keyring, member: Container) -> None:
    """``member``'s "user" upcalls go to a queue its owner serves.  A
    request a kernel service makes for itself, while it runs in a member,
    is the host's: delivered to the container's daemon, its answer would
    land in the service's keyring, shared by every user.  It goes to the
    host's helper (which negates it), and the queue stays empty."""
    desc = unique("adv-svc-intercept")
    pid = member.fork()
    if pid == 0:
        try:
            SERVICE_REQUEST.write_text(f"user {desc} svc")
        except OSError as err:
            os._exit(err.errno or 1)
        os._exit(0)
    status = reaped_within(pid, 20.0)
    queued = queue.linked()
    try:
        assert not queued, "a kernel service's request was delivered to the container"
        assert status is not None and os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == errno.ENOKEY
    finally:
        for key in queued:
            key.unlink(queue)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
