"""What serves a matched request: a program (piped or exec'd), or a built-in.

Three kinds of program can follow the patterns of a request-key.conf line
(see conf.py):

- ``|/path/prog args...``: keyutils' pipe protocol.  The callout info goes
  to the program's stdin; its stdout, if it exits 0, is the payload; a
  non-zero exit, a signal or a program that cannot be started fails the
  request, and the daemon then looks up op ``negate``, as keyutils does.
  A timeout or an oversized payload fails it without that second lookup.
- ``/path/prog args...``: exec'd as ``/sbin/request-key`` execs it, with
  the authority assumed and the auth key in a session keyring of its own,
  so that ``keyctl instantiate %k ...`` works unchanged.
- ``@name args...``: a built-in handler, served in the daemon's process
  with no fork.  ``@static PAYLOAD`` returns its arguments;
  ``@python:module:function`` imports and calls ``function(request, args)``
  (a ``conf.Request`` of bytes, and the arguments as bytes); other names
  come from the ``kcont.request_key_handlers`` entry-point group, so a
  package can add handlers without touching the daemon.

Programs are started through ``rk-exec`` (rk_exec.c), a static helper that
assumes the authority, joins a session and execs: the daemon is threaded,
and no Python code may run in a child between fork() and exec().
"""

from __future__ import annotations

import importlib
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from request_key_daemon.conf import Request, printable, to_bytes

# keyutils fails a pipe program whose stdout fills its 32769-byte buffer.
MAX_PAYLOAD = 32 * 1024
PIPE_TIMEOUT = 30.0
ENTRY_POINT_GROUP = "kcont.request_key_handlers"
EXEC_HELPER = Path(__file__).with_name("rk-exec")
# What the kernel gives /sbin/request-key (call_sbin_request_key()): its
# programs run with this environment, in /.
PROGRAM_ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}
PROGRAM_CWD = "/"

Handler = Callable[[Request, tuple[bytes, ...]], bytes]


class HandlerError(Exception):
    """The handler could not produce a payload; the request is negated.

    ``program_failed`` is keyutils' condition for the ``negate`` re-lookup:
    the program exited non-zero, died on a signal or could not be started.
    """

    def __init__(self, message: str, program_failed: bool = False) -> None:
        super().__init__(message)
        self.program_failed = program_failed


def static(request: Request, args: tuple[bytes, ...]) -> bytes:
    """``@static PAYLOAD...``: the arguments, joined by spaces, are the payload."""
    if not args:
        raise HandlerError("@static needs a payload argument")
    return b" ".join(args)


BUILTINS: dict[str, Handler] = {"static": static}


