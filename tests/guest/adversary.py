"""What the adversary suites do to themselves before they attack.

Each helper changes the calling process for good (a uid, capabilities,
``no_new_privs``, a tracer): call them in a child (``containers.run_child``),
never in the pytest process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# The host's console classifier (vm/kcont_vm/reports.py), so that a test
# judges its own window of the log by the same patterns.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm"))
from kcont_vm import reports

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

NOBODY = 65534
PR_SET_NO_NEW_PRIVS = 38
SYS_PIDFD_GETFD = 438
SYS_CAPSET = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

CAP_SYS_CHROOT = 18
CAP_SYS_ADMIN = 21

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_O_TRACEFORK = 0x02


def _check(result: int, call: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), call)
    return result


def become(uid: int, gid: int | None = None) -> None:
    """Drop to ``uid`` (and ``gid``, default the same) with no supplementary groups."""
    gid = uid if gid is None else gid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): this process and its children can never gain."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def keep_only_caps(*caps: int) -> None:
    """capset(): effective and permitted become exactly ``caps`` (root stays uid 0)."""
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    # Two 32-bit words of {effective, permitted, inheritable}.
    data = struct.pack("6I", mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0,
                       mask >> 32, mask >> 32, 0)
    _check(_libc.syscall(SYS_CAPSET, header, data), "capset")


def pidfd_getfd(pid: int, fd: int) -> int:
    """Steal ``fd`` from process ``pid`` (pidfd_getfd(2), ptrace-attach rules)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _check(_libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0), "pidfd_getfd")
    finally:
        os.close(pidfd)


def traceme() -> None:
    """PTRACE_TRACEME, then stop until the parent has set its options."""
    _check(_libc.ptrace(PTRACE_TRACEME, 0, None, None), "ptrace(TRACEME)")
    os.kill(os.getpid(), 19)  # SIGSTOP


def trace_forks(pid: int) -> None:
    """As the tracer of stopped ``pid``: follow its forks, and let it run."""
    _check(_libc.ptrace(PTRACE_SETOPTIONS, pid, None, PTRACE_O_TRACEFORK), "ptrace(SETOPTIONS)")
    _check(_libc.ptrace(PTRACE_CONT, pid, None, None), "ptrace(CONT)")


def cont(pid: int, sig: int = 0) -> None:
    _check(_libc.ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(sig)), "ptrace(CONT)")


def tracer_of(pid: int) -> int:
    """TracerPid of /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    raise LookupError(f"no TracerPid for {pid}")


@contextlib.contextmanager
def kernel_reports() -> Iterator[list[str]]:
    """The kernel reports (KASAN, lockdep, BUG, WARNING...) printed during
    the block, classified as the host classifies the console: the list is
    filled when the block ends, for the test to assert it is empty."""
    found: list[str] = []
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.lseek(kmsg, 0, os.SEEK_END)
        yield found
        time.sleep(0.5)  # a report is printed by the task that hit it; let it finish
        while True:
            try:
                record = os.read(kmsg, 8192).decode("utf-8", "replace")
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten records: keep reading
                continue
            message = record.partition(";")[2].split("\n", 1)[0]
            kind = reports.classify(message)
            if kind:
                found.append(f"{kind}: {message}")
    finally:
        os.close(kmsg)


def realtime_on_cpu(cpu: int = 0, priority: int = 50) -> None:
    """SCHED_FIFO on one CPU: until this task sleeps, no work item queued
    on that CPU (the key garbage collector's, say) can run there."""
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))


def key_usage(serial: int) -> int | None:
    """The usage count /proc/keys shows for ``serial``, None if it is gone."""
    want = f"{serial:08x}"
    with open("/proc/keys") as keys:
        for line in keys:
            fields = line.split()
            if fields and fields[0] == want:
                return int(fields[2])
    return None


def spin_until_unreferenced(serial: int, timeout: float) -> bool:
    """Spin (never sleep) until key ``serial`` has no references left:
    True then, False if it was collected first or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spin_until = time.monotonic() + 0.01
        while time.monotonic() < spin_until:
            pass
        usage = key_usage(serial)
        if usage is None:
            return False
        if usage == 0:
            return True
    return False
