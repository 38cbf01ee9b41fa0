"""The daemon's one line per request, at the cost of one write().

Every request the daemon serves ends with one log line.  Through the
logging module that line costs a LogRecord, a formatter, the handler's
lock and a flush: about 1 ms of the daemon's CPU per request under TCG
(the guest bench), as much as the rest of the serving logic's slowest
step.  The daemon's own configuration is known (cli.setup_logging): on
stderr, the line goes out as the same text the formatter would make,
written directly; where nobody can read it (stderr is /dev/null or
closed) it is not even built.  Any other configuration (syslog, or a
handler a test or an embedding program installed) gets a plain
``logger.info``, so the logging module stays the one place lines are
configured.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from typing import TextIO

# The daemon's log format (cli.setup_logging), and what it makes of a message.
FORMAT = "request-key-daemon: %(message)s"
PREFIX = "request-key-daemon: "
DEV_NULL = os.makedev(1, 3)


def unread(stream: TextIO | None) -> bool:
    """True if nothing written to ``stream`` can be read: no stream, a
    closed descriptor, or /dev/null."""
    if stream is None:
        return True
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return True
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == DEV_NULL


class RequestLog:
    """Where ``Daemon`` writes each request's line.

    ``RequestLog(logger)`` sends lines to ``logger.info``;
    ``RequestLog.on_stream(stream, logger)`` writes them to ``stream`` in
    FORMAT (the stream the logger's handler writes to, so that both kinds
    of line stay in order), or drops them unbuilt if ``stream`` is unread.
    """

    def __init__(self, logger: logging.Logger, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.logger = logger
        self.stream = stream
        self.enabled = enabled
        # Lines a failed write lost (the reader went away, the disk is
        # full): counted, never raised, as the logging module would.
        self.lost = 0
        # A failed write may leave part of its line buffered, to go out in
        # front of the next one: that one then starts on a line of its own.
        self._torn = False
        self._lock = threading.Lock()

    @classmethod
    def on_stream(cls, stream: TextIO | None, logger: logging.Logger) -> RequestLog:
        return cls(logger, stream, enabled=not unread(stream))

    def write(self, line: str) -> None:
        """One request's line (never holding a newline: Outcome.line()).
        Never raises: a log that cannot be written must not stop serving
        (the logging module swallows the same errors in handleError)."""
        if not self.enabled:
            return
        if self.stream is None:
            self.logger.info("%s", line)
            return
        with self._lock:
            try:
                self.stream.write(("\n" if self._torn else "") + PREFIX + line + "\n")
                self.stream.flush()
                self._torn = False
            except (OSError, ValueError):   # EPIPE, ENOSPC, EAGAIN, a closed stream
                self.lost += 1
                self._torn = True
