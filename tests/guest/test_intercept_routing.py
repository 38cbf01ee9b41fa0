"""The routing matrix: the kernel against kcont.testing.routing_model, the oracle.

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

import pytest
from hypothesis import given, settings
from routing_world import Scenario, World, scenarios
from upcall_fixtures import marked, marking_helper, serve, sysctl, unique, wait_queued

from kcont.keys import Keyring
from kcont.testing import routing_model as model


@pytest.fixture(scope="module", autouse=True)
def mark() -> Iterator[None]:
    with marking_helper():
        yield


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
