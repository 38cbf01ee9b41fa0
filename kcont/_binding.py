"""The compiled module with errno turned into OSError: the only layer that calls C.

Every failure raises the OSError subclass Python picks for the errno
(FileNotFoundError, PermissionError, ...), with the call's name in
``filename`` and in ``call``, so a message reads
``[Errno 22] Invalid argument: 'container_create'``.
"""

from __future__ import annotations

from kcont._kcont import ffi, lib
from kcont._keyctl import ffi as keyctl_ffi
from kcont._keyctl import lib as keyctl_lib

__all__ = ["check", "ffi", "keyctl_ffi", "keyctl_lib", "lib", "oserror"]


def oserror(errno: int, call: str) -> OSError:
    """An OSError subclass for ``errno``, naming the call that failed."""
    import os

    err = OSError(errno, os.strerror(errno), call)
    err.call = call  # type: ignore[attr-defined]
    return err


def check(call: str, result: int) -> int:
    """Return ``result``, or raise for the C convention of -1 and errno."""
    if result == -1:
        raise oserror(ffi.errno, call)
    return result
