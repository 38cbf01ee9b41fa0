"""The scenario catalogue: the cases that separate the routing models.

Each scenario builds a small world (containers, their namespaces, who
serves what), makes one request, and reports where it went, as one word:

  ``queue:<name>``  a registration took it, and the named party's queue
                    held its authorisation key (the party served it);
  ``helper``        the host's /sbin/request-key ran, in the init namespaces;
  ``in-context``    /sbin/request-key ran forked from the requester;
  ``rejected``      refused at once with ENOKEY;
  ``timeout``       delivered to a queue nobody serves: ETIMEDOUT later;
  ``refused:<E>``   the registration the scenario needed failed with errno E.

The route comes from the key_upcall_route tracepoint (route, model and the
registration's owner), the outcome from the requester's own result, and
the two must agree.  ``EXPECTED`` says, per scenario and column, what the
designs documented in docs/designs.md predict; test_designs.py runs every
scenario under every column in one boot and checks the kernel against it.

Columns are the routing models, and userns-walk once more with
kernel.keys.upcall_boundary on (the 2019 RFC author's answer).  Every
container here is untrusted unless a scenario says otherwise, so that the
container model's fallback (trust) is visible.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from agents import Agent, Pending
from upcall_fixtures import marked, serve, sysctl, tracefs, unique, wait_queued

from kcont import upcall_models, upcalls
from kcont.container import Container, Flag, namespace_flags
from kcont.keys import Keyring
from kcont.namespaces import kinds_mask

COLUMNS = ("container", "userns-walk", "userns-walk+boundary", "userns-intercept",
           "helper-in-context")
# What a userns-intercept daemon pins: the namespaces a container usually
# has of its own (the user namespace is implied: no walk).
DAEMON_PIN = kinds_mask(("uts", "ipc", "mnt", "net", "cgroup"))
# Possessor and owner: view, read, write, search, link, setattr.
QUEUE_PERM = 0x3F3F0000
# How long a delivered request waits for a daemon in these scenarios.
TIMEOUT_S = 2


def column_model(column: str) -> tuple[str, bool]:
    """The sysctl settings of a column: model name, boundary switch."""
    if column == "userns-walk+boundary":
        return "userns-walk", True
    return column, False


@dataclass
class Party:
    """A container (or the host) with a member acting for the test."""

    name: str
    agent: Agent
    container: Container | None
    queue: Keyring | None = None


@dataclass
class Bench:
    """One column's world builder: containers, daemons and the request."""

    column: str
    session: Keyring
    trace: Path
    stack: ExitStack
    parties: list[Party] = field(default_factory=list)

    @property
    def model(self) -> str:
        return column_model(self.column)[0]

    def container(self, name: str, ns: set[str], trusted: bool = False,
                  inside: Party | None = None) -> Party:
        """A container with new namespaces ``ns``; nested in ``inside``'s."""
        label = f"kcont-d-{name}-{os.getpid()}-{len(self.parties)}"
        if inside is None:
            box = Container(label, ns=ns, trusted=trusted)
        else:
            flags = namespace_flags(ns) | (Flag.TRUSTED if trusted else Flag.UNTRUSTED)
            box = inside.agent.create(label, flags)
        self.stack.callback(box.close)
        agent = Agent(box)
        self.stack.callback(agent.stop)
        party = Party(name, agent, box)
        self.parties.append(party)
        return party

    def member(self, party: Party) -> Agent:
        """Another member of ``party``'s container (its first agent is the init)."""
        agent = Agent(party.container)
        self.stack.callback(agent.stop)
        return agent

    def daemon(self, party: Party, by: Agent | None = None) -> str:
        """Register ``party`` to serve every type as its design lets a
        container's daemon: a record on its container by its manager (the
        container model), a registration by the daemon (``by``, default the
        party's agent) for its own user namespace, pinning its namespaces
        under userns-intercept; nothing under helper-in-context.  The daemon
        possesses the queue.  Returns "" or ``refused:<E>``."""
        if self.model == "helper-in-context":
            return ""
        agent = by or party.agent
        ring = self.queue_for(agent, party.name)
        try:
            if self.model == "container":
                assert party.container is not None
                party.container.intercept("*", queue=ring.serial)
                self.stack.callback(_quiet, party.container.remove_intercepts)
            else:
                self._unregister_at_exit(party)
                mask = DAEMON_PIN if self.model == "userns-intercept" else 0
                agent.call("userns_intercept_own", "*", mask, ring.serial)
        except OSError as err:
            return f"refused:{errno.errorcode[err.errno or 0]}"
        party.queue = ring
        return ""

    def queue_for(self, agent: Agent, name: str) -> Keyring:
        """A queue keyring that ``agent`` possesses (and may link, write and
        read though the test made it: a member of a user namespace of its
        own is no possessor of the test's keyrings)."""
        ring = self.session.add_keyring(f"kcont-dq-{name}-{len(self.parties)}")
        ring.setperm(QUEUE_PERM)
        agent.possess(ring.serial)
        return ring

    def _unregister_at_exit(self, party: Party) -> None:
        """Remove the registrations of ``party``'s user namespace when the
        bench closes, while its agent still holds the namespace."""
        fd = os.open(f"/proc/{party.agent.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        self.stack.callback(os.close, fd)
        self.stack.callback(_quiet, lambda: upcalls.remove_userns_intercepts(fd))

    def request(self, party: Party, unshare: tuple[str, ...] = (),
                exiting: bool = False) -> str:
        """One request of type "user" by a member of ``party``; where it
        went.  ``exiting``: made as a filesystem's release makes it, by a
        member exiting with a file open (the series' debugfs requester),
        after its namespaces are gone."""
        desc = unique("design")
        if exiting:
            return self._outcome(desc, ExitingRequest(party, desc))
        return self._outcome(desc, party.agent.request("user", desc, unshare=unshare))

    def _outcome(self, desc: str, pending: Pending | ExitingRequest) -> str:
        queues = {p.queue.serial: p for p in self.parties if p.queue is not None}
        found = wait_queued([Keyring(s) for s in queues], 1, timeout=3)
        holders = [(serial, auths) for serial, auths in found.items() if auths]
        served = None
        for serial, auths in holders:
            for auth in auths:
                if _target_desc(auth) == desc:
                    serve(auth, payload="served")
                    served = queues[serial].name
        # An exiting requester has nobody to read its result: the route,
        # the queue and the helper's mark are the evidence then.
        result = pending.result(timeout=TIMEOUT_S + 60)
        ok = result is None or "serial" in result
        route = route_of(self.trace, desc)
        if served is not None:
            assert route["route"] == "intercepted" and ok, (route, result)
            return f"queue:{served}"
        if route["route"] == "intercepted":
            assert result is None or result.get("errno") == errno.ETIMEDOUT, (route, result)
            return "timeout"
        if route["route"] in ("helper", "in-context"):
            assert desc in marked() and ok, (route, result)
            return str(route["route"])
        assert route["route"] == "rejected", (route, result)
        assert result is None or result.get("errno") == errno.ENOKEY, (route, result)
        return "rejected"


class ExitingRequest:
    """A request made by the release of a file its member exits with."""

    FILE = Path("/sys/kernel/debug/keys/request_on_release")

    def __init__(self, party: Party, desc: str) -> None:
        assert party.container is not None
        self.desc = desc
        self.pid = party.container.fork()
        if self.pid == 0:
            try:
                fd = os.open(self.FILE, os.O_WRONLY)
                os.write(fd, f"user {desc} x".encode())
            finally:
                os._exit(0)

    def result(self, timeout: float) -> None:
        """Wait for the member's exit (its release waits for the key); no
        result reaches anyone."""
        deadline = time.monotonic() + timeout
        while os.waitpid(self.pid, os.WNOHANG)[0] == 0:
            assert time.monotonic() < deadline, "the exiting member never finished"
            time.sleep(0.05)


def _quiet(action: Callable[[], object]) -> None:
    with suppress(OSError):
        action()


def _target_desc(auth: int) -> str:
    """The description of the key an authorisation key is for."""
    target = upcalls.query_auth(auth).target_key
    return Keyring(target).describe().description


def route_of(trace: Path, desc: str, timeout: float = 10.0) -> dict[str, str]:
    """The key_upcall_route event of the request for ``desc``, as its fields."""
    deadline = time.monotonic() + timeout
    while True:
        for line in trace.read_text().splitlines():
            if f"desc={desc} " in line and "key_upcall_route:" in line:
                fields = dict(word.split("=", 1) for word in line.split("key_upcall_route:")[1]
                              .split() if "=" in word)
                return fields
        if time.monotonic() > deadline:
            raise AssertionError(f"no key_upcall_route event for {desc}")
        time.sleep(0.1)


@contextmanager
def column_in_force(column: str, session: Keyring) -> Iterator[Bench]:
    """The column's model in force, with a short intercept timeout, and a
    bench whose registrations are all gone when the block ends; then the
    model in force before.  The caller keeps the route tracepoint on
    (route_tracing()): switching it patches kernel text on every CPU,
    which a loaded emulator makes slow."""
    model, boundary = column_model(column)
    before, before_boundary = upcall_models.active(), upcall_models.boundary()
    upcall_models.select(model, boundary)
    try:
        with sysctl("kernel.keys.intercept_timeout", str(TIMEOUT_S)), ExitStack() as stack:
            yield Bench(column, session, tracefs() / "trace", stack)
    finally:
        select_when_unregistered(before, before_boundary)


@contextmanager
def route_tracing() -> Iterator[Path]:
    """keys:key_upcall_route on for the block; yields the trace file."""
    enable = tracefs() / "events" / "keys" / "key_upcall_route" / "enable"
    enable.write_text("1")
    try:
        yield tracefs() / "trace"
    finally:
        enable.write_text("0")


def select_when_unregistered(model: str, boundary: bool, timeout: float = 15.0) -> None:
    """Select ``model`` once the registrations are gone: a user namespace's
    goes with its queue keyring, which the key garbage collector destroys a
    moment after its last reference."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            upcall_models.select(model, boundary)
            return
        except OSError as err:
            if err.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# The scenarios.  Each takes a bench and returns the outcome word.

def nested_with_own_userns(b: Bench) -> str:
    """An outer container serves; a container nested in it, with a user
    namespace of its own and no daemon, requests."""
    outer = b.container("outer", {"user", "uts", "net"})
    refused = b.daemon(outer)
    inner = b.container("inner", {"uts"}, inside=outer)
    return refused or b.request(inner)


def nested_sharing_userns(b: Bench) -> str:
    """As above, but the nested container has no user namespace of its own."""
    outer = b.container("outer", {"user", "uts", "net"})
    refused = b.daemon(outer)
    inner = b.container("inner", {"uts", "net"}, inside=outer)
    return refused or b.request(inner)


def untrusted_without_daemon(b: Bench) -> str:
    """An untrusted container, with its own user namespace and no daemon."""
    box = b.container("box", {"user", "uts", "net", "mnt"})
    return b.request(box)


def daemon_died(b: Bench) -> str:
    """A container's daemon (a member, not its init) registered, then died;
    its queue was linked only in its own session keyring."""
    box = b.container("box", {"user", "uts", "net"})
    daemon = b.member(box)
    refused = b.daemon(box, by=daemon)
    if refused:
        return refused
    if box.queue is not None:
        box.queue.unlink(b.session)
        box.queue = None  # nobody serves it any more
    daemon.stop()
    _settle_gc()
    return b.request(box)


def exiting_requester(b: Bench) -> str:
    """A member exits with a file open whose release requests a key, as a
    filesystem's would: the request is made after the member's namespaces
    are gone (the nearest this suite has to a kernel client's request)."""
    box = b.container("box", {"user", "uts", "net"})
    refused = b.daemon(box)
    return refused or b.request(box, exiting=True)


def sharing_a_user_namespace(b: Bench) -> str:
    """Two containers in the host's user namespace, each with its own
    network and UTS namespaces; only the first has a daemon; the second
    requests."""
    first = b.container("first", {"uts", "net", "ipc", "mnt"})
    refused = b.daemon(first)
    second = b.container("second", {"uts", "net", "ipc", "mnt"})
    return refused or b.request(second)


def member_changed_a_namespace(b: Bench) -> str:
    """A member of a served container unshares its network namespace after
    joining, then requests."""
    box = b.container("box", {"user", "uts", "net", "ipc", "mnt"})
    refused = b.daemon(box)
    return refused or b.request(box, unshare=("net",))


def hostile_registers_for_another(b: Bench) -> str:
    """A hostile container, root in its own user namespace, registers its
    queue for its victim's user namespace with a stolen namespace fd (or,
    under the container model, a stolen container fd); the victim, with
    no daemon, requests."""
    victim = b.container("victim", {"user", "uts", "net"})
    hostile = b.container("hostile", {"user", "uts", "net"})
    refused = _steal(b, hostile, victim)
    outcome = b.request(victim)
    return f"{refused} {outcome}".strip() if refused else outcome


def _steal(b: Bench, hostile: Party, victim: Party) -> str:
    """The hostile party's registration for the victim, by a stolen fd."""
    if b.model == "helper-in-context":
        return ""
    ring = b.queue_for(hostile.agent, "hostile")
    assert victim.container is not None
    try:
        if b.model == "container":
            hostile.agent.call("intercept", "FD0", "*", 0, ring.serial, fd=victim.container.fd)
            b.stack.callback(_quiet, victim.container.remove_intercepts)
        else:
            b._unregister_at_exit(victim)
            fd = os.open(f"/proc/{victim.agent.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            try:
                hostile.agent.call("userns_intercept", "FD0", "*", 0, ring.serial, fd=fd)
            finally:
                os.close(fd)
    except OSError as err:
        return f"refused:{errno.errorcode[err.errno or 0]}"
    hostile.queue = ring
    return ""


def _settle_gc() -> None:
    """Give the key garbage collector a moment to destroy dropped keys."""
    time.sleep(1.5)


SCENARIOS: dict[str, Callable[[Bench], str]] = {
    "nested container, own user namespace": nested_with_own_userns,
    "nested container, parent's user namespace": nested_sharing_userns,
    "untrusted container, no daemon": untrusted_without_daemon,
    "daemon died": daemon_died,
    "two containers sharing a user namespace": sharing_a_user_namespace,
    "member unshared its network namespace": member_changed_a_namespace,
    "hostile container registers for another": hostile_registers_for_another,
    "request from an exiting member": exiting_requester,
}

# What each design predicts (docs/designs.md argues each cell).
EXPECTED: dict[str, dict[str, str]] = {
    "nested container, own user namespace": {
        "container": "queue:outer", "userns-walk": "queue:outer",
        "userns-walk+boundary": "queue:outer", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "nested container, parent's user namespace": {
        "container": "queue:outer", "userns-walk": "queue:outer",
        "userns-walk+boundary": "queue:outer", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "untrusted container, no daemon": {
        "container": "rejected", "userns-walk": "helper",
        "userns-walk+boundary": "rejected", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "daemon died": {
        "container": "timeout", "userns-walk": "helper",
        "userns-walk+boundary": "rejected", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "two containers sharing a user namespace": {
        "container": "rejected", "userns-walk": "queue:first",
        "userns-walk+boundary": "queue:first", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "member unshared its network namespace": {
        "container": "queue:box", "userns-walk": "queue:box",
        "userns-walk+boundary": "queue:box", "userns-intercept": "helper",
        "helper-in-context": "in-context"},
    "hostile container registers for another": {
        "container": "refused:EPERM rejected", "userns-walk": "refused:EPERM helper",
        "userns-walk+boundary": "refused:EPERM rejected",
        "userns-intercept": "refused:EPERM helper", "helper-in-context": "in-context"},
    "request from an exiting member": {
        "container": "queue:box", "userns-walk": "queue:box",
        "userns-walk+boundary": "queue:box", "userns-intercept": "helper",
        "helper-in-context": "helper"},
}
assert set(EXPECTED) == set(SCENARIOS)
