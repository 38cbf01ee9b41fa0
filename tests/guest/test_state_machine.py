"""The kernel and the reference model, step by step.

A hypothesis RuleBasedStateMachine drives the series' whole surface:
containers created with any namespace kinds, trust flag and CLOEXEC,
nested inside others; members forked in and exiting; init exiting (the
container dies); the manager's fd closed; interception records added and
removed; requests from any member of any container, unsharing namespaces;
pending requests served (instantiated, negated, rejected), left to time
out, or ended by revoking their queue keyring; container keyrings set;
keys granted to containers and looked up by their members.  Each step is
applied to the kernel and to kcont.testing.routing_model plus the bookkeeping
below; every answer the kernel gives (errno, count, where a request went,
what its requester got, what a member may read) must be the model's.  On
a divergence hypothesis prints the shrunk sequence of steps as a script
(``state = KernelAndModel(); state.create(...) ...``): the reproducer.
Kernel reports and kmemleak are judged on the console by the host.

Left out on purpose: CONTAINER_KILL_ON_CLOSE.  Every agent forked after a
container's creation inherits its fd, so which close is the last one is an
accident of the order of steps, not something a model can say;
test_container_lifecycle tests it with fds it controls.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Pending
from budget import examples
from conftest import RESULTS
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)
from routing_world import NEW_NS, UNSHARABLE
from upcall_fixtures import marked, marking_helper, serve, sysctl, unique, wait_queued

from kcont.container import Container, Flag, namespace_flags
from kcont.keys import Key, Keyring
from kcont.testing import routing_model as model
from kcont.upcalls import Perm, set_container_keyring

TYPES = ("user", "logon", "*")
MAX_RECORDS = 16          # kernel.keys.max_intercepts
MAX_MEMBERS = 2           # besides init
POSSESSOR_ALL = 0x3F000000
ANYONE_SEARCH = 0x00080008   # user and other: Search
GRANTS = (Perm(0), Perm.VIEW, Perm.SEARCH, Perm.SEARCH | Perm.READ,
          Perm.VIEW | Perm.SEARCH | Perm.READ, Perm.READ)
STEPS: Counter[str] = Counter()   # rules run, for docs/reliability.md
BUDGET = examples(10)
# One request reaches its queue, or its requester, in seconds even under
# KASAN: waiting minutes would only slow down the shrinking of a failure.
QUEUED_WITHIN = 20.0
ANSWERED_WITHIN = 30.0
TRACE = os.environ.get("KCONT_SM_TRACE") == "1"


def step(name: str) -> None:
    """Count a step; with KCONT_SM_TRACE=1 also say it, as it starts (a
    step that hangs is the last one printed)."""
    STEPS[name] += 1
    trace(name)


def trace(what: str) -> None:
    if TRACE:
        print(f"sm: {what}", file=sys.stderr, flush=True)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    (RESULTS / "state-machine.json").write_text(json.dumps(STEPS, indent=1) + "\n")
    # A machine that never reached the interesting states proved nothing.
    for needed in ("request (intercepted)", "add_record", "grant", "look_up", "fork_member"):
        assert STEPS[needed] > 0, f"no {needed!r} step in the whole run: {dict(STEPS)}"


@dataclass(eq=False)
class Box:
    """A container, its agents and its model.  ``user_ns``: it or an
    ancestor has a user namespace of its own."""

    name: str
    container: Container
    init: Agent
    model: model.Container
    parent: Box | None
    user_ns: bool
    own_pid_ns: bool
    members: list[Agent] = field(default_factory=list)
    fd_open: bool = True
    has_keyring: bool = False

    @property
    def alive(self) -> bool:
        return not self.model.dead

    def agents(self) -> list[Agent]:
        return [self.init, *self.members]


@dataclass(eq=False)
class Waiting:
    """A request the kernel delivered to a queue and nobody served yet."""

    pending: Pending
    desc: str
    key_type: str
    owner: Box               # the record's container
    record: model.Record
    auth: int
    requester: Box | None    # None: the test's own container (init)
    requester_dead: bool = False


@dataclass(eq=False)
class GrantedKey:
    key: Key
    desc: str
    payload: str
    grants: dict[str, int] = field(default_factory=dict)   # box name -> perm


def _reap_together(agents: list[Agent], within: float = 60.0) -> None:
    """Reap agents in whatever order they finish.  An init of a PID
    namespace waits, as it exits, until every task in its namespace is
    reaped, and members (nested inits too) are the test's children: any
    fixed order can wait on itself.  What is left after ``within`` fails."""
    deadline = time.monotonic() + within
    left = list(agents)
    while left:
        left = [a for a in left if not a.reap(block=False)]
        assert not left or time.monotonic() < deadline, \
            f"agents {[a.pid for a in left]} never exited"
        if left:
            time.sleep(0.01)


class KernelAndModel(RuleBasedStateMachine):
    boxes = Bundle("boxes")

    def __init__(self) -> None:
        super().__init__()
        self.session = Keyring.join_session()
        self.boxes_: list[Box] = []
        self.waiting: list[Waiting] = []
        self.seen_auth: set[int] = set()
        self.keys: list[GrantedKey] = []
        self.revoked: set[int] = set()      # queue keyrings revoked
        self.ring = self.session.add_keyring(unique("ring"))
        self.ring.setperm(POSSESSOR_ALL | ANYONE_SEARCH)
        self.init_agent = Agent()
        self.init_model = model.Container(1, self.init_agent.namespaces, trusted=True)
        self.default_trusted = Path(
            "/proc/sys/kernel/keys/container_default_trust").read_text().strip() == "trusted"
        self.mark = marking_helper()
        self.mark.__enter__()
        # No request may time out between its steps: the longest timeout there is.
        self.timeout = sysctl("kernel.keys.intercept_timeout", "120")
        self.timeout.__enter__()

    def teardown(self) -> None:
        # Children before parents: a parent's init is the agent that made them.
        for box in reversed(self.boxes_):
            if box.alive:
                step("kill (teardown)")
                self._kill(box)
            if box.fd_open:
                box.container.close()
        assert not self.waiting, [w.desc for w in self.waiting]
        self.init_agent.stop()
        self.timeout.__exit__(None, None, None)
        self.mark.__exit__(None, None, None)

    # ------------------------------------------------------------ containers

    @initialize(target=boxes, kinds=st.frozensets(st.sampled_from(NEW_NS)),
                trust=st.sampled_from([None, False, True]), cloexec=st.booleans(),
                perm=st.sampled_from(GRANTS), key_type=st.sampled_from(("user", "*")),
                mask=st.integers(0, model.NS_ALL), data=st.data())
    def first(self, kinds: frozenset[str], trust: bool | None, cloexec: bool, perm: Perm,
              key_type: str, mask: int, data: st.DataObject) -> Box:
        """Every run starts with a container that has a member besides init,
        an interception record, the shared keyring and a key granted to it:
        requests from init alone reach only the helper, and the other rules
        need something to act on."""
        box = self._create(None, kinds, trust, cloexec)
        assert box is not None
        self.fork_member(box)
        self.add_record(box, key_type, mask, False)
        self.set_keyring(box)
        self.grant(box, perm, True, data)
        return box

    @rule(target=boxes, parent=st.one_of(st.none(), boxes),
          kinds=st.frozensets(st.sampled_from(NEW_NS)),
          trust=st.sampled_from([None, False, True]), cloexec=st.booleans())
    def create(self, parent: Box | None, kinds: frozenset[str], trust: bool | None,
               cloexec: bool) -> Box | MultipleResults[Box]:
        """container_create() by the test, or by a parent's init (a nested
        container).  Inside a user namespace CONTAINER_TRUSTED and a new
        user namespace both need privilege in the init one: EPERM."""
        box = self._create(parent, kinds, trust, cloexec)
        return multiple() if box is None else box

    def _create(self, parent: Box | None, kinds: frozenset[str], trust: bool | None,
                cloexec: bool) -> Box | None:
        if parent is not None and not parent.alive:
            return None
        step("create" if parent is None else "create (nested)")
        name = f"kcont-sm{len(self.boxes_)}"
        flags = namespace_flags(kinds)
        flags |= {None: Flag(0), False: Flag.UNTRUSTED, True: Flag.TRUSTED}[trust]
        if cloexec:
            flags |= Flag.FD_CLOEXEC
        nested_user = parent is not None and parent.user_ns
        try:
            container = parent.init.create(name, flags) if parent else \
                Container(name, flags=flags, cloexec=cloexec)
        except OSError as err:
            assert nested_user and ("user" in kinds or trust is True), err
            assert err.errno == errno.EPERM, err
            step("create (EPERM)")
            return None
        assert not (nested_user and ("user" in kinds or trust is True)), "EPERM expected"
        if parent is None:
            fd_flags = fcntl.fcntl(container.fd, fcntl.F_GETFD)
            assert bool(fd_flags & fcntl.FD_CLOEXEC) == cloexec, fd_flags
        parent_model = parent.model if parent else self.init_model
        trusted = model.trust_at_creation(trust, self.default_trusted, parent_model.trusted)
        assert container.trusted == trusted, f"trust: kernel {container.trusted}, model {trusted}"
        init = Agent(container)
        box = Box(name, container, init, model.Container(container.id, init.namespaces, trusted,
                                                         parent=parent_model),
                  parent, "user" in kinds or nested_user, "pid" in kinds)
        self.boxes_.append(box)
        return box

    @rule(box=boxes)
    def fork_member(self, box: Box) -> None:
        """fork_into_container() by the manager: a member besides init."""
        if not (box.alive and box.fd_open) or len(box.members) >= MAX_MEMBERS:
            return
        step("fork_member")
        member = Agent(box.container)
        assert member.namespaces == box.init.namespaces, "a member has its container's ns"
        box.members.append(member)

    @precondition(lambda self: any(b.members for b in self.boxes_))
    @rule(data=st.data())
    def member_exits(self, data: st.DataObject) -> None:
        """A member that is not init exits: the container lives on, and so
        do requests its earlier children made."""
        step("member_exits")
        box = data.draw(st.sampled_from([b for b in self.boxes_ if b.members]))
        box.members.pop(data.draw(st.integers(0, len(box.members) - 1))).stop()
        if box.fd_open:
            assert not box.container.dead, "a member's exit killed the container"

    @precondition(lambda self: sum(b.alive for b in self.boxes_) > 1)
    @rule(box=boxes)
    def kill(self, box: Box) -> None:
        if box.alive:
            step("kill")
            self._kill(box)

    def _kill(self, box: Box) -> None:
        """Init exits: the container dies and its members with it.  Its
        descendants live on, unless it had a PID namespace of its own:
        then every task in that namespace dies, and nested containers' inits
        are such tasks.  Requests waiting on the dead containers' records
        end with ECANCELED; requesters that were their members are gone."""
        victims = [box, *self._descendants(box)] if box.own_pid_ns else [box]
        victims = [v for v in victims if v.alive]
        agents = [a for v in victims for a in v.agents()]
        for agent in agents:
            agent.tell_exit()
        _reap_together(agents)
        for victim in victims:
            victim.members.clear()
            victim.model.dead = True
            if victim.fd_open:
                assert victim.container.dead, f"{victim.name}: its init is gone; not dead?"
            for waiting in self.waiting:
                if waiting.requester is victim:
                    waiting.requester_dead = True
        self._expect_ended(lambda w: w.owner in victims, errno.ECANCELED)

    def _descendants(self, box: Box) -> list[Box]:
        children = [b for b in self.boxes_ if b.parent is box]
        return [d for child in children for d in (child, *self._descendants(child))]

    @rule(box=boxes)
    def close_fd(self, box: Box) -> None:
        """The manager closes its fd: the container and its records stay
        (members and agents still hold it); the fd's operations are over."""
        if not box.fd_open:
            return
        step("close_fd")
        box.container.close()
        box.fd_open = False

    # --------------------------------------------------------------- records

    @rule(box=boxes, key_type=st.sampled_from(TYPES), mask=st.integers(0, model.NS_ALL),
          again=st.booleans())
    def add_record(self, box: Box, key_type: str, mask: int, again: bool) -> None:
        """A record with a new queue keyring; or, ``again``, the exact twin of
        one the container has (EEXIST)."""
        if not box.fd_open:
            return
        twins = [r for r in box.model.records if r.queue not in self.revoked]
        dup = again and bool(twins)
        step("add_record (again)" if dup else "add_record")
        if dup:
            key_type, mask, serial = twins[0].key_type, twins[0].mask, twins[0].queue
            queue = Keyring(serial)
        else:
            queue = self.session.add_keyring(unique("q"))
        try:
            box.container.intercept(key_type, ns=mask, queue=queue.serial)
        except OSError as err:
            # The kernel's order of checks: dead, duplicate, full.
            want = errno.ECANCELED if not box.alive else errno.EEXIST if dup else \
                errno.ENOSPC if len(box.model.records) >= MAX_RECORDS else None
            assert err.errno == want, f"add_record: kernel {err}, model {want}"
            return
        assert box.alive and len(box.model.records) < MAX_RECORDS and not dup, \
            "kernel took the record"
        box.model.add(key_type, mask, queue.serial)

    @rule(box=boxes, key_type=st.sampled_from(TYPES), mask=st.integers(0, model.NS_ALL))
    def remove_records(self, box: Box, key_type: str, mask: int) -> None:
        if not box.fd_open:
            return
        step("remove_records")
        try:
            removed = box.container.remove_intercepts(key_type, ns=mask)
        except OSError as err:
            assert not box.alive and err.errno == errno.ECANCELED, err
            return
        gone = box.model.remove(key_type, mask)
        assert removed == len(gone), f"removed: kernel {removed}, model {len(gone)}"
        self._expect_ended(lambda w: w.record in gone, errno.ENOKEY)

    # -------------------------------------------------------------- requests

    @rule(box=st.one_of(boxes, boxes, boxes, st.none()), who=st.integers(0, MAX_MEMBERS),
          key_type=st.sampled_from(("user", "logon")),
          unshare=st.frozensets(st.sampled_from(UNSHARABLE), max_size=2))
    def request(self, box: Box | None, who: int, key_type: str, unshare: frozenset[str],
                time_out: bool = False) -> None:
        """request_key() from a member (init or another) of any container.
        With ``time_out``, an intercepted request is left unserved with a
        1 s intercept timeout: it must end with ETIMEDOUT."""
        if box is not None and not box.alive:
            return
        agents = [self.init_agent] if box is None else box.agents()
        requester = self.init_model if box is None else box.model
        desc = unique(key_type)
        trace(f"request {desc} from {box.name if box else 'init'}[{who % len(agents)}] "
              f"unsharing {sorted(unshare)}")
        with sysctl("kernel.keys.intercept_timeout", "1") if time_out else \
                contextlib.nullcontext():
            pending = agents[who % len(agents)].request(key_type, desc, unshare=unshare)
            decision = model.route(requester, pending.namespaces(), key_type)
            step(f"request ({decision.route.value})")
            if decision.route is model.Route.INTERCEPTED and \
                    decision.record.queue not in self.revoked:
                auth = self._queued(desc, decision)
        if decision.route is model.Route.INTERCEPTED and decision.record.queue in self.revoked:
            step("request (revoked queue)")
            result = pending.result(ANSWERED_WITHIN)
            assert result.get("errno") == errno.EKEYREVOKED, f"{desc}: {result}"
            return
        if decision.route is model.Route.INTERCEPTED:
            assert decision.record is not None
            owner = next(b for b in self.boxes_ if b.model is decision.container)
            waiting = Waiting(pending, desc, key_type, owner, decision.record, auth, box)
            if time_out:
                step("time_out")
                result = waiting.pending.result(ANSWERED_WITHIN)
                assert result.get("errno") == errno.ETIMEDOUT, f"{desc}: {result}"
            else:
                self.waiting.append(waiting)
            return
        result = pending.result(ANSWERED_WITHIN)
        if decision.route is model.Route.HELPER:
            assert "serial" in result and desc in marked(), f"{desc}: model helper; {result}"
        else:
            assert result.get("errno") == errno.ENOKEY, f"{desc}: model rejects; {result}"
            assert desc not in marked()

    def _queued(self, desc: str, decision: model.Decision) -> int:
        """The auth key the kernel linked into the queue the model chose."""
        assert decision.record is not None
        queue = Keyring(decision.record.queue)
        want = len(self._in_queue(queue)) + 1
        linked = set(wait_queued([queue], want, QUEUED_WITHIN)[queue.serial])
        new = linked - self.seen_auth
        assert len(new) == 1, f"{desc}: model says queue {queue.serial}; kernel: {new}"
        self.seen_auth |= new
        return new.pop()

    def _in_queue(self, queue: Keyring) -> set[int]:
        return {k.serial for k in queue.linked()} & self.seen_auth

    def _recorded(self, data: st.DataObject) -> tuple[Box, str]:
        box = data.draw(st.sampled_from([b for b in self.boxes_
                                         if b.alive and b.model.records]))
        types = sorted({r.key_type for r in box.model.records} - {"*"}) or ["user"]
        return box, data.draw(st.sampled_from(types))

    @precondition(lambda self: any(b.alive and b.model.records for b in self.boxes_))
    @rule(data=st.data(), who=st.integers(0, MAX_MEMBERS),
          unshare=st.frozensets(st.sampled_from(UNSHARABLE), max_size=1))
    def request_recorded(self, data: st.DataObject, who: int, unshare: frozenset[str]) -> None:
        """A request from a container that has records, of a type one of them
        names: uniform choices alone rarely line a request up with a record."""
        box, key_type = self._recorded(data)
        self.request(box, who, key_type, unshare)

    @precondition(lambda self: any(b.alive and b.model.records for b in self.boxes_))
    @rule(data=st.data())
    def request_times_out(self, data: st.DataObject) -> None:
        box, key_type = self._recorded(data)
        self.request(box, 0, key_type, frozenset(), time_out=True)

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data(), action=st.sampled_from(("instantiate", "negate", "reject")))
    def serve(self, data: st.DataObject, action: str) -> None:
        self._serve(data.draw(st.sampled_from(self.waiting)), action)

    @precondition(lambda self: bool(self.waiting))
    @rule(action=st.sampled_from(("instantiate", "negate", "reject")))
    def serve_oldest(self, action: str) -> None:
        """As a daemon does, first come first served (and serving weighs
        twice in the choice of rules: requests pile up otherwise)."""
        self._serve(self.waiting[0], action)

    def _serve(self, waiting: Waiting, action: str) -> None:
        step(f"serve ({action})")
        self.waiting.remove(waiting)
        serve(waiting.auth, action=action, payload="served", error=errno.EKEYREJECTED)
        result = self._outcome(waiting)
        if result is None:
            return
        if action == "instantiate":
            assert "serial" in result, result
            if waiting.key_type == "user":
                assert result.get("payload") == "served", result
        else:
            want = errno.ENOKEY if action == "negate" else errno.EKEYREJECTED
            assert result.get("errno") == want, f"{action}: {result}"

    @precondition(lambda self: bool(self.waiting))
    @rule(data=st.data())
    def revoke_queue(self, data: st.DataObject) -> None:
        """Revoking a queue keyring fails what waits in it (EKEYREVOKED); its
        records go too, so that later requests are routed again."""
        step("revoke_queue")
        waiting = data.draw(st.sampled_from(self.waiting))
        record, box = waiting.record, waiting.owner
        Key(record.queue).revoke()
        self._expect_ended(lambda w: w.record.queue == record.queue, errno.EKEYREVOKED)
        self.revoked.add(record.queue)
        if not box.fd_open:
            # With the fd gone nobody can remove the records: they stay, and
            # a request routed to one fails at delivery (EKEYREVOKED).
            return
        removed = box.container.remove_intercepts(record.key_type, ns=record.mask)
        gone = box.model.remove(record.key_type, record.mask)
        assert removed == len(gone), f"removed: kernel {removed}, model {len(gone)}"
        self._expect_ended(lambda w: w.record in gone, errno.ENOKEY)

    def _outcome(self, waiting: Waiting) -> dict[str, Any] | None:
        """What the requester got; None if it died with its container."""
        try:
            return waiting.pending.result(ANSWERED_WITHIN)
        except EOFError:
            assert waiting.requester_dead, f"{waiting.desc}: requester died unexpectedly"
            return None

    def _expect_ended(self, which: Any, want: int) -> None:
        ended = [w for w in self.waiting if which(w)]
        for waiting in ended:
            self.waiting.remove(waiting)
            result = self._outcome(waiting)
            if result is not None:
                assert result.get("errno") == want, \
                    f"{waiting.desc}: want {errno.errorcode[want]}, got {result}"

    # ---------------------------------------------- container keyrings, grants

    @rule(box=boxes)
    def set_keyring(self, box: Box) -> None:
        """Every container gets the same keyring, once: EBUSY after."""
        if not box.fd_open:
            return
        step("set_keyring")
        try:
            set_container_keyring(box.container.fd, self.ring.serial)
        except OSError as err:
            assert box.has_keyring and err.errno == errno.EBUSY, err
            return
        assert not box.has_keyring, "EBUSY expected"
        box.has_keyring = True

    @rule(box=boxes, perm=st.sampled_from(GRANTS), new_key=st.booleans(), data=st.data())
    def grant(self, box: Box, perm: Perm, new_key: bool, data: st.DataObject) -> None:
        """KEYCTL_GRANT_PERMISSION on a key in the shared keyring, whose own
        mask gives members (who do not possess it) nothing."""
        if not box.fd_open:
            return
        step("grant")
        if new_key or not self.keys:
            desc = unique("acl")
            key = self.ring.add("user", desc, desc.encode())
            key.setperm(POSSESSOR_ALL)
            self.keys.append(GrantedKey(key, desc, desc))
        granted = data.draw(st.sampled_from(self.keys))
        granted.key.grant(box.container, perm)
        if perm:
            granted.grants[box.name] = perm
        else:
            granted.grants.pop(box.name, None)

    @precondition(lambda self: bool(self.keys) and any(b.alive for b in self.boxes_))
    @rule(who=st.integers(0, MAX_MEMBERS), data=st.data())
    def look_up(self, who: int, data: st.DataObject) -> None:
        """A member of a live container looks a granted key up (request_key
        without callout: no upcall): found through its container keyring
        iff its own container was granted Search; readable iff Read too.
        Other containers and descendants get nothing.  (Drawn among the
        live containers, so that a run always reaches this state.)"""
        box = data.draw(st.sampled_from([b for b in self.boxes_ if b.alive]))
        step("look_up")
        granted = data.draw(st.sampled_from(self.keys))
        agents = box.agents()
        pending = agents[who % len(agents)].request("user", granted.desc, callout=None)
        result = pending.result(ANSWERED_WITHIN)
        perm = granted.grants.get(box.name, 0)
        if not (box.has_keyring and perm & Perm.SEARCH):
            assert result.get("errno") in (errno.ENOKEY, errno.EACCES), \
                f"{granted.desc} in {box.name} (perm {perm:#x}): {result}"
            return
        step("look_up (found)")
        assert result.get("serial") == granted.key.serial, result
        if perm & Perm.READ:
            assert result.get("payload") == granted.payload, result
        else:
            assert result.get("read_errno") == errno.EACCES, result


KernelAndModel.TestCase.settings = settings(max_examples=BUDGET, stateful_step_count=30,
                                            deadline=None)
test_kernel_and_model = KernelAndModel.TestCase
