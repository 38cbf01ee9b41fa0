"""The routing matrix under every routing model: the same generated worlds,
the kernel against each model's oracle.

Hypothesis draws worlds (routing_world.py: a tree of containers with new
namespaces of every kind, trust flags and the default-trust sysctl,
records with named types and "*" and every ns_mask bit, each with a queue
keyring of its own, requests from members that unshare some namespaces
first).  Under "container" the records go on the containers; under the user-namespace models
each record becomes a registration made by a member of its container for
that member's own user namespace (pinning the member's namespaces of the
record's mask under "userns-intercept"; no mask under "userns-walk"), and
the boundary switch is drawn too.  Under "helper-in-context" nothing is
registered and every request must be served in context.  For each request
the oracle (kcont.testing.routing_model, kcont.testing.userns_models), fed
the namespace inodes the requester itself reports, predicts a queue, the
helper, the helper in context or a refusal; the kernel must agree, and the
key_upcall_route event must name the model in force.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import pytest
from design_catalogue import QUEUE_PERM, route_of, route_tracing, select_when_unregistered
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_world import Scenario, World, scenarios
from upcall_fixtures import marked, marking_helper, serve, sysctl, tracefs, unique, wait_queued

from kcont.keys import Keyring
from kcont.testing import routing_model as model
from kcont.testing import userns_models as umodels


@pytest.fixture(scope="module", autouse=True)
def mark_and_trace() -> Iterator[None]:
    with marking_helper(), route_tracing():
        yield


class ModelWorld:
    """A drawn world with its registrations made under one model."""

    def __init__(self, scenario: Scenario, session: Keyring, name: str) -> None:
        self.name = name
        self.world = World(scenario, session, records=(name == "container"))
        self.registry = umodels.UsernsRegistry()
        self.userns_of: list[int] = [agent.namespaces["user"] for agent in self.world.agents]
        self.parents = [node.parent for node in scenario.nodes]
        self.queues: dict[int, model.Record] = {r.queue: r for r, _ in
                                                self.world.queues.values()}
        if name in ("userns-walk", "userns-intercept"):
            for index, key_type, mask in scenario.records:
                self._register(session, index, key_type,
                               mask if name == "userns-intercept" else 0)

    def _register(self, session: Keyring, index: int, key_type: str, mask: int) -> None:
        agent = self.world.agents[index]
        ring = session.add_keyring(f"kcont-um{len(self.queues)}")
        ring.setperm(QUEUE_PERM)
        agent.possess(ring.serial)
        try:
            agent.call("userns_intercept_own", key_type, mask, ring.serial)
        except OSError as err:
            # Same queue, type and mask cannot repeat; anything else is a failure.
            raise AssertionError(f"registration refused: {err}") from err
        reg = self.registry.add(self.userns_of[index], key_type, mask, ring.serial,
                                agent.namespaces)
        self.queues[ring.serial] = reg.record

    def userns_chain(self, node: int | None) -> list[int]:
        """The requester's user namespace and its ancestors', up to the init one."""
        chain: list[int] = []
        while node is not None:
            if not chain or chain[-1] != self.userns_of[node]:
                chain.append(self.userns_of[node])
            node = self.parents[node]
        init = self.world.init_agent.namespaces["user"]
        if not chain or chain[-1] != init:
            chain.append(init)
        return chain

    def predict(self, node: int | None, key_type: str, ns: dict[str, int],
                boundary: bool) -> model.Decision:
        init_ns = self.world.init_agent.namespaces
        if self.name == "container":
            requester = self.world.init_model if node is None else self.world.models[node]
            return model.route(requester, ns, key_type)
        if self.name == "helper-in-context":
            return umodels.route_helper_in_context(kernel_thread=False)
        if self.name == "userns-walk":
            return umodels.route_userns_walk(self.registry, self.userns_chain(node), key_type,
                                             ns, init_ns, boundary)[0]
        return umodels.route_userns_intercept(self.registry, key_type, ns, init_ns,
                                              boundary)[0]

    def close(self, session: Keyring) -> None:
        for serial in self.queues:
            ring = Keyring(serial)
            with contextlib.suppress(OSError):
                ring.unlink(session)
        self.world.close()


@pytest.mark.parametrize("name", umodels.MODELS)
@settings(max_examples=8)
@given(scenario=scenarios(), boundary=st.booleans())
def test_kernel_routes_as_each_model_says(name: str, scenario: Scenario,
                                          boundary: bool) -> None:
    boundary = boundary and name.startswith("userns")
    session = Keyring.join_session()
    with sysctl("kernel.keys.container_default_trust",
                "trusted" if scenario.default_trusted else "untrusted"):
        # Earlier tests' containers may still be going: their records keep
        # the model until then.
        select_when_unregistered(name, boundary)
        world = ModelWorld(scenario, session, name)
        try:
            for node, key_type, unshare in scenario.requests:
                _check_one(world, node, key_type, unshare, boundary)
        finally:
            world.close(session)
            _back_to_container()


def _back_to_container() -> None:
    """Registrations go with their queue keyrings, destroyed by the key
    garbage collector a moment after the world lets go of them."""
    select_when_unregistered("container", False)


def _check_one(mw: ModelWorld, node: int | None, key_type: str, unshare: frozenset[str],
               boundary: bool) -> None:
    world = mw.world
    agent = world.init_agent if node is None else world.agents[node]
    desc = unique(key_type)
    pending = agent.request(key_type, desc, unshare=unshare)
    decision = mw.predict(node, key_type, pending.namespaces(), boundary)
    queues = [Keyring(serial) for serial in mw.queues]
    route = route_of(tracefs() / "trace", desc)
    assert route["model"] == mw.name, route
    assert route["route"] == decision.route.value, \
        f"{mw.name}: model says {decision.route.value}; kernel traced {route}"
    if decision.route is model.Route.INTERCEPTED:
        assert decision.record is not None
        found = wait_queued(queues, 1)
        holders = {serial: auths for serial, auths in found.items() if auths}
        assert list(holders) == [decision.record.queue], \
            f"{mw.name}: model: queue {decision.record.queue}; kernel: {holders}"
        (auth,) = holders[decision.record.queue]
        serve(auth, payload=f"q{decision.record.queue}")
        result = pending.result()
        assert "serial" in result, result
        assert desc not in marked()
        return
    result = pending.result()
    assert not any(wait_queued(queues, 1, timeout=0).values())
    if decision.route in (model.Route.HELPER, model.Route.IN_CONTEXT):
        assert desc in marked(), f"{mw.name}: model: {decision.route}; kernel: {result}"
        assert "serial" in result, result
    else:
        assert result.get("errno") == errno.ENOKEY, f"model: rejected; kernel: {result}"
        assert desc not in marked()
