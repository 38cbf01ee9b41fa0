"""The kernel and the reference model, step by step.

A hypothesis RuleBasedStateMachine drives the series' surface: containers
created (namespace kinds, trust) and killed, interception records added
and removed, requests from any container, pending requests served
(instantiated, negated, rejected), queue keyrings revoked.  Each step is
applied to the kernel and to kcont.routing_model plus the bookkeeping
below; every answer the kernel gives (errno, count, where a request went,
what its requester got) must be the model's.  On a divergence hypothesis
prints the shrunk sequence of steps as a script (``state =
KernelAndModel(); state.create(...) ...``): the reproducer.
"""

from __future__ import annotations

import errno
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from agents import Agent, Pending
from conftest import RESULTS
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)
from upcall_fixtures import marked, marking_helper, sysctl, unique, wait_queued

from kcont import routing_model as model
from kcont.container import Container
from kcont.keys import Key, Keyring

KINDS = ("uts", "ipc", "net", "mnt")
TYPES = ("user", "logon", "*")
MAX_RECORDS = 16          # kernel.keys.max_intercepts
STEPS: Counter[str] = Counter()   # rules run, for docs/reliability.md


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    (RESULTS / "state-machine.json").write_text(json.dumps(STEPS, indent=1) + "\n")
    # A machine that never reached the interesting states proved nothing.
    for needed in ("request (intercepted)", "add_record"):
        assert STEPS[needed] > 0, f"no {needed!r} step in the whole run: {dict(STEPS)}"


@dataclass
class Box:
    container: Container
    init: Agent
    model: model.Container
    alive: bool = True


@dataclass
class Waiting:
    """A request the kernel delivered to a queue and nobody served yet."""

    pending: Pending
    desc: str
    key_type: str
    box: Box
    record: model.Record
    auth: int


@dataclass
class World:
    boxes: list[Box] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


