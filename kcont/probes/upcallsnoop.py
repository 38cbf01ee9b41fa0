"""kcont-upcallsnoop: trace request_key() upcalls, where they went and who served them.

The bcc program is upcallsnoop.c, next to this file.  It reads each task's
container and namespaces from task_struct itself and reports them next to
what the kcont tracepoints say, so a routing bug and a lying tracepoint
both show.  Needs root, bcc (Debian's python3-bpfcc) and a kernel with the
kcont series, BPF, kprobes and CONFIG_IKHEADERS.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kcont.probes.events import HEADER, RawEvent, decode, format_line

SOURCE = Path(__file__).with_name("upcallsnoop.c")
READY = "Tracing request_key upcalls... Ctrl-C to end."

EXAMPLES = """examples:
  kcont-upcallsnoop                  # one line per upcall event, in columns
  kcont-upcallsnoop --json           # one JSON object per event (for tests)
  kcont-upcallsnoop -t dns_resolver  # only upcalls for one key type
  kcont-upcallsnoop -c 3 -d 10       # requesters in container 3, for 10 seconds

events, one line each, all with the task's pid, comm, container and the
inode numbers of its uts, ipc, mnt, pid, net, cgroup and user namespaces:
  route     the requester, at the routing decision: key type:description,
            intercepted / helper / rejected, the record's container;
            DISAGREE(...) if the tracepoint's account differs from task_struct
  assume    a task took the authority over the key (the serving task)
  end       a task instantiated, negated or rejected it, with the latency
  complete  the kernel's own account of an intercepted request's end
  timeout   nobody served it within kernel.keys.intercept_timeout
  helper    /sbin/request-key starting, in the namespaces it will run in
"""

KPROBES = (("keyctl_assume_authority", "on_assume", "on_assume_return"),
           ("key_instantiate_and_link", "on_instantiate", "on_end_return"),
           ("key_reject_and_link", "on_reject", "on_end_return"),
           ("call_usermodehelper_exec_async", "on_helper", None))


class UpcallSnoop:
    """The compiled and attached program; ``poll()`` hands decoded events on."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        from bcc import BPF  # Debian's python3-bpfcc: only where the probes run

        self.bpf = BPF(src_file=str(SOURCE).encode())
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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kcont-upcallsnoop", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trace request_key() upcalls: where each went and who served it.")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("-t", "--type", help="only upcalls for this key type")
    parser.add_argument("-c", "--container", type=int,
                        help="only upcalls whose requester is in this container")
    parser.add_argument("-d", "--duration", type=float, help="stop after this many seconds")
    return parser


class Filter:
    """-t and -c select routes; the key's later events follow its route."""

    def __init__(self, key_type: str | None, container: int | None) -> None:
        self.key_type = key_type
        self.container = container
        self.keys: set[int] = set()

    def __call__(self, event: dict[str, Any]) -> bool:
        if self.key_type is None and self.container is None:
            return True
        if event["event"] == "route":
            if (self.key_type in (None, event["type"])
                    and self.container in (None, event["container"])):
                self.keys.add(event["key"])
                return True
            return False
        return event.get("key") in self.keys


def main(argv: list[str] | None = None) -> int:
    opts = make_parser().parse_args(argv)
    wanted = Filter(opts.type, opts.container)
    start = time.monotonic_ns()

    def show(event: dict[str, Any]) -> None:
        if not wanted(event):
            return
        line = json.dumps(event, sort_keys=True) if opts.json else format_line(event, start)
        print(line, flush=True)

    try:
        snoop = UpcallSnoop(show)
    except ImportError:
        print("kcont-upcallsnoop: bcc is not importable (apt install python3-bpfcc, and a "
              "venv made with --system-site-packages)", file=sys.stderr)
        return 2
    except Exception as err:  # bcc raises plain Exception for compile/attach errors
        print(f"kcont-upcallsnoop: cannot attach: {err}", file=sys.stderr)
        return 1
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, finish)
    signal.signal(signal.SIGTERM, finish)
    if not opts.json:
        print(HEADER, flush=True)
    print(READY, file=sys.stderr, flush=True)
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    while not stop and (deadline is None or time.monotonic() < deadline):
        snoop.poll(100)
    snoop.poll(0)
    snoop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
