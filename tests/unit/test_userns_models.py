"""The user-namespace and in-context reference models' own rules, without a
kernel: what the guest tests use as the oracle, pinned here so that model
and kernel cannot drift together."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcont import upcall_models
from kcont.namespaces import NS_BIT, NS_KINDS
from kcont.testing.routing_model import Route
from kcont.testing.userns_models import (
    UsernsRegistry,
    in_init_namespaces,
    route_helper_in_context,
    route_userns_intercept,
    route_userns_walk,
)

INIT = {kind: 1 for kind in NS_KINDS}


def ns(**changed: int) -> dict[str, int]:
    return {**INIT, **changed}


def test_the_walk_takes_the_nearest_user_namespace_with_a_registration() -> None:
    reg = UsernsRegistry()
    outer = reg.add(10, "*", 0, queue=100, registrar_ns=ns(user=10))
    inner = reg.add(20, "user", 0, queue=200, registrar_ns=ns(user=20))
    requester = ns(user=30, uts=5)
    decision, userns = route_userns_walk(reg, [30, 20, 10, 1], "user", requester, INIT)
    assert decision.route is Route.INTERCEPTED and decision.record == inner.record
    assert userns == 20
    decision, userns = route_userns_walk(reg, [30, 20, 10, 1], "logon", requester, INIT)
    assert decision.record == outer.record and userns == 10


def test_nothing_registered_is_the_helper_unless_the_boundary_is_on() -> None:
    reg = UsernsRegistry()
    inside = ns(user=7)
    assert route_userns_walk(reg, [7, 1], "user", inside, INIT)[0].route is Route.HELPER
    assert route_userns_walk(reg, [7, 1], "user", inside, INIT,
                             boundary=True)[0].route is Route.REJECTED
    # The host itself still gets its helper with the boundary on.
    assert route_userns_walk(reg, [1], "user", INIT, INIT,
                             boundary=True)[0].route is Route.HELPER


@given(kind=st.sampled_from([k for k in NS_KINDS if k != "user"]))
def test_the_boundary_counts_every_namespace_kind(kind: str) -> None:
    assert not in_init_namespaces(ns(**{kind: 99}), INIT)
    assert route_userns_intercept(UsernsRegistry(), "user", ns(**{kind: 99}), INIT,
                                  boundary=True)[0].route is Route.REJECTED


def test_intercept_does_not_walk_and_compares_pinned_namespaces() -> None:
    reg = UsernsRegistry()
    reg.add(10, "*", NS_BIT["net"], queue=100, registrar_ns=ns(user=10, net=50))
    # A child user namespace's request never reaches its parent's registration.
    child = ns(user=20, net=50)
    assert route_userns_intercept(reg, "user", child, INIT)[0].route is Route.HELPER
    same = ns(user=10, net=50)
    decision, userns = route_userns_intercept(reg, "user", same, INIT)
    assert decision.route is Route.INTERCEPTED and userns == 10
    moved = ns(user=10, net=51)
    assert route_userns_intercept(reg, "user", moved, INIT)[0].route is Route.HELPER


def test_most_specific_registration_first_then_oldest() -> None:
    reg = UsernsRegistry()
    wide = reg.add(10, "*", 0, queue=1, registrar_ns=ns(user=10))
    named = reg.add(10, "user", 0, queue=2, registrar_ns=ns(user=10))
    pinned = reg.add(10, "user", NS_BIT["uts"], queue=3, registrar_ns=ns(user=10))
    later = reg.add(10, "user", NS_BIT["ipc"], queue=4, registrar_ns=ns(user=10))
    order = [r.record for r in reg.by_userns[10]]
    assert order == [pinned.record, later.record, named.record, wide.record]
    reg.drop_queue(3)
    assert [r.record.queue for r in reg.by_userns[10]] == [4, 2, 1]


def test_in_context_unless_a_kernel_thread() -> None:
    assert route_helper_in_context(kernel_thread=False).route is Route.IN_CONTEXT
    assert route_helper_in_context(kernel_thread=True).route is Route.HELPER


@pytest.fixture
def sysctls(tmp_path: Path) -> Path:
    (tmp_path / "upcall_model").write_text("container\n")
    (tmp_path / "upcall_boundary").write_text("0\n")
    return tmp_path


def test_the_switch_reads_writes_and_restores(sysctls: Path) -> None:
    with upcall_models.in_force("userns-walk", True, sysctls):
        assert upcall_models.active(sysctls) == "userns-walk"
        assert upcall_models.boundary(sysctls)
    assert upcall_models.active(sysctls) == "container"
    assert not upcall_models.boundary(sysctls)


def test_an_unknown_model_is_refused_before_the_kernel_sees_it(sysctls: Path) -> None:
    with pytest.raises(ValueError, match="known: container, userns-walk"):
        upcall_models.select("userns", sysctl_dir=sysctls)
    assert upcall_models.active(sysctls) == "container"
