"""kcont-upcallsnoop: trace request_key() upcalls, where they went and who served them.

The bcc program is upcallsnoop.c, next to this file.  It reads each task's
container and namespaces from task_struct itself and reports them next to
what the kcont tracepoints say, so a routing bug and a lying tracepoint
both show.  Needs root, bcc (Debian's python3-bpfcc) and a kernel with the
kcont series, BPF, kprobes and CONFIG_IKHEADERS; ``--ebpf`` needs none of
them.

As in bcc's own tools, the -t and -c filters are compiled into the BPF
text (#defines before it), not applied here: an upcall that is not wanted
costs no ring-buffer record and no Python.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kcont.one_line_parser import OneLineParser, one_line
from kcont.probes.events import RawEvent, decode, format_line, header, init_namespaces

PROG = "kcont-upcallsnoop"
SOURCE = Path(__file__).with_name("upcallsnoop.c")
READY = "Tracing request_key upcalls... Ctrl-C to end."
# The tracepoint the kcont series adds (patch 0007); without it nothing
# here can attach.
TRACEPOINT = ("keys", "key_upcall_route")
NO_TRACEPOINT = (f"{PROG}: this kernel has no keys:key_upcall_route tracepoint "
                 "(the kcont series is not applied)")

# A key type name as keyctl(2) passes it: at most 31 bytes (the kernel
# copies it into a 32-byte buffer, as the probe does into event.type).
# Every type in the tree is letters, digits, '_', '.' and '-'; anything
# else (a quote, a backslash, a newline) is refused before it reaches C.
TYPE_MAX = 31
TYPE_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
CONTAINER_MAX = (1 << 64) - 1

EXAMPLES = """examples:
  kcont-upcallsnoop                  # one line per upcall event
  kcont-upcallsnoop -T               # with a time column
  kcont-upcallsnoop --ns             # the namespaces' inode numbers, not flags
  kcont-upcallsnoop --json           # one JSON object per event, every field
  kcont-upcallsnoop -t dns_resolver  # only upcalls for one key type
  kcont-upcallsnoop -c 3 -d 10       # requesters in container 3, for 10 s
  kcont-upcallsnoop --ebpf -t user   # print the BPF program and exit

columns:
  KEY     the target key's serial: one upcall, from its route to its end
  PID     the task at the event (tgid); COMM its name
  CTR     the task's container id, read from task_struct
  NS      uts ipc mnt pid net cgroup user: '-' the same as pid 1's, the
          unshare(1) letter (u i m p n C U) if the task has its own,
          '!' the tracepoint reported another one than task_struct holds
  DETAIL  per event, below; a route's key type:description comes last

events:
  route     the requester, at the routing decision: ctrN (intercepted by a
            record of container N), helper or rejected, then type:description;
            DISAGREE(kinds) where the tracepoint differs from task_struct
  assume    a task took the authority over the key (the serving task)
  end       a task instantiated, negated or rejected it (errno), and the
            latency since the route
  complete  the kernel's own account of an intercepted request's end
            (ok or errno), with the latency since delivery
  timeout   nobody served it within kernel.keys.intercept_timeout; ctrN
            is the record's container
  helper    a usermode helper (/sbin/request-key) starting, in the
            namespaces it will run in

