"""What ``kcont run`` does with signals while CMD runs, as ``unshare
--fork`` and system(3) do.

A Ctrl-C at the terminal reaches the whole foreground process group:
CMD decides what it means (a shell script may trap it), so kcont, and
the supervising init of ``--daemon``, let SIGINT and SIGQUIT pass while
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


def _let_pass(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT and SIGQUIT while CMD runs: nothing to do here.

    A handler, not SIG_IGN: a caught signal goes back to its default at
    exec, an ignored one would be ignored by CMD too; so the handlers can
    be in place before CMD is forked and exec'd, leaving no moment in
    which a Ctrl-C ends kcont and leaves CMD behind."""


class Forwarder:
    """Sends SIGTERM and SIGHUP on to CMD once its pid is known (those
    that come earlier wait for it).

    The second one sends SIGKILL instead: a CMD that is a pid namespace's
    init (``kcont run --ns pid``) gets a signal from the parent namespace
    only if it handles it, so the first may be dropped by the kernel, and
    ``kill`` twice must still end it.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.received = 0
        self.pending: list[int] = []

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        self._send(signal.SIGKILL if self.received > 1 else signum)

    def target(self, pid: int) -> None:
        """CMD is ``pid``: deliver what came before it existed."""
        self.pid = pid
        pending, self.pending = self.pending, []
        for signum in pending:
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


@contextlib.contextmanager
def forwarding() -> Iterator[Forwarder]:
    """While inside: SIGINT and SIGQUIT do nothing here, SIGTERM and
    SIGHUP go to the Forwarder's target; the old dispositions come back
    on the way out.  Enter it before forking CMD and call ``target(pid)``
    after.  The handlers return normally, so a waitpid() they interrupt
    is retried (PEP 475)."""
    forwarder = Forwarder()
    saved: dict[signal.Signals, Handler] = {}
    try:
        for passing in IGNORED:
            saved[passing] = signal.signal(passing, _let_pass)
        for passed_on in FORWARDED:
            saved[passed_on] = signal.signal(passed_on, forwarder.handle)
        yield forwarder
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def forwarding_to(pid: int) -> Iterator[None]:
    """``forwarding()`` for a CMD that already runs as ``pid``."""
    with forwarding() as forwarder:
        forwarder.target(pid)
        yield


def restore_defaults() -> None:
    """In a child forked inside ``forwarding()`` that is not CMD itself
    (the ``--daemon`` init): the dispositions a fresh Python process has."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGQUIT, *FORWARDED):
        signal.signal(sig, signal.SIG_DFL)
