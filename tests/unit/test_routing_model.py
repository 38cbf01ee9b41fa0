"""The routing model's own rules, checked without a kernel.

The guest tests use the model as the oracle for the kernel; these tests
pin what the model says, so that both cannot drift together.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kcont.testing.routing_model import (
    NS_ALL,
    NS_BIT,
    NS_KINDS,
    WILDCARD,
    Container,
    Route,
    mask_kinds,
    route,
    trust_at_creation,
)

INIT_NS = {kind: 1 for kind in NS_KINDS}


def make_init() -> Container:
    return Container(1, dict(INIT_NS), trusted=True)


def child(parent: Container, cid: int, *, new: tuple[str, ...] = (), trusted: bool = False,
          ) -> Container:
    ns = dict(parent.namespaces)
    for kind in new:
        ns[kind] = 1000 * cid + NS_BIT[kind]
    return Container(cid, ns, trusted=trusted, parent=parent)


def test_no_record_trusted_goes_to_helper_untrusted_is_rejected() -> None:
    init = make_init()
    assert route(init, INIT_NS, "user").route is Route.HELPER
    box = child(init, 2)
    assert route(box, box.namespaces, "user").route is Route.REJECTED
    box.trusted = True
    assert route(box, box.namespaces, "user").route is Route.HELPER


def test_named_type_beats_wildcard_and_more_pins_beat_fewer() -> None:
    init = make_init()
    box = child(init, 2, new=("uts", "net"))
    anything = box.add(WILDCARD, NS_ALL, queue=10)
    loose = box.add("user", 0, queue=11)
    tight = box.add("user", NS_BIT["uts"] | NS_BIT["net"], queue=12)
    assert route(box, box.namespaces, "user").record == tight
    assert route(box, box.namespaces, "logon").record == anything
    moved = dict(box.namespaces, uts=99)
    assert route(box, moved, "user").record == loose


def test_equal_records_oldest_first() -> None:
    box = child(make_init(), 2)
    first = box.add("user", NS_BIT["ipc"], queue=1)
    box.add("user", NS_BIT["mnt"], queue=2)
    assert route(box, box.namespaces, "user").record == first


def test_nearest_container_wins_over_a_more_specific_ancestor() -> None:
    init = make_init()
    outer = child(init, 2)
    inner = child(outer, 3)
    outer.add("user", NS_ALL, queue=1)
    near = inner.add(WILDCARD, 0, queue=2)
    assert route(inner, inner.namespaces, "user").record == near


def test_dead_containers_are_passed_over() -> None:
    init = make_init()
    outer = child(init, 2)
    inner = child(outer, 3)
    inner.add("user", 0, queue=1)
    far = outer.add("user", 0, queue=2)
    inner.dead = True
    decision = route(inner, inner.namespaces, "user")
    assert decision.record == far and decision.container is outer


def test_remove_exact_type_and_mask_only() -> None:
    box = child(make_init(), 2)
    box.add("user", 1, queue=1)
    box.add("user", 2, queue=1)
    assert len(box.remove("user", 1)) == 1
    assert [r.mask for r in box.records] == [2]
    assert len(box.remove(None, 0)) == 1 and not box.records


def test_trust_at_creation() -> None:
    assert trust_at_creation(True, False, False) is True
    assert trust_at_creation(False, True, True) is False
    assert trust_at_creation(None, True, True) is True
    assert trust_at_creation(None, True, False) is False
    assert trust_at_creation(None, False, True) is False


masks = st.integers(min_value=0, max_value=NS_ALL)


@given(mask=masks, moved=st.sets(st.sampled_from(NS_KINDS)))
def test_a_record_matches_iff_no_pinned_kind_moved(mask: int, moved: set[str]) -> None:
    box = child(make_init(), 2, new=NS_KINDS)
    record = box.add("user", mask, queue=7)
    requester_ns = {kind: (-1 if kind in moved else box.namespaces[kind]) for kind in NS_KINDS}
    decision = route(box, requester_ns, "user")
    if set(mask_kinds(mask)) & moved:
        assert decision.route is Route.REJECTED
    else:
        assert decision.record == record


@given(records=st.lists(st.tuples(st.sampled_from(["user", "logon", WILDCARD]), masks),
                        min_size=1, max_size=12))
def test_the_winner_is_the_most_specific_match(records: list[tuple[str, int]]) -> None:
    box = child(make_init(), 2)
    for key_type, mask in records:
        box.add(key_type, mask, queue=1)
    decision = route(box, box.namespaces, "user")
    matching = [r for r in box.records if r.key_type in ("user", WILDCARD)]
    if not matching:
        assert decision.route is Route.REJECTED
        return
    assert decision.record == min(matching, key=lambda r: r.specificity())
