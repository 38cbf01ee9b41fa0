"""How a launcher starts request-key-daemon for one container.

``kcont run --daemon`` (kcont.supervise) starts the daemon from the
container's init.  The daemon's module and its two launch flags are
spelled here, next to the parser that reads them, so a renamed flag
cannot leave a launcher behind.  Standard library only: the launcher
imports it before the daemon's own modules are loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

MODULE = "request_key_daemon.cli"
# What the daemon writes to --ready-fd once it serves; one byte, then it
# closes the fd.
READY_BYTE = b"R"


def argv(container_fd: int, ready_fd: int, extra: Sequence[str] = ()) -> list[str]:
    """The daemon's argv: serve ``container_fd``, write its readiness byte
    (``R``) to ``ready_fd`` once serving, plus ``extra`` daemon options.

    Both fds must be passed to the child (``pass_fds``); the daemon runs
    under this interpreter so that it sees the same packages.
    """
    return [sys.executable, "-m", MODULE, "--container-fd", str(container_fd),
            "--ready-fd", str(ready_fd), *extra]

