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


# Options a launcher sets itself, or that would turn the serving daemon
# into a one-shot client; ``extra`` may not carry them.  The daemon's
# parser takes no abbreviations, so these spellings are the only ones.
RESERVED = ("--container-fd", "--ready-fd", "--ctl", "--check-policy", "--explain")


def check_extra(extra: Sequence[str]) -> None:
    """ValueError naming the first of ``extra`` that is a RESERVED option:
    ``--daemon-arg=--ready-fd=1`` must not redirect the readiness byte."""
    for arg in extra:
        name = arg.partition("=")[0]
        if name in RESERVED:
            raise ValueError(f"{name} is set by the launcher, not a daemon option to pass")


def argv(container_fd: int, ready_fd: int, extra: Sequence[str] = ()) -> list[str]:
    """The daemon's argv: serve ``container_fd``, write its readiness byte
    (``R``) to ``ready_fd`` once serving, plus ``extra`` daemon options
    (ValueError for a RESERVED one).

    Both fds must be passed to the child (``pass_fds``); the daemon runs
    under this interpreter so that it sees the same packages.
    """
    check_extra(extra)
    return [sys.executable, "-m", MODULE, *extra, "--container-fd", str(container_fd),
            "--ready-fd", str(ready_fd)]

