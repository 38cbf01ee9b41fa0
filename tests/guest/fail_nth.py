"""Failing the Nth fault-injection point of one call, as syzkaller does.

Writing N to /proc/thread-self/fail-nth makes the Nth fault point this
thread reaches fail (failslab, fail_page_alloc).  Shared by the fault
injection tests and by agents that make requests under faults.
"""

from __future__ import annotations

import os
from collections.abc import Callable

FAIL_NTH = "/proc/thread-self/fail-nth"


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
