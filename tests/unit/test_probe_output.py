"""kcont-upcallsnoop's column output fits a terminal.

The decision, as bcc's tools make it: fixed-width columns first, the one
field of unbounded length (a route's key type:description) last and never
truncated (it is what names the request; execsnoop does not cut ARGS
either).  So every line fits in 80 columns with realistic values, a route
line as long as its type:description is at most 17 characters
("dns_resolver:db", "user:db-password"), and a longer one runs past the
edge whole.  Namespaces are seven flag characters unless --ns.
"""

from __future__ import annotations

import errno

import pytest

from kcont.namespaces import NS_KINDS
from kcont.probes.events import NS_FULL_WIDTH, format_line, header, ns_flags

INIT = dict(zip(NS_KINDS, range(4026531835, 4026531842), strict=True))
# A requester that unshared uts, mnt and net: new inode numbers there.
OWN = {**INIT, "uts": 4026532237, "mnt": 4026532238, "net": 4026532240}
WIDTH = 80

# Realistic values at the top of their ranges: a 10-digit serial, a
# 6-digit pid, a 15-character comm, a 3-digit container, 30 s latencies.
BASE = {"key": 2147483646, "pid": 999999, "tid": 999999, "comm": "request-key-dae",
        "container": 999, "ns": OWN, "ts_ns": 0}


def route(where: str, record: int, key_type: str, description: str) -> dict[str, object]:
    return {**BASE, "event": "route", "route": where, "record_container": record,
            "type": key_type, "description": description, "disagree": [],
            "reported": {"container": 999, "ns": OWN}}


EVENTS = {
    "route intercepted": route("intercepted", 99, "dns_resolver", "db"),
    "route intercepted, user": route("intercepted", 99, "user", "db-password"),
    "route helper": route("helper", 0, "user", "debug:hello"),
    "route rejected": route("rejected", 0, "logon", "ssh:db"),
    "assume": {**BASE, "event": "assume"},
    "end instantiated": {**BASE, "event": "end", "result": "instantiated", "error": 0,
                         "latency_ns": 30_000_000_001},
    "end rejected": {**BASE, "event": "end", "result": "rejected (EKEYREJECTED)",
                     "error": errno.EKEYREJECTED, "latency_ns": 30_000_000_001},
    "complete": {**BASE, "event": "complete", "record_container": 999,
                 "result": -errno.EKEYREVOKED, "latency_ns": 30_000_000_001},
    "timeout": {**BASE, "event": "timeout", "record_container": 999},
    "helper": {**BASE, "event": "helper", "path": "/sbin/request-key"},
}


@pytest.mark.parametrize("name", list(EVENTS))
def test_default_lines_fit_80_columns(name: str) -> None:
    line = format_line(EVENTS[name], INIT)
    assert len(line) < WIDTH, f"{len(line)} columns: {line}"


def test_the_header_fits_and_lines_up() -> None:
    """Each header word starts where its column starts in a line."""
    line = format_line(EVENTS["route helper"], INIT)
    head = header()
    assert len(head) < WIDTH
    for word, value in [("EVENT", "route"), ("PID", "999999"), ("COMM", "request-key-dae"),
                        ("CTR", "999"), ("NS", "u-m-n--"), ("DETAIL", "helper")]:
        assert head.index(f" {word}") == line.index(f" {value} "), word


def test_the_description_comes_last_and_whole() -> None:
    """A description longer than the room left is not cut: it runs past 80."""
    description = "ver=0x2;host=fileserver.example.org;ip4=192.0.2.10;sec=krb5;uid=0x0"
    line = format_line(route("helper", 0, "cifs.spnego", description), INIT)
    assert line.endswith(f" cifs.spnego:{description}")
    assert len(line) > WIDTH


def test_ns_flags_name_the_kinds_a_task_has_of_its_own() -> None:
    assert ns_flags({"ns": INIT}, INIT) == "-------"
    assert ns_flags({"ns": OWN}, INIT) == "u-m-n--"
    everything = {kind: 1 for kind in NS_KINDS}
    assert ns_flags({"ns": everything}, INIT) == "uimpnCU"
    assert ns_flags({"ns": OWN, "disagree": ["net", "container"]}, INIT) == "u-m-!--"
    assert ns_flags({"ns": OWN}, {}) == "???????", "unknown init namespaces are not '-'"


def test_ns_option_prints_every_inode_number_in_a_fixed_width() -> None:
    line = format_line(EVENTS["assume"], INIT, full_ns=True)
    numbers = ",".join(str(OWN[kind]) for kind in NS_KINDS)
    assert numbers in line
    head = header(full_ns=True)
    assert head.index("DETAIL") == line.index(numbers) + NS_FULL_WIDTH + 1
    helper = format_line(EVENTS["helper"], INIT, full_ns=True)
    assert helper.index("/sbin/request-key") == head.index("DETAIL")


def test_timestamp_column_comes_first() -> None:
    event = {**EVENTS["assume"], "ts_ns": 2_500_000_000}
    line = format_line(event, INIT, start_ns=1_000_000_000, timestamp=True)
    assert line.startswith("1.500    2147483646 assume")
    assert header(timestamp=True).startswith("TIME(s)  KEY")


def test_hostile_descriptions_and_comms_cannot_forge_a_line() -> None:
    """Any user picks a key's description (request_key) and a task's comm
    (prctl): a newline or a terminal escape in them is shown escaped, so
    the root user reading the trace sees one line per event."""
    event = {**route("helper", 0, "user", "a\n999 route 1 sshd ctr1 user:forged"),
             "comm": "x\x1b[2Jevil"}
    line = format_line(event, INIT)
    assert "\n" not in line and "\x1b" not in line
    assert "\\n999 route" in line and "\\x1b[2J" in line
