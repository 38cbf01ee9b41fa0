"""A hypothesis-drawn world of containers, interception records and
requests, made real in the guest with its reference model next to it.

Shared by the routing matrix (test_routing_models.py), which checks the
kernel against the model, and by the probe tests (test_upcall_probes.py),
which check it against what the bcc probes saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents import Agent
from hypothesis import strategies as st

from kcont.container import Container, Flag, namespace_flags
from kcont.keys import Keyring
from kcont.namespaces import NS_KINDS
from kcont.testing import routing_model as model

# Every kind, in the order hypothesis draws and shrinks them (towards the
# first): pid and user last, as the kinds that change a scenario most (a
# new pid namespace's first child is its init; a new user namespace takes
# away the capability CONTAINER_TRUSTED needs).  Kept as it was, so that a
# soak round's seed still reproduces it.
NEW_NS = (*(kind for kind in NS_KINDS if kind not in ("pid", "user")), "pid", "user")
# The kinds a requester unshares on its own before a request.
UNSHARABLE = ("uts", "ipc", "net", "mnt")
assert set(NEW_NS) == set(NS_KINDS) and set(UNSHARABLE) < set(NS_KINDS)
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


def in_user_ns(nodes: list[Node], index: int | None) -> bool:
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
        nested = in_user_ns(nodes, parent)
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


class World:
    """The scenario made real: containers, agents, queues, and its model."""

    def __init__(self, scenario: Scenario, session: Keyring, records: bool = True) -> None:
        """``records=False`` leaves the records to the caller (the probe
        tests have each container's own daemon register them)."""
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
        for index, key_type, mask in scenario.records if records else ():
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
