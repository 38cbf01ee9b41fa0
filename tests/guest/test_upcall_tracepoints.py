"""The keys:key_upcall_* tracepoints report what the kernel decided.

Read through tracefs (the ftrace ring buffer), not bcc: kcont-upcallsnoop
(kcont/probes/) builds on these; here only that each route, a completion
and a timeout emit their event with the fields patch 0007 defines.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Agent, request_in
from upcall_fixtures import marking_helper, serve, sysctl, tracefs, unique, wait_queued

from kcont.container import Container
from kcont.keys import Keyring

EVENTS = ("key_upcall_route", "key_upcall_complete", "key_upcall_timeout")


@pytest.fixture(scope="module")
def trace() -> Iterator[Path]:
    tracing = tracefs()
    with marking_helper():
        for event in EVENTS:
            (tracing / "events" / "keys" / event / "enable").write_text("1")
        try:
            yield tracing / "trace"
        finally:
            for event in EVENTS:
                (tracing / "events" / "keys" / event / "enable").write_text("0")


def _lines(trace: Path, needle: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in trace.read_text().splitlines() if needle in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_routes_are_traced_with_the_requesters_namespaces(trace: Path,
                                                          session_keyring: int) -> None:
    queue = Keyring(session_keyring).add_keyring("kcont-trace-q")
    rejected, helper, taken = unique("rej"), unique("helper"), unique("taken")
    with Container("kcont-trace-u", ns={"uts", "net"}, trusted=False) as untrusted, \
            Container("kcont-trace-t", trusted=True) as trusted, \
            Container("kcont-trace-i", trusted=False) as intercepted:
        untrusted_id, trusted_id, intercepted_id = untrusted.id, trusted.id, intercepted.id
        request_in(untrusted, "user", rejected)
        request_in(trusted, "user", helper)
        intercepted.intercept("user", queue=queue.serial)
        agent = Agent(intercepted)
        try:
            pending = agent.request("user", taken)
            ns = pending.namespaces()
            (auth,) = wait_queued([queue], 1)[queue.serial]
            serve(auth)
            pending.result()
        finally:
            agent.stop()
    (line,) = _lines(trace, f"desc={rejected}")
    assert f"container={untrusted_id}" in line and "route=rejected" in line
    (line,) = _lines(trace, f"desc={helper}")
    assert f"container={trusted_id}" in line and "route=helper" in line
    (line,) = _lines(trace, f"desc={taken}")
    assert "route=intercepted" in line and f"record_container={intercepted_id}" in line
    fields = dict(re.findall(r"(\w+):(\d+)", line.split(" ns=")[1].split(" ")[0]))
    assert {k: int(v) for k, v in fields.items()} == ns
    key = re.search(r"key=(\d+)", line).group(1)
    (done,) = _lines(trace, f"key_upcall_complete: key={key} ")
    assert "result=0" in done and f"record_container={intercepted_id}" in done


def test_a_timeout_is_traced(trace: Path, session_keyring: int) -> None:
    queue = Keyring(session_keyring).add_keyring("kcont-trace-t")
    with sysctl("kernel.keys.intercept_timeout", "1"), \
            Container("kcont-trace-to", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        box_id = box.id
        result = request_in(box, "user", unique("timeout"))
    assert result.get("errno") == errno.ETIMEDOUT, result
    lines = _lines(trace, f"record_container={box_id} timeout_s=1")
    assert any("key_upcall_timeout:" in line for line in lines), lines


def test_a_delivery_that_fails_is_traced_as_rejected(trace: Path, session_keyring: int) -> None:
    """The record matches but its queue keyring was revoked, so the link
    fails: the route event says rejected (with the record's container),
    never intercepted, since the request never reached a queue."""
    queue = Keyring(session_keyring).add_keyring("kcont-trace-rv")
    desc = unique("revoked-queue")
    with Container("kcont-trace-rv", trusted=False) as box:
        box.intercept("user", queue=queue.serial)
        box_id = box.id
        queue.revoke()
        result = request_in(box, "user", desc)
    assert result.get("errno") == errno.EKEYREVOKED, result
    (line,) = _lines(trace, f"desc={desc}")
    assert "route=rejected" in line and f"record_container={box_id}" in line, line
