"""A minimal bcc probe on request_key(2), run as its own process.

Prints "ready" once attached, then one line "PID COMM" per call, until
stdin closes.  A separate process keeps bcc's LLVM out of the pytest
process, whose forks it would slow down.
"""

from __future__ import annotations

import ctypes
import select
import sys

from bcc import BPF

PROGRAM = r"""
struct event {
    u32 pid;
    char comm[16];
};
BPF_RINGBUF_OUTPUT(events, 8);

int on_request_key(struct pt_regs *ctx)
{
    struct event e = {};

    e.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    events.ringbuf_output(&e, sizeof(e), 0);
    return 0;
}
"""


class Event(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("comm", ctypes.c_char * 16)]


def main() -> None:
    bpf = BPF(text=PROGRAM)
    bpf.attach_kprobe(event=bpf.get_syscall_fnname("request_key"), fn_name="on_request_key")

    def record(_ctx: object, data: int, _size: int) -> None:
        event = ctypes.cast(data, ctypes.POINTER(Event)).contents
        print(event.pid, event.comm.decode(errors="replace"), flush=True)

    bpf["events"].open_ring_buffer(record)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.1)
        bpf.ring_buffer_poll(timeout=0)
        if readable and not sys.stdin.read(1):
            break
    bpf.ring_buffer_poll(timeout=0)


if __name__ == "__main__":
    main()
