"""``kcont run --daemon``: a container init that runs request-key-daemon
before the command and stops it after.

The init is forked into the container; it starts the daemon (passing the
container fd to the exec), waits for the daemon's
readiness byte on a pipe (``--ready-fd``), runs the command, then sends
the daemon SIGTERM and waits for it, and exits with the command's status.
If the daemon dies before it is ready, the command never runs.

Exit codes are kcont.exit_codes', the same as without ``--daemon``: 125
if the daemon never became ready (or the init itself failed), 126/127 if
the command cannot be executed or found, else the command's status.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import IO, NoReturn

from kcont.container import Container
from kcont.exit_codes import EXIT_CANCELED, exec_failure, wait_status
from kcont.forward_signals import forwarding, restore_defaults
from request_key_daemon import launch

READY_TIMEOUT = 60.0
# The daemon answers what is in flight, then exits; past this it is killed.
DAEMON_STOP_TIMEOUT = 60.0


def start_daemon(container_fd: int, daemon_args: Sequence[str],
                 stderr: IO[str] | None = None) -> tuple[subprocess.Popen[bytes], bool]:
    """Start request-key-daemon for ``container_fd`` here (in the caller's
    container) and wait up to READY_TIMEOUT for its readiness byte.

    Returns the process and whether it became ready; the caller kills a
    daemon that did not.
    """
    ready_r, ready_w = os.pipe()
    try:
        # Its own process group: the terminal's Ctrl-C is for CMD, and the
        # daemon must keep serving CMD until CMD is gone.
        # Not the terminal's stdin either: a background group reading it
        # would stop on SIGTTIN.
        daemon = subprocess.Popen(launch.argv(container_fd, ready_w, daemon_args),
                                  pass_fds=(container_fd, ready_w), stderr=stderr,
                                  stdin=subprocess.DEVNULL, process_group=0)
    finally:
        os.close(ready_w)
    try:
        readable, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
        return daemon, bool(readable) and os.read(ready_r, 1) == launch.READY_BYTE
    finally:
        os.close(ready_r)


def run_command(cmd: Sequence[str]) -> int:
    """Run ``cmd`` as a child and wait: its exit code, or 126/127 if it
    could not be executed.

    posix_spawnp() reports the exec's errno in the parent (glibc waits
    for the exec), as Container.spawn does for the init, and, like
    os.execvp, never retries an ENOEXEC file with /bin/sh.  SIGPIPE and
    SIGXFSZ go back to their defaults, which Python ignores and an
    exec would otherwise pass on (``yes | head`` must end by SIGPIPE), as
    do SIGINT and SIGQUIT, which the supervising init ignores.
    """
    with forwarding() as forwarder:
        try:
            pid = os.posix_spawnp(cmd[0], list(cmd), os.environ,
                                  setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        except OSError as err:
            print(f"kcont run: {cmd[0]}: {err.strerror}", file=sys.stderr)
            return exec_failure(err.errno)
        forwarder.target(pid)
        return wait_status(os.waitpid(pid, 0)[1])


def _init(container_fd: int, cmd: Sequence[str], daemon_args: Sequence[str]) -> int:
    try:
        daemon, ready = start_daemon(container_fd, daemon_args)
    except OSError as err:
        print(f"kcont run: cannot start request-key-daemon: {err}", file=sys.stderr)
        return EXIT_CANCELED
    if not ready:
        daemon.kill()
        daemon.wait()
        print("kcont run: request-key-daemon did not become ready", file=sys.stderr)
        return EXIT_CANCELED
    # Until run_command takes the signals over for CMD, a Ctrl-C ends the
    # init (and so the container, whose members die with it) with 130,
    # CMD never run.
    try:
        return run_command(cmd)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=DAEMON_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print("kcont run: request-key-daemon did not stop on SIGTERM; killed",
                  file=sys.stderr)
            daemon.kill()
            daemon.wait()


def run_with_daemon(container: Container, cmd: Sequence[str],
                    daemon_args: Sequence[str]) -> int:
    """Fork the supervising init into ``container``; kcont run's exit code
    (kcont.exit_codes), which the init passes on."""
    with forwarding() as forwarder:
        pid = container.fork()
        if pid == 0:
            restore_defaults()
            _run_init(container, cmd, daemon_args)
        forwarder.target(pid)
        return wait_status(container.wait(pid))


def _run_init(container: Container, cmd: Sequence[str], daemon_args: Sequence[str]) -> NoReturn:
    """The supervising init's whole life: it exits, never returns."""
    code = EXIT_CANCELED
    try:
        code = _init(container.fd, cmd, daemon_args)
    except KeyboardInterrupt:  # Ctrl-C before CMD started
        print("kcont run: interrupted before the command started", file=sys.stderr)
        code = 128 + signal.SIGINT
    except BaseException as err:  # the init must exit, never return into kcont's main
        print(f"kcont run: init: {err!r}", file=sys.stderr)
    finally:
        # os._exit skips Python's flush: what the init printed must get out
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
