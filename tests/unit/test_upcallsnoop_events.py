"""kcont-upcallsnoop's decoding, on the host: records built with the same
ctypes layout the ring buffer delivers, decoded as the tool decodes them.
(That the probes see the right things is shown in the guest,
tests/guest/test_upcall_probes.py.)"""

from __future__ import annotations

import ctypes
import errno

import pytest

from kcont.namespaces import NS_KINDS
from kcont.probes import upcallsnoop
from kcont.probes.events import HEADER, NsSet, RawEvent, decode, format_line
from kcont.testing.trails import trails

NS = dict(zip(NS_KINDS, range(4026531835, 4026531842), strict=True))


def raw(kind: int, key: int = 42, **fields: object) -> RawEvent:
    event = RawEvent(ts=1_000_000, kind=kind, pid=7, tid=7, key=key, container=2,
                     comm=b"python")
    event.ns = NsSet(**NS)
    event.tp_ns = NsSet(**NS)
    event.tp_container = 2
    for name, value in fields.items():
        setattr(event, name, value)
    return event


def test_layout_matches_the_c_struct() -> None:
    """upcallsnoop.c's struct event: 5 u64, 2 x 7 u32, 6 x 32-bit, 192 chars,
    then the model and the registration's user namespace, then the u64
    container a request is made for by its network namespace."""
    assert ctypes.sizeof(RawEvent) == 5 * 8 + 2 * 28 + 6 * 4 + 16 + 32 + 128 + 16 + 2 * 4 + 8
    source = upcallsnoop.SOURCE.read_text()
    for name, _ in RawEvent._fields_:
        assert f" {name};" in source or f" {name}[" in source or f", {name}" in source, name


def test_route_decodes_and_agrees() -> None:
    event = decode(raw(1, type=b"user", desc=b"db-password", route=0, record_container=2))
    assert event["event"] == "route" and event["route"] == "intercepted"
    assert event["type"] == "user" and event["description"] == "db-password"
    assert event["ns"] == NS and event["reported"]["ns"] == NS
    assert event["disagree"] == []


def test_a_route_names_its_model_and_a_user_namespaces_registration() -> None:
    event = decode(raw(1, type=b"user", desc=b"d", route=0, model=1, record_userns=4026532000))
    assert event["model"] == "userns-walk" and event["record_userns"] == 4026532000
    line = format_line(event, {})
    assert "userns4026532000 user:d [userns-walk]" in line, line
    plain = decode(raw(1, type=b"user", desc=b"d", route=0, record_container=5))
    assert plain["model"] == "container"
    assert "ctr5 user:d" in format_line(plain, {}) and "[" not in format_line(plain, {})
    context = decode(raw(1, type=b"user", desc=b"d", route=3, model=3))
    assert context["route"] == "in-context"
    assert "in-context user:d [helper-in-context]" in format_line(context, {})


def test_route_disagreement_names_the_fields() -> None:
    record = raw(1, type=b"user", desc=b"x", route=1)
    record.tp_ns.net = 1
    record.tp_container = 9
    event = decode(record)
    assert event["disagree"] == ["net", "container"]
    line = format_line(event, NS)
    assert "DISAGREE(net,container)" in line
    assert " ----!-- " in line, "the NS column marks the kind the tracepoint disagrees on"


def test_a_request_for_a_containers_network_namespace_is_compared_with_that_container(
        ) -> None:
    """A kworker (container 1, initial namespaces) runs a lookup that the
    probe read as container 5's by its network namespace: the tracepoint's
    container 5, with 5's namespaces, agrees; container 1 would not."""
    record = raw(1, type=b"dns_resolver", desc=b"afsdb:cell", route=0, record_container=5,
                 container=1, comm=b"kworker/0:1", net_container=5)
    record.tp_container = 5
    record.tp_ns.net = 4026532100
    event = decode(record)
    assert event["net_container"] == 5 and event["disagree"] == []
    assert "kworker/0:1     1   " in format_line(event, {})
    assert format_line(event, {}).endswith("ctr5 dns_resolver:afsdb:cell [for ctr5]")
    record.tp_container = 1
    assert decode(record)["disagree"] == ["container"]
    mine = raw(1, type=b"dns_resolver", desc=b"x", route=1)
    assert decode(mine)["net_container"] == 0 and decode(mine)["disagree"] == []


@pytest.mark.parametrize(("end_kind", "error", "result", "column"), [
    (0, 0, "instantiated", "instantiated"),
    (1, -errno.ENOKEY, "negated", "negated"),
    (1, -errno.EKEYREJECTED, "rejected (EKEYREJECTED)", "EKEYREJECTED"),
    (1, -errno.ETIMEDOUT, "rejected (ETIMEDOUT)", "ETIMEDOUT"),
])
def test_end_results(end_kind: int, error: int, result: str, column: str) -> None:
    """--json keeps the full result; the column names the errno alone,
    which is what a reader greps for and keeps the line short."""
    event = decode(raw(3, route=end_kind, result=error, latency_ns=1_500_000))
    assert event["result"] == result
    assert format_line(event, NS).endswith(f" {column} 1.500ms")


def test_helper_takes_its_key_from_argv() -> None:
    event = decode(raw(6, desc=b"/sbin/request-key", arg=b"930566520"))
    assert event["key"] == 930566520 and event["path"] == "/sbin/request-key"
    garbled = decode(raw(6, desc=b"/sbin/modprobe", arg=b"-q"))
    assert garbled["key"] == 0


def test_trails_group_by_key_and_skip_other_helpers() -> None:
    events = [decode(raw(1, key=5, type=b"user", desc=b"a")), decode(raw(2, key=5)),
              decode(raw(3, key=5)), decode(raw(4, key=5)),
              decode(raw(6, desc=b"/sbin/request-key", arg=b"5")),
              decode(raw(6, desc=b"/sbin/modprobe", arg=b"5")),
              decode(raw(1, key=6, type=b"user", desc=b"b"))]
    found = trails(events)
    assert set(found) == {5, 6}
    five = found[5]
    assert (len(five.routes), len(five.assumes), len(five.ends), len(five.completes),
            len(five.helpers)) == (1, 1, 1, 1, 1)
    assert five.ended and not found[6].ended
    found[6].routes.append(found[6].routes[0])
    with pytest.raises(LookupError, match="2 route events"):
        _ = found[6].route


def test_help_has_examples_and_columns(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        upcallsnoop.main(["-h"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--json" in out and "--ebpf" in out
    assert HEADER.split() == ["KEY", "EVENT", "PID", "COMM", "CTR", "NS", "DETAIL"]
    wide = [line for line in out.splitlines() if len(line) >= 80]
    assert not wide, wide
