"""``kcont run --daemon``: a container init that runs request-key-daemon
before the command and stops it after.

The init is forked into the container; it starts the daemon (passing the
container fd to the exec), waits for the daemon's
readiness byte on a pipe (``--ready-fd``), runs the command, then sends
the daemon SIGTERM and waits for it, and exits with the command's status.
If the daemon dies before it is ready, the command never runs.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import IO

from kcont.container import Container

READY_TIMEOUT = 60.0
EXIT_DAEMON_FAILED = 125


def _status(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def start_daemon(container_fd: int, daemon_args: Sequence[str],
                 stderr: IO[str] | None = None) -> tuple[subprocess.Popen[bytes], bool]:
    """Start request-key-daemon for ``container_fd`` here (in the caller's
    container) and wait up to READY_TIMEOUT for its readiness byte.

    Returns the process and whether it became ready; the caller kills a
    daemon that did not.
    """
    ready_r, ready_w = os.pipe()
    try:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "request_key_daemon.cli", "--container-fd",
             str(container_fd), "--ready-fd", str(ready_w), *daemon_args],
            pass_fds=(container_fd, ready_w), stderr=stderr)
    finally:
        os.close(ready_w)
    try:
        readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
        return daemon, bool(readable) and os.read(ready_r, 1) == b"R"
    finally:
        os.close(ready_r)


def _init(container_fd: int, cmd: Sequence[str], daemon_args: Sequence[str]) -> int:
    daemon, ready = start_daemon(container_fd, daemon_args)
    if not ready:
        daemon.kill()
        daemon.wait()
        print("kcont run: request-key-daemon did not become ready", file=sys.stderr)
        return EXIT_DAEMON_FAILED
    try:
        child = subprocess.Popen(list(cmd))
    except OSError as err:
        print(f"kcont run: {cmd[0]}: {err.strerror}", file=sys.stderr)
        status = 127
    else:
        status = child.wait()
        status = 128 - status if status < 0 else status
    daemon.send_signal(signal.SIGTERM)
    daemon.wait()
    return status


def run_with_daemon(container: Container, cmd: Sequence[str],
                    daemon_args: Sequence[str]) -> int:
    """Fork the supervising init into ``container``; its exit status."""
    pid = container.fork()
    if pid == 0:
        code = 1
        try:
            code = _init(container.fd, cmd, daemon_args)
        finally:
            os._exit(code)
    return _status(container.wait(pid))