-t and -c are compiled into the BPF program (see --ebpf): a key that does
not pass is not followed, and its later events are not reported either.
exit status: 0 done, 1 cannot trace (no bcc, not the kcont kernel, attach
failed), 2 usage error.
"""

KPROBES = (("keyctl_assume_authority", "on_assume", "on_assume_return"),
           ("key_instantiate_and_link", "on_instantiate", "on_end_return"),
           ("key_reject_and_link", "on_reject", "on_end_return"),
           ("call_usermodehelper_exec_async", "on_helper", None))


def key_type(value: str) -> str:
    """-t's value, only if it can be a key type name; the error names it
    with repr(), so a newline in it cannot break the one-line message."""
    if len(value.encode()) > TYPE_MAX:
        raise argparse.ArgumentTypeError(
            f"key type {value!r} is longer than the kernel's {TYPE_MAX} bytes")
    if not TYPE_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a key type name (letters, digits, '_', '.', '-')")
    return value


def container_id(value: str) -> int:
    """-c's value: a container id, a u64 from 1 (init_container) up, in
    ASCII digits only (int() would also take "3_0" and other scripts' digits)."""
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a container id")
    number = int(value, 10)
    if not 1 <= number <= CONTAINER_MAX:
        raise argparse.ArgumentTypeError(f"{value!r} is not a container id (a u64)")
    return number


def duration(value: str) -> float:
    """-d's value: a positive, finite number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def make_parser() -> argparse.ArgumentParser:
    """The command line; the man page is generated from it."""
    parser = OneLineParser(
        prog=PROG, epilog=EXAMPLES,
        description="Trace request_key() upcalls: where each went and who served it.")
    parser.add_argument("-T", "--timestamp", action="store_true",
                        help="include a time column (seconds since the tool started)")
    parser.add_argument("-t", "--type", type=key_type, metavar="TYPE",
                        help="only upcalls for this key type (compiled into the BPF)")
    parser.add_argument("-c", "--container", type=container_id, metavar="ID",
                        help="only upcalls whose requester is in this container "
                             "(compiled into the BPF)")
    parser.add_argument("-d", "--duration", type=duration, metavar="SECONDS",
                        help="stop after this many seconds")
    parser.add_argument("--ns", action="store_true",
                        help="print each task's seven namespace inode numbers")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line, with every field")
    parser.add_argument("--ebpf", action="store_true",
                        help="print the BPF program (filters included) and exit")
    return parser


def filter_defines(key_type: str | None, container: int | None) -> str:
    """The #defines that turn upcallsnoop.c's filters on (none: none on).

    The type is compared byte by byte, its terminating NUL included, and
    written as numbers: the text of -t never becomes C.
    """
    lines = []
    if container is not None:
        lines.append(f"#define FILTER_CONTAINER {int(container)}ULL")
    if key_type is not None:
        name = key_type.encode()
        if len(name) > TYPE_MAX:
            raise ValueError(f"key type longer than {TYPE_MAX} bytes")
        tests = [f"(t)[{i}] == {byte:#04x}" for i, byte in enumerate([*name, 0])]
        lines.append("#define FILTER_TYPE_MATCH(t) (" + " && ".join(tests) + ")")
    if not lines:
        return ""
    return "/* kcont-upcallsnoop's filters */\n" + "\n".join(lines) + "\n\n"


def kernel_tags_containers(kallsyms: Path = Path("/proc/kallsyms")) -> bool:
    """Whether the running kernel's network-namespace key tags name the
    container that made the namespace (``struct key_tag.container_id``,
    with ``container_get_by_id()``).  A kernel of the series without it
    still runs the probe, so that the same tool compares both; the probe
    then never reports a request as made for a container."""
    try:
        text = kallsyms.read_text()
    except OSError:
        return False
    return re.search(r" container_get_by_id$", text, re.MULTILINE) is not None


def bpf_text(key_type: str | None = None, container: int | None = None,
             tags_containers: bool | None = None) -> str:
    """The program BPF() compiles: upcallsnoop.c after the filters and,
    on a kernel whose key tags name containers, the switch that reads
    them."""
    if tags_containers is None:
        tags_containers = kernel_tags_containers()
    feature = "#define KCONT_KEY_TAG_CONTAINER 1\n" if tags_containers else ""
    return feature + filter_defines(key_type, container) + SOURCE.read_text()


class UpcallSnoop:
    """The compiled and attached program; ``poll()`` hands decoded events on."""

    def __init__(self, text: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        from bcc import BPF  # Debian's python3-bpfcc: only where the probes run

        self.bpf = BPF(text=text.encode())
        for function, entry, ret in KPROBES:
            self.bpf.attach_kprobe(event=function, fn_name=entry)
            if ret:
                self.bpf.attach_kretprobe(event=function, fn_name=ret)

        def deliver(_ctx: object, data: int, size: int) -> None:
            if size < ctypes.sizeof(RawEvent):
                return
            on_event(decode(ctypes.cast(data, ctypes.POINTER(RawEvent)).contents))

        self.bpf["events"].open_ring_buffer(deliver)

    def poll(self, timeout_ms: int = 100) -> None:
        self.bpf.ring_buffer_poll(timeout=timeout_ms)

    def close(self) -> None:
        self.bpf.cleanup()


def has_tracepoint() -> bool:
    """Whether this kernel has the series' route tracepoint (bcc's check,
    as its tools make before they attach to an optional tracepoint)."""
    from bcc import BPF

    return bool(BPF.tracepoint_exists(*TRACEPOINT))


def main(argv: list[str] | None = None) -> int:
    opts = make_parser().parse_args(argv)
    text = bpf_text(opts.type, opts.container)
    if opts.ebpf:
        print(text, end="")
        return 0
    if os.geteuid() != 0:
        # tracefs is root's to read: without this a user would be told the
        # kernel lacks the series.
        print(f"{PROG}: needs root (to read tracefs and load BPF); --ebpf does not",
              file=sys.stderr)
        return 1
    try:
        present = has_tracepoint()
    except (ImportError, OSError):  # OSError: python3-bpfcc without libbcc.so
        print(f"{PROG}: bcc is not importable (apt install python3-bpfcc, and a "
              "venv made with --system-site-packages)", file=sys.stderr)
        return 1
    if not present:
        print(NO_TRACEPOINT, file=sys.stderr)
        return 1
    init = init_namespaces()
    start = time.monotonic_ns()  # bpf_ktime_get_ns() is CLOCK_MONOTONIC too

    def show(event: dict[str, Any]) -> None:
        if opts.json:
            line = json.dumps(event, sort_keys=True)
        else:
            line = format_line(event, init, start, opts.timestamp, opts.ns)
        print(line, flush=True)

    try:
        snoop = UpcallSnoop(text, show)
    except KeyboardInterrupt:  # Ctrl-C during the compile, which takes seconds
        print(f"{PROG}: interrupted before tracing began", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as err:  # bcc raises plain Exception for compile/attach errors
        print(f"{PROG}: cannot attach: {one_line(str(err))}", file=sys.stderr)
        return 1
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    saved = {sig: signal.signal(sig, finish) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not opts.json:
            print(header(opts.timestamp, opts.ns), flush=True)
        print(READY, file=sys.stderr, flush=True)
        deadline = None if opts.duration is None else time.monotonic() + opts.duration
        while not stop and (deadline is None or time.monotonic() < deadline):
            snoop.poll(100)
        snoop.poll(0)
    finally:
        snoop.close()
        for sig, handler in saved.items():  # main() may run inside a larger program
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
