"""The daemon's per-request log line written directly: the same text the
logging module would write, in order with it, and nothing built where
nobody can read it."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import pytest

from request_key_daemon.request_log import FORMAT, RequestLog, unread

LINE = "serial=7 type=user desc='a\\x0ab' requester=1/sh@2 result='instantiated'"


@pytest.fixture
def logger() -> logging.Logger:
    log = logging.getLogger("test-request-log")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def test_a_stream_gets_what_the_formatter_would_write(tmp_path: Path,
                                                      logger: logging.Logger) -> None:
    """Byte for byte what a StreamHandler with the daemon's FORMAT writes,
    interleaved in order with the logger's own lines on the same stream."""
    direct, through = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(through)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.info("%s", LINE)
    with (tmp_path / "log").open("w") as out:
        handler.setStream(out)
        request_log = RequestLog.on_stream(out, logger)
        assert request_log.enabled
        logger.info("starting")
        request_log.write(LINE)
        logger.info("stopping")
        RequestLog(logger, direct).write(LINE)
    assert direct.getvalue() == through.getvalue()
    assert (tmp_path / "log").read_text().splitlines() == [
        "request-key-daemon: starting", f"request-key-daemon: {LINE}",
        "request-key-daemon: stopping"]


def test_without_a_stream_lines_go_through_the_logger(logger: logging.Logger) -> None:
    """Syslog, or a handler someone else installed: logger.info, unchanged."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Keep())
    RequestLog(logger).write(LINE)
    assert seen == [LINE]


def test_dev_null_and_closed_streams_are_unread(tmp_path: Path,
                                                logger: logging.Logger) -> None:
    with open(os.devnull, "w") as null:
        assert unread(null)
        assert not RequestLog.on_stream(null, logger).enabled
    closed = (tmp_path / "f").open("w")
    closed.close()
    assert unread(closed) and unread(None)
    with (tmp_path / "g").open("w") as regular:
        assert not unread(regular)


def test_a_disabled_log_writes_nothing_anywhere(logger: logging.Logger) -> None:
    seen: list[logging.LogRecord] = []
    logger.addHandler(logging.Handler())
    logger.handlers[0].emit = seen.append  # type: ignore[method-assign]
    stream = io.StringIO()
    RequestLog(logger, stream, enabled=False).write(LINE)
    RequestLog(logger, None, enabled=False).write(LINE)
    assert stream.getvalue() == "" and seen == []


def test_a_log_that_cannot_be_written_loses_the_line_not_the_daemon(
        logger: logging.Logger) -> None:
    """A reader that went away (EPIPE), a full disk, a closed stream: the
    line is counted as lost and write() returns, so serving goes on."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    broken = os.fdopen(write_end, "w")
    request_log = RequestLog.on_stream(broken, logger)
    assert request_log.enabled
    request_log.write(LINE)
    request_log.write(LINE)
    assert request_log.lost == 2
    with contextlib.suppress(BrokenPipeError):   # what is still buffered
        broken.close()
    closed = io.StringIO()
    closed.close()
    request_log = RequestLog(logger, closed)
    request_log.write(LINE)
    assert request_log.lost == 1


def test_after_a_torn_write_the_next_line_starts_on_its_own(logger: logging.Logger) -> None:
    """A write that failed half-way (EAGAIN on a non-blocking pipe) leaves
    part of its line buffered; the next line must not be glued to it."""

    class Flaky(io.StringIO):
        fail = True

        def flush(self) -> None:
            if self.fail:
                self.fail = False
                raise BlockingIOError(11, "try again")

    stream = Flaky()
    request_log = RequestLog(logger, stream)
    request_log.write("serial=1 first")
    request_log.write("serial=2 second")
    assert request_log.lost == 1
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "request-key-daemon: serial=2 second"
