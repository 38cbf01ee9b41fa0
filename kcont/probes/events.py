"""What upcallsnoop reports, as plain data: decoded events and their
column lines.

Kept apart from the bcc loader so that the host tests and the guest
tests read events the same way, and so that nothing here needs bcc.
The per-key trails the probe tests group events into are test helpers:
kcont.testing.trails.
"""

from __future__ import annotations

import ctypes
import errno
from pathlib import Path
from typing import Any

from kcont.namespaces import NS_KINDS
from kcont.one_line_parser import one_line

# The event codes: EV_* in upcallsnoop.c.
KINDS = {1: "route", 2: "assume", 3: "end", 4: "complete", 5: "timeout", 6: "helper"}
# The route codes and names: KEY_UPCALL_* and show_key_upcall_route() in the
# series' include/trace/events/keys.h (patch 0007).
ROUTES = {0: "intercepted", 1: "helper", 2: "rejected", 3: "in-context"}
# The routing models: KEY_UPCALL_MODEL_* and show_key_upcall_model() there.
MODELS = {0: "container", 1: "userns-walk", 2: "userns-intercept", 3: "helper-in-context"}
# How an end event's key was completed: END_* in upcallsnoop.c.
END_INSTANTIATE, END_REJECT = 0, 1
REQUEST_KEY = "/sbin/request-key"
# unshare(1)'s option letter for each kind, in NS_KINDS order: the NS column.
NS_LETTERS = dict(zip(NS_KINDS, "uimpnCU", strict=True))
# The width of --ns's list: seven 10-digit inode numbers and six commas.
NS_FULL_WIDTH = 7 * 10 + 6


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
                ("desc", ctypes.c_char * 128), ("arg", ctypes.c_char * 16),
                ("model", ctypes.c_int32), ("record_userns", ctypes.c_uint32),
                ("net_container", ctypes.c_uint64)]


def ns_dict(raw: Any) -> dict[str, int]:
    """A ``struct ns_set`` (any object with the seven fields) as a dict."""
    return {kind: int(getattr(raw, kind)) for kind in NS_KINDS}


def end_result(kind: int, error: int) -> str:
    """instantiated, negated (ENOKEY) or rejected (any other error)."""
    if kind == END_INSTANTIATE:
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
            model=MODELS.get(int(raw.model), str(raw.model)),
            record_userns=int(raw.record_userns),
            net_container=int(raw.net_container),
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
        event["key"] = int(arg) if arg.isascii() and arg.isdigit() else 0
    return event


def disagreements(route: dict[str, Any]) -> list[str]:
    """Where the tracepoint's account of the requester differs from what
    the probe read from task_struct: the names of the fields.

    A request the probe read as a container's by its network namespace
    (``net_container``: a kworker's, or a task's walking into another
    container's mount) is that container's, with the container's
    namespaces rather than the running task's: only the container is
    compared then."""
    reported = route["reported"]
    if route.get("net_container"):
        return [] if reported["container"] == route["net_container"] else ["container"]
    wrong = [kind for kind in NS_KINDS if route["ns"][kind] != reported["ns"][kind]]
    if route["container"] != reported["container"]:
        wrong.append("container")
    return wrong




def init_namespaces(proc: Path = Path("/proc")) -> dict[str, int]:
    """pid 1's namespaces, which the NS column compares against: the init
    namespaces, as seen from where the tool runs.  A kind that cannot be
    read is left out, and the column shows ``?`` for it."""
    found = {}
    for kind in NS_KINDS:
        try:
            found[kind] = (proc / "1" / "ns" / kind).stat().st_ino
        except OSError:
            continue
    return found


def ns_flags(event: dict[str, Any], init: dict[str, int]) -> str:
    """The NS column: for each kind in NS_KINDS, ``-`` if the task is in
    pid 1's namespace, its unshare(1) letter if not, ``!`` if the
    tracepoint reported another namespace than task_struct holds.  Seven
    characters, so a developer sees at a glance which namespaces a task
    has of its own without reading seven inode numbers."""
    disagree = set(event.get("disagree", ()))
    flags = []
    for kind in NS_KINDS:
        if kind in disagree:
            flags.append("!")
        elif kind not in init:
            flags.append("?")
        else:
            flags.append("-" if event["ns"][kind] == init[kind] else NS_LETTERS[kind])
    return "".join(flags)


def errno_name(error: int) -> str:
    """ENOKEY for 126 (or -126): the name a kernel developer greps for."""
    return errno.errorcode.get(abs(error), str(abs(error)))


def detail(event: dict[str, Any]) -> str:
    """The last column.  Fixed-width words first; the one field of
    unbounded length (a route's type:description) last and never
    truncated, as bcc's execsnoop prints ARGS."""
    kind = event["event"]
    if kind == "route":
        route = event["route"]
        where = route
        if route == "intercepted":
            where = (f"userns{event['record_userns']}" if event.get("record_userns")
                     else f"ctr{event['record_container']}")
        text = f"{where} {one_line(event['type'])}:{one_line(event['description'])}"
        if event.get("net_container"):
            # Run by this task (a kworker, say), made for that container.
            text += f" [for ctr{event['net_container']}]"
        if event.get("model", "container") != "container":
            text += f" [{event['model']}]"
        if event["disagree"]:
            text += " DISAGREE(" + ",".join(event["disagree"]) + ")"
        return text
    if kind == "end":
        result = event["result"]
        if result.startswith("rejected"):
            result = errno_name(event["error"])
        return f"{result} {event['latency_ns'] / 1e6:.3f}ms"
    if kind == "complete":
        result = "ok" if event["result"] == 0 else errno_name(event["result"])
        return f"{result} {event['latency_ns'] / 1e6:.3f}ms"
    if kind == "timeout":
        return f"ctr{event['record_container']}"
    if kind == "helper":
        return one_line(str(event["path"]))
    return ""


def header(timestamp: bool = False, full_ns: bool = False) -> str:
    """The column header matching ``format_line`` with the same options."""
    ns = f"NS({','.join(NS_KINDS)})" if full_ns else "NS"
    return (("TIME(s)  " if timestamp else "")
            + f"{'KEY':<10} {'EVENT':<8} {'PID':<6} {'COMM':<15} {'CTR':<3} "
            + f"{ns:<{NS_FULL_WIDTH if full_ns else len(NS_KINDS)}} DETAIL")


def format_line(event: dict[str, Any], init: dict[str, int], start_ns: int = 0,
                timestamp: bool = False, full_ns: bool = False) -> str:
    """One event as a column line: [time], key, event, pid, comm, container,
    namespaces, detail.  The default fits 80 columns for the descriptions
    a system requests (see docs/upcallsnoop_example.txt); ``full_ns``
    prints the seven inode numbers instead of the NS flags."""
    if full_ns:
        ns = ",".join(str(event["ns"][kind]) for kind in NS_KINDS).ljust(NS_FULL_WIDTH)
    else:
        ns = ns_flags(event, init)
    line = (f"{event.get('key', 0):<10} {event['event']:<8} {event['pid']:<6} "
            f"{one_line(event['comm']):<15.15} {event['container']:<3} {ns} {detail(event)}")
    if timestamp:
        line = f"{(event['ts_ns'] - start_ns) / 1e9:<8.3f} " + line
    return line.rstrip()


HEADER = header()
