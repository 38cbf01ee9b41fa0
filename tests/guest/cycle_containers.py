"""Create, fork into, exit and close N containers: the leak test's workload.

Run as its own small process so that each fork copies a small address
space (the pytest process may have bcc's LLVM mapped, which makes every
fork under TCG+KASAN an order of magnitude slower).
"""

from __future__ import annotations

import os
import sys

from kcont.container import Flag, create_raw, fork_into


def cycle(count: int) -> None:
    for i in range(count):
        fd = create_raw(f"kc-leak{i}", Flag.FD_CLOEXEC)
        pid = fork_into(fd)
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"cycle {i}: child status {status}")
        os.close(fd)


if __name__ == "__main__":
    cycle(int(sys.argv[1]))
