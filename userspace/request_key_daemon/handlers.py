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
import subprocess
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from request_key_daemon.conf import Request, printable, to_bytes

# keyutils fails a pipe program whose stdout fills its 32769-byte buffer.
MAX_PAYLOAD = 32 * 1024
PIPE_TIMEOUT = 30.0
ENTRY_POINT_GROUP = "kcont.request_key_handlers"
EXEC_HELPER = Path(__file__).with_name("rk-exec")

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
        try:
            return getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError, ValueError) as err:
            raise HandlerError(f"@{name}: {err}") from None
    if name in BUILTINS:
        return BUILTINS[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return entry.load()
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
    except Exception as err:  # a handler's bug must not take the daemon down
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


def run_pipe(program: str | bytes, argv: tuple[str | bytes, ...], callout: str | bytes,
             timeout: float = PIPE_TIMEOUT, target: int | None = None) -> bytes:
    """keyutils' ``|prog``: callout on stdin, payload on stdout, exit 0 or fail.
    With ``target``, the program holds that request's authority (rk-exec)."""
    prog = to_bytes(program)
    args = tuple(to_bytes(arg) for arg in argv)
    command = helper_argv(target, prog, args) if target is not None else [prog, *args[1:]]
    try:
        proc = subprocess.run(command, executable=command[0], input=to_bytes(callout),
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HandlerError(f"{printable(prog)}: no answer in {timeout:.0f}s") from None
    except OSError as err:
        raise HandlerError(f"{printable(prog)}: {err.strerror}", program_failed=True) from None
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else \
            f"exit {proc.returncode}"
        raise HandlerError(f"{printable(prog)}: {how}{_last_line(proc.stderr)}",
                           program_failed=True)
    if len(proc.stdout) > MAX_PAYLOAD:
        raise HandlerError(f"{printable(prog)}: payload of {len(proc.stdout)} bytes, "
                           f"more than {MAX_PAYLOAD}")
    return proc.stdout


def run_exec(program: bytes, argv: tuple[bytes, ...], target: int,
             timeout: float) -> str | None:
    """A plain program, as /sbin/request-key execs it (rk-exec does the key
    steps).  It answers the request itself, or leaves it for us to negate;
    returns how it ended if not with exit 0 (keyutils does not look at it:
    a program that answered and then failed has still answered)."""
    command = helper_argv(target, program, argv)
    try:
        proc = subprocess.run(command, executable=command[0], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise HandlerError(f"{printable(program)}: no answer in {timeout:.0f}s") from None
    except OSError as err:
        raise HandlerError(f"{printable(program)}: {err.strerror}") from None
    if proc.returncode == 0:
        return None
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
    return f"{printable(program)}: {how}{_last_line(proc.stderr)}"
