"""``kcont run``'s exit codes, as env(1), chroot(1) and nsenter(1) give them.

A script that runs ``kcont run ... -- CMD`` must be able to tell "CMD
failed" from "kcont never got to run CMD" without parsing stderr, so
kcont keeps coreutils' three reserved codes for its own failures:

- 125: ``kcont run`` itself failed (the container was refused, admission
  denied, the request-key daemon never became ready, ...);
- 126: CMD was found but could not be executed (EACCES, ENOEXEC, a
  directory);
- 127: CMD was not found;

and otherwise passes CMD's own status through (128+N if signal N killed
it), as a shell does.  Usage errors exit 2, as every kcont command line
does (kcont.one_line_parser).  One module for both ways CMD runs (forked
as the container's init, or as a child of the supervising init with
``--daemon``), so the two cannot drift apart.  Pure Python: the host
tests import it without the compiled binding.
"""

from __future__ import annotations

import errno
import os

from kcont.one_line_parser import EXIT_USAGE

EXIT_CANCELED = 125
EXIT_CANNOT_INVOKE = 126
EXIT_ENOENT = 127

__all__ = ["EXIT_CANCELED", "EXIT_CANNOT_INVOKE", "EXIT_ENOENT", "EXIT_USAGE",
           "exec_failure", "wait_status"]


def exec_failure(err_no: int | None) -> int:
    """The exit code for an exec of CMD that failed with ``err_no``.

    Only "no such file" is 127; every other errno (EACCES, ENOEXEC,
    EISDIR, E2BIG, ENOMEM, ...) means CMD exists but cannot run: 126.
    coreutils' env(1) draws the line in the same place.  ``None`` (an
    OSError's errno may be unset) is not ENOENT either.
    """
    return EXIT_ENOENT if err_no == errno.ENOENT else EXIT_CANNOT_INVOKE


def wait_status(status: int) -> int:
    """The exit code for CMD's ``waitpid()`` status: its exit status, or
    128+N if signal N killed it (what a shell reports)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
