"""The routing matrix: the kernel against kcont.routing_model, the oracle.

Hypothesis draws a tree of containers (nesting, new namespaces of every
kind, trust flags, the default-trust sysctl), interception records on
them (named types and "*", every ns_mask bit) each with a queue keyring
of its own, and requests from members, some of which unshare namespaces
first.  For each request the model, fed the namespace inodes the
requester itself reports, predicts a queue, the helper or a rejection;
the kernel must agree: the auth key lands in exactly that queue (and is
served from there), the marking helper runs for exactly the requests the
model sends to it, and the others get ENOKEY.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from agents import Agent
from hypothesis import given, settings
from hypothesis import strategies as st
from upcall_fixtures import marked, marking_helper, serve, sysctl, unique, wait_queued

from kcont import routing_model as model
from kcont.container import Container, Flag, namespace_flags
from kcont.keys import Keyring

NEW_NS = ("uts", "ipc", "mnt", "net", "cgroup", "pid", "user")
UNSHARABLE = ("uts", "ipc", "net", "mnt")
TYPES = ("user", "logon")


@dataclass(frozen=True)
class Node:
    parent: int | None        # index of the parent node, None: a child of init
    new_ns: frozenset[str]
    trust: bool | None        # CONTAINER_TRUSTED / _UNTRUSTED / neither


@dataclass(frozen=True)
class Scenario:
    default_trusted: bool
    nodes: tuple[Node, ...]
    records: tuple[tuple[int, str, int], ...]              # (node, type, mask)
    requests: tuple[tuple[int | None, str, frozenset[str]], ...]  # (node or init, type, unshare)


def _in_user_ns(nodes: list[Node], index: int | None) -> bool:
    while index is not None:
        if "user" in nodes[index].new_ns:
            return True
        index = nodes[index].parent
    return False


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    nodes: list[Node] = []
    for i in range(draw(st.integers(1, 3))):
        parent = draw(st.sampled_from([None, *range(i)]))
        # A creator inside a user namespace lacks CAP_SYS_ADMIN in the init
        # one, which CONTAINER_TRUSTED needs, and so does a new user
        # namespace while kernel.unprivileged_userns_clone is 0 (Debian's
        # default in the guest).
        nested = _in_user_ns(nodes, parent)
        kinds = [k for k in NEW_NS if k != "user"] if nested else list(NEW_NS)
        new_ns = frozenset(draw(st.sets(st.sampled_from(kinds))))
        choices: list[bool | None] = [None, False] if nested else [None, False, True]
        nodes.append(Node(parent, new_ns, draw(st.sampled_from(choices))))
    records = draw(st.lists(
        st.tuples(st.integers(0, len(nodes) - 1), st.sampled_from([*TYPES, "*"]),
                  st.integers(0, model.NS_ALL)),
        max_size=6, unique=True))
    requests = draw(st.lists(
        st.tuples(st.sampled_from([None, *range(len(nodes))]), st.sampled_from(TYPES),
                  st.frozensets(st.sampled_from(UNSHARABLE), max_size=2)),
        min_size=1, max_size=4))
    return Scenario(draw(st.booleans()), tuple(nodes), tuple(records), tuple(requests))


@pytest.fixture(scope="module", autouse=True)
def mark() -> Iterator[None]:
    with marking_helper():
        yield


class World:
    """The scenario made real: containers, agents, queues, and its model."""

    def __init__(self, scenario: Scenario, session: Keyring) -> None:
        self.containers: list[Container] = []
        self.agents: list[Agent] = []
        self.models: list[model.Container] = []
        self.queues: dict[int, tuple[model.Record, int]] = {}
        init_agent = Agent()
        self.init_agent = init_agent
        self.init_model = model.Container(1, init_agent.namespaces, trusted=True)
        for node in scenario.nodes:
            flags = namespace_flags(node.new_ns)
            if node.trust is True:
                flags |= Flag.TRUSTED
            elif node.trust is False:
                flags |= Flag.UNTRUSTED
            if node.parent is None:
                box = Container(f"kcont-m{len(self.containers)}", flags=flags)
                parent_model = self.init_model
            else:
                box = self.agents[node.parent].create(f"kcont-m{len(self.containers)}", flags)
                parent_model = self.models[node.parent]
            agent = Agent(box)
            self.containers.append(box)
            self.agents.append(agent)
            trusted = model.trust_at_creation(node.trust, scenario.default_trusted,
                                              parent_model.trusted)
            assert box.trusted == trusted, "trust at creation disagrees with the model"
            self.models.append(model.Container(box.id, agent.namespaces, trusted,
                                               parent=parent_model))
        for index, key_type, mask in scenario.records:
            ring = session.add_keyring(f"kcont-rq{len(self.queues)}")
            self.containers[index].intercept(key_type, ns=mask, queue=ring.serial)
            record = self.models[index].add(key_type, mask, ring.serial)
            self.queues[ring.serial] = (record, index)

    def close(self) -> None:
        for agent in reversed(self.agents):
            agent.stop()
        for box in self.containers:
            box.close()
        self.init_agent.stop()


@settings(max_examples=12)
@given(scenario=scenarios())
def test_kernel_routes_as_the_model_says(scenario: Scenario) -> None:
    session = Keyring.join_session()
    with sysctl("kernel.keys.container_default_trust",
                "trusted" if scenario.default_trusted else "untrusted"):
        world = World(scenario, session)
        try:
            for node, key_type, unshare in scenario.requests:
                _check_one(world, node, key_type, unshare)
        finally:
            world.close()


def _check_one(world: World, node: int | None, key_type: str, unshare: frozenset[str]) -> None:
    agent = world.init_agent if node is None else world.agents[node]
    requester = world.init_model if node is None else world.models[node]
    desc = unique(key_type)
    pending = agent.request(key_type, desc, unshare=unshare)
    decision = model.route(requester, pending.namespaces(), key_type)
    queues = [Keyring(serial) for serial in world.queues]
    if decision.route is model.Route.INTERCEPTED:
        assert decision.record is not None
        found = wait_queued(queues, 1)
        holders = {serial: auths for serial, auths in found.items() if auths}
        assert list(holders) == [decision.record.queue], \
            f"model: queue {decision.record.queue}; kernel: {holders}"
        (auth,) = holders[decision.record.queue]
        request = serve(auth, payload=f"q{decision.record.queue}")
        assert request.container_id == requester.id
        result = pending.result()
        assert "serial" in result, result
        if key_type == "user":
            assert result["payload"] == f"q{decision.record.queue}"
        assert desc not in marked()
        return
    result = pending.result()
    assert not any(wait_queued(queues, 1, timeout=0).values())
    if decision.route is model.Route.HELPER:
        assert desc in marked(), f"model: helper; kernel: {result}"
        assert "serial" in result, result
    else:
        assert result.get("errno") == errno.ENOKEY, f"model: rejected; kernel: {result}"
        assert desc not in marked()