def find_builtin(program: str | bytes) -> Handler:
    """The handler for ``@name`` or ``@python:module:function``."""
    name = printable(to_bytes(program)).removeprefix("@")
    if name.startswith("python:"):
        target = name.removeprefix("python:")
        module_name, _, function = target.rpartition(":")
        if not module_name or not function:
            raise HandlerError(f"@{name}: want @python:module:function")
        # Loaded by name, so only the contract types it: run_builtin checks the payload.
        try:
            loaded: Handler = getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError, ValueError) as err:
            raise HandlerError(f"@{name}: {err}") from None
        return loaded
    if name in BUILTINS:
        return BUILTINS[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        plugin: Handler = entry.load()
        return plugin
    raise HandlerError(f"@{name}: no such built-in handler")


def run_builtin(program: str | bytes, request: Request,
                args: tuple[str | bytes, ...]) -> bytes:
    """The built-in's payload; any failure of it is a HandlerError that counts
    as a failed program (keyutils' ``negate`` re-lookup follows)."""
    handler = find_builtin(program)
    name = printable(to_bytes(program))
    try:
        payload = handler(request, tuple(to_bytes(arg) for arg in args))
    except HandlerError as err:
        raise HandlerError(str(err), program_failed=True) from None
    except BaseException as err:  # a handler raising SystemExit must not end the daemon
        raise HandlerError(f"{name} raised {type(err).__name__}: {err}",
                           program_failed=True) from err
    if not isinstance(payload, bytes):
        raise HandlerError(f"{name} returned {type(payload).__name__}, not bytes",
                           program_failed=True)
    return payload


def helper_argv(target: int, program: bytes, argv: tuple[bytes, ...]) -> list[bytes]:
    """The command line that runs ``program`` with the authority over
    ``target``, as /sbin/request-key would (see rk_exec.c)."""
    if not EXEC_HELPER.exists():
        raise HandlerError(f"{EXEC_HELPER} is missing: reinstall the package (pip install .)")
    return [bytes(EXEC_HELPER), str(target).encode(), program, *argv]


def _last_line(stderr: bytes) -> str:
    lines = stderr.strip().splitlines()
    return f": {printable(lines[-1])}" if lines else ""


def _read_bounded(proc: subprocess.Popen[bytes], callout: bytes, deadline: float) -> bytes:
    """The pipe protocol's I/O, as keyutils' select() loop: the callout to
    stdin, stdout until EOF but never more than MAX_PAYLOAD + 1 bytes (the
    program is killed then), stderr kept for the reason line."""
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(callout)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    out = bytearray()
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, 0)
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return bytes(out)
        out += chunk
        if len(out) > MAX_PAYLOAD:
            return bytes(out)


def run_pipe(program: str | bytes, argv: tuple[str | bytes, ...], callout: str | bytes,
             timeout: float = PIPE_TIMEOUT, target: int | None = None) -> bytes:
    """keyutils' ``|prog``: callout on stdin, payload on stdout, exit 0 or fail.
    With ``target``, the program holds that request's authority (rk-exec)."""
    prog = to_bytes(program)
    args = tuple(to_bytes(arg) for arg in argv)
    command = helper_argv(target, prog, args) if target is not None else [prog, *args[1:]]
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(command, executable=command[0], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=errors, env=PROGRAM_ENV,
                                    cwd=PROGRAM_CWD)
        except OSError as err:
            raise HandlerError(f"{printable(prog)}: {err.strerror}",
                               program_failed=True) from None
        with proc:
            try:
                payload = _read_bounded(proc, to_bytes(callout), deadline)
                if len(payload) > MAX_PAYLOAD:
                    proc.kill()
                    raise HandlerError(f"{printable(prog)}: payload of more than "
                                       f"{MAX_PAYLOAD} bytes")
                returncode = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise HandlerError(f"{printable(prog)}: no answer in {timeout:.0f}s") from None
        errors.seek(0)
        stderr = errors.read(4096)
    if returncode != 0:
        how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
        raise HandlerError(f"{printable(prog)}: {how}{_last_line(stderr)}",
                           program_failed=True)
    return payload


def run_exec(program: bytes, argv: tuple[bytes, ...], target: int,
             timeout: float) -> str | None:
    """A plain program, as /sbin/request-key execs it (rk-exec does the key
    steps), with ``argv`` whole (``argv[0]`` included).  It answers the
    request itself, or leaves it for us to negate; returns how it ended if
    not with exit 0 (keyutils does not look at it: a program that answered
    and then failed has still answered).  Only its
    exit is waited for, as the kernel waits for its helper: a child it
    leaves running does not hold the request."""
    command = helper_argv(target, program, argv)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.run(command, executable=command[0], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=errors, env=PROGRAM_ENV,
                                  cwd=PROGRAM_CWD, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HandlerError(f"{printable(program)}: no answer in {timeout:.0f}s") from None
        except OSError as err:
            raise HandlerError(f"{printable(program)}: {err.strerror}") from None
        errors.seek(0)
        stderr = errors.read(4096)
    if proc.returncode == 0:
        return None
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return f"{printable(program)}: {how}{_last_line(stderr)}"
