"""Failing the Nth fault-injection point of one call, as syzkaller does.

Writing N to /proc/thread-self/fail-nth makes the Nth fault point this
thread reaches fail (failslab, fail_page_alloc).  Shared by the fault
injection tests and by agents that make requests under faults.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

FAIL_NTH = "/proc/thread-self/fail-nth"
DEBUGFS = Path("/sys/kernel/debug")


def nth_failure(n: int, op: Callable[[], object]) -> tuple[bool, object]:
    """Run ``op`` with its Nth fault point failing: (whether it was reached,
    what op returned or the OSError it raised).  The file is opened before
    arming and read back through the same fd (a read allocates nothing), so
    that nothing but ``op`` runs between arming and disarming."""
    fd = os.open(FAIL_NTH, os.O_RDWR)
    try:
        os.write(fd, str(n).encode())
        try:
            outcome: object = op()
        except OSError as err:
            outcome = err
        left = int(os.pread(fd, 32, 0) or b"0")
        os.write(fd, b"0")
    finally:
        os.close(fd)
    return left == 0, outcome


# What namespace creation itself returns when one of its allocations fails,
# seen from unshare(2) of the same kinds under the same sweep (see
# docs/reliability.md): a network namespace's pernet init passes on its
# own error (ENODEV, EAFNOSUPPORT, ENOBUFS, EEXIST, EINVAL), and a user
# namespace's ucounts give EAGAIN or ENOSPC.  container_create() creates
# namespaces with the same create_new_namespaces() and passes them on.
NAMESPACE_FAULT_ERRNOS = {
    "net": {errno.ENODEV, errno.EAFNOSUPPORT, errno.ENOBUFS, errno.EEXIST, errno.EINVAL},
    "user": {errno.EAGAIN, errno.ENOSPC},
}


@contextmanager
def faults_allowed() -> Iterator[None]:
    """Let fail-nth fail sleeping allocations too, silently (verbose=0: a
    stack trace per injected failure would flood the console)."""
    saved = {}
    for attr, value in (("failslab/ignore-gfp-wait", "N"), ("failslab/verbose", "0"),
                        ("fail_page_alloc/ignore-gfp-wait", "N"),
                        ("fail_page_alloc/min-order", "0"),
                        ("fail_page_alloc/verbose", "0")):
        path = DEBUGFS / attr
        saved[path] = path.read_text().strip()
        path.write_text(value)
    try:
        yield
    finally:
        for path, value in saved.items():
            path.write_text(value)
