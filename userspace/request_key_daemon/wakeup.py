"""Waking the daemon's select() loop, from another thread or from a signal.

A Python signal handler runs on the main thread, and only when that thread
next executes bytecode.  A SIGTERM that lands after the loop's last
bytecode but before the select() system call starts, or one the kernel
delivers to a worker thread, interrupts nothing: select() then sleeps with
the handler still pending, and the daemon never stops (CI saw exactly that:
a SIGTERM sent the moment a request was answered went unheeded for two
minutes).  ``signal.set_wakeup_fd`` closes the window: the C-level handler
writes the signal number into the same pipe select() watches, whichever
thread took the signal, and the Python handler runs when select() returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Mapping


class Wakeup:
    """A non-blocking pipe whose read end belongs in the loop's select()."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._installed = False

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        """Make the next (or current) select() on ``fileno()`` return."""
        with contextlib.suppress(BlockingIOError):   # full: a wake-up is pending anyway
            os.write(self._write, b"x")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

    def install(self, handlers: Mapping[signal.Signals, Callable[[], object]]) -> None:
        """Run ``handlers`` on these signals, and let each signal wake select().

        Must be called on the main thread (as ``signal.signal`` must).
        """
        for signum, handler in handlers.items():
            signal.signal(signum, lambda *_, run=handler: run())
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._installed = True

    def close(self) -> None:
        """Stop signals writing here (main thread only, if installed); idempotent."""
        if self._installed:
            signal.set_wakeup_fd(-1)
            self._installed = False
        if self._read >= 0:
            os.close(self._read)
            os.close(self._write)
            self._read = self._write = -1
