"""bcc works in the guest: a probe compiles, attaches, and sees request_key(2)."""

from __future__ import annotations

import ctypes
import subprocess
import time

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


def test_probe_sees_request_key(session_keyring: int) -> None:
    bpf = BPF(text=PROGRAM)
    bpf.attach_kprobe(event=bpf.get_syscall_fnname("request_key"), fn_name="on_request_key")
    seen: list[tuple[int, bytes]] = []

    def record(_ctx: object, data: int, _size: int) -> None:
        event = ctypes.cast(data, ctypes.POINTER(Event)).contents
        seen.append((event.pid, event.comm))

    bpf["events"].open_ring_buffer(record)
    child = subprocess.Popen(["keyctl", "request", "user", "kcont:bcc-probe"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child.wait()
    deadline = time.monotonic() + 10
    while (child.pid, b"keyctl") not in seen and time.monotonic() < deadline:
        bpf.ring_buffer_poll(timeout=200)
    bpf.cleanup()
    assert (child.pid, b"keyctl") in seen, seen