class KernelAndModel(RuleBasedStateMachine):
    boxes = Bundle("boxes")

    def __init__(self) -> None:
        super().__init__()
        self.session = Keyring.join_session()
        self.world = World()
        self.init_agent = Agent()
        self.init_model = model.Container(1, self.init_agent.namespaces, trusted=True)
        self.mark = marking_helper()
        self.mark.__enter__()
        # A run takes minutes: no request may time out between its steps.
        self.timeout = sysctl("kernel.keys.intercept_timeout", "3600")
        self.timeout.__enter__()

    def teardown(self) -> None:
        for box in self.world.boxes:
            if box.alive:
                self.kill(box)
            box.container.close()
        assert not self.world.waiting
        self.init_agent.stop()
        self.timeout.__exit__(None, None, None)
        self.mark.__exit__(None, None, None)

    # ------------------------------------------------------------ containers

    @initialize(target=boxes, kinds=st.frozensets(st.sampled_from(KINDS)),
                trusted=st.booleans())
    def first(self, kinds: frozenset[str], trusted: bool) -> Box:
        """Every run starts with a container: requests from init alone reach
        only the helper."""
        return self.create(kinds, trusted)

    @rule(target=boxes, kinds=st.frozensets(st.sampled_from(KINDS)), trusted=st.booleans())
    def create(self, kinds: frozenset[str], trusted: bool) -> Box:
        STEPS["create"] += 1
        container = Container(f"kcont-sm{len(self.world.boxes)}", ns=kinds, trusted=trusted)
        init = Agent(container)
        box = Box(container, init, model.Container(container.id, init.namespaces, trusted,
                                                   parent=self.init_model))
        self.world.boxes.append(box)
        return box

    @precondition(lambda self: sum(b.alive for b in self.world.boxes) > 1)
    @rule(box=boxes)
    def kill(self, box: Box) -> None:
        """Init exits: the container dies, and its members with it.  A request
        waits only in its own container's queue here (the containers are
        children of init), so each waiting requester dies: its report pipe
        closes, it does not hang.  (ECANCELED itself, seen by a requester
        outside the dead container, is test_intercept_errors' job.)"""
        STEPS["kill"] += 1
        if not box.alive:
            return
        box.init.stop()
        box.alive = False
        box.model.records.clear()
        for waiting in [w for w in self.world.waiting if w.box is box]:
            self.world.waiting.remove(waiting)
            try:
                result = waiting.pending.result(timeout=60)
            except EOFError:
                continue
            assert result.get("errno") == errno.ECANCELED, f"{waiting.desc}: {result}"

    # --------------------------------------------------------------- records

    @rule(box=boxes, key_type=st.sampled_from(TYPES), mask=st.integers(0, model.NS_ALL))
    def add_record(self, box: Box, key_type: str, mask: int) -> None:
        STEPS["add_record"] += 1
        queue = self.session.add_keyring(unique("q"))
        try:
            box.container.intercept(key_type, ns=mask, queue=queue.serial)
        except OSError as err:
            want = errno.ECANCELED if not box.alive else \
                errno.ENOSPC if len(box.model.records) >= MAX_RECORDS else None
            assert err.errno == want, f"add_record: kernel {err}, model {want}"
            return
        assert box.alive and len(box.model.records) < MAX_RECORDS, "kernel took the record"
        box.model.add(key_type, mask, queue.serial)

    @rule(box=boxes, key_type=st.sampled_from(TYPES), mask=st.integers(0, model.NS_ALL))
    def remove_records(self, box: Box, key_type: str, mask: int) -> None:
        STEPS["remove_records"] += 1
        try:
            removed = box.container.remove_intercepts(key_type, ns=mask)
        except OSError as err:
            assert not box.alive and err.errno == errno.ECANCELED, err
            return
        gone = self._drop_records(box, key_type, mask)
        assert removed == len(gone), f"removed: kernel {removed}, model {len(gone)}"
        self._expect_ended(lambda w: w.record in gone, errno.ENOKEY)

    def _drop_records(self, box: Box, key_type: str, mask: int) -> list[model.Record]:
        gone = [r for r in box.model.records if r.key_type == key_type and r.mask == mask]
        box.model.records[:] = [r for r in box.model.records if r not in gone]
        return gone

    # -------------------------------------------------------------- requests

    @rule(box=st.one_of(boxes, boxes, boxes, st.none()),
          key_type=st.sampled_from(("user", "logon")),
          unshare=st.frozensets(st.sampled_from(KINDS), max_size=2))
    def request(self, box: Box | None, key_type: str, unshare: frozenset[str]) -> None:
        if box is not None and not box.alive:
            return
        agent = self.init_agent if box is None else box.init
        requester = self.init_model if box is None else box.model
        desc = unique(key_type)
        pending = agent.request(key_type, desc, unshare=unshare)
        decision = model.route(requester, pending.namespaces(), key_type)
        STEPS[f"request ({decision.route.value})"] += 1
        if decision.route is model.Route.INTERCEPTED:
            assert decision.record is not None and decision.container is not None
            queue = Keyring(decision.record.queue)
            earlier = {w.auth for w in self.world.waiting if w.record.queue == queue.serial}
            new = set(wait_queued([queue], len(earlier) + 1)[queue.serial]) - earlier
            assert len(new) == 1, f"{desc}: model says queue {queue.serial}; kernel: {new}"
            owner = next(b for b in self.world.boxes if b.model is decision.container)
            self.world.waiting.append(Waiting(pending, desc, key_type, owner, decision.record,
                                              new.pop()))
            return
        result = pending.result()
        if decision.route is model.Route.HELPER:
            assert "serial" in result and desc in marked(), f"{desc}: model helper; {result}"
        else:
            assert result.get("errno") == errno.ENOKEY, f"{desc}: model rejects; {result}"
            assert desc not in marked()

    @precondition(lambda self: any(b.alive and b.model.records for b in self.world.boxes))
    @rule(data=st.data(), unshare=st.frozensets(st.sampled_from(KINDS), max_size=1))
    def request_recorded(self, data: st.DataObject, unshare: frozenset[str]) -> None:
        """A request from a container that has records, of a type one of them
        names: uniform choices alone rarely line a request up with a record."""
        box = data.draw(st.sampled_from([b for b in self.world.boxes
                                         if b.alive and b.model.records]))
        types = sorted({r.key_type for r in box.model.records} - {"*"}) or ["user"]
        self.request(box, data.draw(st.sampled_from(types)), unshare)

    @precondition(lambda self: bool(self.world.waiting))
    @rule(data=st.data(), action=st.sampled_from(("instantiate", "negate", "reject")))
    def serve(self, data: st.DataObject, action: str) -> None:
        from upcall_fixtures import serve
        STEPS[f"serve ({action})"] += 1
        waiting = data.draw(st.sampled_from(self.world.waiting))
        self.world.waiting.remove(waiting)
        serve(waiting.auth, action=action, payload="served", error=errno.EKEYREJECTED)
        result = waiting.pending.result()
        if action == "instantiate":
            assert "serial" in result, result
            if waiting.key_type == "user":
                assert result.get("payload") == "served", result
        else:
            want = errno.ENOKEY if action == "negate" else errno.EKEYREJECTED
            assert result.get("errno") == want, f"{action}: {result}"

    @precondition(lambda self: bool(self.world.waiting))
    @rule(data=st.data())
    def revoke_queue(self, data: st.DataObject) -> None:
        """Revoking a queue keyring fails what waits in it (EKEYREVOKED); its
        records go too, so that later requests are routed again."""
        STEPS["revoke_queue"] += 1
        waiting = data.draw(st.sampled_from(self.world.waiting))
        record, box = waiting.record, waiting.box
        Key(record.queue).revoke()
        self._expect_ended(lambda w: w.record.queue == record.queue, errno.EKEYREVOKED)
        removed = box.container.remove_intercepts(record.key_type, ns=record.mask)
        gone = self._drop_records(box, record.key_type, record.mask)
        assert removed == len(gone), f"removed: kernel {removed}, model {len(gone)}"
        self._expect_ended(lambda w: w.record in gone, errno.ENOKEY)

    def _expect_ended(self, which: object, want: int) -> None:
        ended = [w for w in self.world.waiting if which(w)]  # type: ignore[operator]
        for waiting in ended:
            self.world.waiting.remove(waiting)
            result = waiting.pending.result(timeout=60)
            assert result.get("errno") == want, \
                f"{waiting.desc}: want {errno.errorcode[want]}, got {result}"


KernelAndModel.TestCase.settings = settings(max_examples=6, stateful_step_count=20,
                                            deadline=None)
test_kernel_and_model = KernelAndModel.TestCase
