"""What serves a matched request: a piped program, or a built-in handler.

Three kinds of program can follow the patterns of a request-key.conf line
(see conf.py); this module runs the two that need no key authority of
their own:

- ``|/path/prog args...``: keyutils' pipe protocol.  The callout info goes
  to the program's stdin; its stdout, if it exits 0, is the payload; a
  non-zero exit, a signal, a timeout or an oversized payload fails the
  request (and the daemon then looks up op ``negate``, as keyutils does).
- ``@name args...``: a built-in handler, served in the daemon's process
  with no fork.  ``@static PAYLOAD`` returns its argument;
  ``@python:module:function`` imports and calls ``function(request, args)``;
  other names come from the ``kcont.request_key_handlers`` entry-point group,
  so a package can add handlers without touching the daemon.

Plain ``/path/prog args...`` lines are exec'd with the authority assumed
and the auth key in the program's session keyring, like
``/sbin/request-key`` does; that needs the kernel's interception and lives
with the daemon loop.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable
from importlib.metadata import entry_points

from request_key_daemon.conf import Request

# keyutils fails a pipe program whose stdout fills its 32769-byte buffer.
MAX_PAYLOAD = 32 * 1024
PIPE_TIMEOUT = 30.0
ENTRY_POINT_GROUP = "kcont.request_key_handlers"

Handler = Callable[[Request, tuple[str, ...]], bytes]


class HandlerError(Exception):
    """The handler could not produce a payload; the request is negated."""


def static(request: Request, args: tuple[str, ...]) -> bytes:
    """``@static PAYLOAD...``: the arguments, joined by spaces, are the payload."""
    if not args:
        raise HandlerError("@static needs a payload argument")
    return " ".join(args).encode()


BUILTINS: dict[str, Handler] = {"static": static}


def find_builtin(program: str) -> Handler:
    """The handler for ``@name`` or ``@python:module:function``."""
    name = program.removeprefix("@")
    if name.startswith("python:"):
        target = name.removeprefix("python:")
        module_name, _, function = target.rpartition(":")
        if not module_name or not function:
            raise HandlerError(f"{program}: want @python:module:function")
        try:
            return getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError) as err:
            raise HandlerError(f"{program}: {err}") from None
    if name in BUILTINS:
        return BUILTINS[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return entry.load()
    raise HandlerError(f"{program}: no such built-in handler")


def run_builtin(program: str, request: Request, args: tuple[str, ...]) -> bytes:
    handler = find_builtin(program)
    try:
        payload = handler(request, args)
    except HandlerError:
        raise
    except Exception as err:  # a handler's bug must not take the daemon down
        raise HandlerError(f"{program} raised {type(err).__name__}: {err}") from err
    if not isinstance(payload, bytes):
        raise HandlerError(f"{program} returned {type(payload).__name__}, not bytes")
    return payload


def run_pipe(program: str, argv: tuple[str, ...], callout: str,
             timeout: float = PIPE_TIMEOUT) -> bytes:
    """keyutils' ``|prog``: callout on stdin, payload on stdout, exit 0 or fail."""
    try:
        proc = subprocess.run([program, *argv[1:]], executable=program,
                              input=callout.encode(), capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise HandlerError(f"{program}: no answer in {timeout:.0f}s") from None
    except OSError as err:
        raise HandlerError(f"{program}: {err.strerror}") from None
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else \
            f"exit {proc.returncode}"
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise HandlerError(f"{program}: {how}" + (f": {detail[0]}" if detail else ""))
    if len(proc.stdout) > MAX_PAYLOAD:
        raise HandlerError(f"{program}: payload of {len(proc.stdout)} bytes, "
                           f"more than {MAX_PAYLOAD}")
    return proc.stdout
