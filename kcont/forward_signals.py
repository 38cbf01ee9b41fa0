"""What ``kcont run`` does with signals while CMD runs, as ``unshare
--fork`` and system(3) do.

A Ctrl-C at the terminal reaches the whole foreground process group:
CMD decides what it means (a shell script may trap it), so kcont, and
the supervising init of ``--daemon``, ignore SIGINT and SIGQUIT while
they wait and report CMD's status when it ends.  SIGTERM and SIGHUP are
meant for whoever started kcont, which is CMD's stand-in: they are
passed on to CMD (to the init with ``--daemon``, which passes them on
again), so that ``kill`` or a closed terminal does not leave CMD
running behind a kcont that is gone.  Pure Python, no binding.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

IGNORED = (signal.SIGINT, signal.SIGQUIT)
FORWARDED = (signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@contextlib.contextmanager
def forwarding_to(pid: int) -> Iterator[None]:
    """While inside: SIGINT and SIGQUIT ignored here, SIGTERM and SIGHUP
    sent on to ``pid``; the old dispositions come back on the way out.

    The second SIGTERM or SIGHUP sends SIGKILL instead: a CMD that is a
    pid namespace's init (``kcont run --ns pid``) gets a signal from the
    parent namespace only if it handles it, so the first one may be
    dropped by the kernel, and ``kill`` twice must still end it.

    Enter it only after ``pid`` has exec'd or been spawned: an ignored
    signal survives exec, and CMD must get the defaults.  The handler
    returns normally, so a waitpid() it interrupts is retried (PEP 475).
    """

    forwarded = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal forwarded
        forwarded += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if forwarded > 1 else signum)

    saved: dict[signal.Signals, Handler] = {}
    try:
        for ignored in IGNORED:
            saved[ignored] = signal.signal(ignored, signal.SIG_IGN)
        for passed_on in FORWARDED:
            saved[passed_on] = signal.signal(passed_on, forward)
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
