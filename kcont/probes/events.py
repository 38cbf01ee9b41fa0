"""What upcallsnoop reports, as plain data: decoded events, and the trail
of each upcall from its route to its end.

Kept apart from the bcc loader so that the host tests and the guest
tests read events the same way, and so that nothing here needs bcc.
"""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass, field
from typing import Any

from kcont.namespaces import NS_KINDS

KINDS = {1: "route", 2: "assume", 3: "end", 4: "complete", 5: "timeout", 6: "helper"}
ROUTES = {0: "intercepted", 1: "helper", 2: "rejected"}
REQUEST_KEY = "/sbin/request-key"


class NsSet(ctypes.Structure):
    """``struct ns_set`` of upcallsnoop.c."""

    _fields_ = [(kind, ctypes.c_uint32) for kind in NS_KINDS]


class RawEvent(ctypes.Structure):
    """``struct event`` of upcallsnoop.c, field for field (bcc cannot derive
    a ctypes class for a struct holding structs)."""

    _fields_ = [("ts", ctypes.c_uint64), ("container", ctypes.c_uint64),
                ("tp_container", ctypes.c_uint64), ("record_container", ctypes.c_uint64),
                ("latency_ns", ctypes.c_uint64), ("ns", NsSet), ("tp_ns", NsSet),
                ("kind", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("tid", ctypes.c_uint32),
                ("key", ctypes.c_int32), ("route", ctypes.c_int32), ("result", ctypes.c_int32),
                ("comm", ctypes.c_char * 16), ("type", ctypes.c_char * 32),
                ("desc", ctypes.c_char * 128), ("arg", ctypes.c_char * 16)]


def ns_dict(raw: Any) -> dict[str, int]:
    """A ``struct ns_set`` (any object with the seven fields) as a dict."""
    return {kind: int(getattr(raw, kind)) for kind in NS_KINDS}


def end_result(kind: int, error: int) -> str:
    """instantiated, negated (ENOKEY) or rejected (any other error)."""
    if kind == 0:
        return "instantiated"
    if error == -errno.ENOKEY:
        return "negated"
    return f"rejected ({errno.errorcode.get(-error, str(-error))})"


def decode(raw: Any) -> dict[str, Any]:
    """One ring-buffer record as a JSON-able dict (the ``--json`` line)."""
    kind = KINDS.get(int(raw.kind), str(raw.kind))
    event: dict[str, Any] = {
        "event": kind, "ts_ns": int(raw.ts), "pid": int(raw.pid), "tid": int(raw.tid),
        "comm": bytes(raw.comm).split(b"\0", 1)[0].decode(errors="replace"),
        "container": int(raw.container), "ns": ns_dict(raw.ns),
    }
    if kind != "helper":
        event["key"] = int(raw.key)
    if kind == "route":
        event.update(
            type=bytes(raw.type).split(b"\0", 1)[0].decode(errors="replace"),
            description=bytes(raw.desc).split(b"\0", 1)[0].decode(errors="replace"),
            route=ROUTES.get(int(raw.route), str(raw.route)),
            record_container=int(raw.record_container),
            reported={"container": int(raw.tp_container), "ns": ns_dict(raw.tp_ns)})
        event["disagree"] = disagreements(event)
    elif kind == "end":
        event.update(result=end_result(int(raw.route), int(raw.result)),
                     error=-int(raw.result), latency_ns=int(raw.latency_ns))
    elif kind == "complete":
        event.update(record_container=int(raw.record_container), result=int(raw.result),
                     latency_ns=int(raw.latency_ns))
    elif kind == "timeout":
        event["record_container"] = int(raw.record_container)
    elif kind == "helper":
        event["path"] = bytes(raw.desc).split(b"\0", 1)[0].decode(errors="replace")
        arg = bytes(raw.arg).split(b"\0", 1)[0].decode(errors="replace")
        event["key"] = int(arg) if arg.isdigit() else 0
    return event


def disagreements(route: dict[str, Any]) -> list[str]:
    """Where the tracepoint's account of the requester differs from what
    the probe read from task_struct: the names of the fields."""
    reported = route["reported"]
    wrong = [kind for kind in NS_KINDS if route["ns"][kind] != reported["ns"][kind]]
    if route["container"] != reported["container"]:
        wrong.append("container")
    return wrong


@dataclass
class Trail:
    """Everything seen of one upcall, keyed by its target key's serial."""

    key: int
    routes: list[dict[str, Any]] = field(default_factory=list)
    assumes: list[dict[str, Any]] = field(default_factory=list)
    ends: list[dict[str, Any]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    timeouts: list[dict[str, Any]] = field(default_factory=list)
    helpers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def route(self) -> dict[str, Any]:
        """The one route event (a test asserts there is exactly one)."""
        if len(self.routes) != 1:
            raise LookupError(f"key {self.key}: {len(self.routes)} route events")
        return self.routes[0]

    @property
    def ended(self) -> bool:
        return bool(self.ends or self.timeouts)


def trails(events: list[dict[str, Any]]) -> dict[int, Trail]:
    """Group events by key; helper spawns by the key on their argv."""
    out: dict[int, Trail] = {}
    plural = {"route": "routes", "assume": "assumes", "end": "ends", "complete": "completes",
              "timeout": "timeouts", "helper": "helpers"}
    for event in events:
        name = plural.get(event["event"])
        if name is None or (event["event"] == "helper"
                            and not event["path"].endswith("request-key")):
            continue
        trail = out.setdefault(event["key"], Trail(event["key"]))
        getattr(trail, name).append(event)
    return out


def format_line(event: dict[str, Any], start_ns: int) -> str:
    """The column output: time, key, event, task, container, namespaces, detail."""
    ns = ",".join(str(event["ns"][kind]) for kind in NS_KINDS)
    detail = ""
    kind = event["event"]
    if kind == "route":
        detail = (f"{event['type']}:{event['description']} {event['route']} "
                  f"record={event['record_container']}")
        if event["disagree"]:
            detail += " DISAGREE(" + ",".join(event["disagree"]) + ")"
    elif kind == "end":
        detail = f"{event['result']} {event['latency_ns'] / 1e6:.3f}ms"
    elif kind == "complete":
        detail = f"result={event['result']} {event['latency_ns'] / 1e6:.3f}ms"
    elif kind == "timeout":
        detail = f"record={event['record_container']}"
    elif kind == "helper":
        detail = event["path"]
    when = (event["ts_ns"] - start_ns) / 1e9
    return (f"{when:<10.6f} {event.get('key', 0):<10} {kind:<8} {event['pid']:<7} "
            f"{event['comm']:<16} {event['container']:<5} {ns} {detail}")


HEADER = (f"{'TIME(s)':<10} {'KEY':<10} {'EVENT':<8} {'PID':<7} {'COMM':<16} {'CTR':<5} "
          f"NS({','.join(NS_KINDS)}) DETAIL")
