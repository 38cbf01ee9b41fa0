"""Errors that end a kcont-vm command with one line and a distinct exit code.

The exit codes let scripts (and ``make``) tell apart "your tests failed"
from "the kernel reported a bug" from "the guest never came back".
"""

from __future__ import annotations

# Exit codes of kcont-vm, documented in docs/vm.md.
EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_BUILD = 4
EXIT_KERNEL_REPORT = 121
EXIT_GUEST_DIED = 255


class KcontVmError(Exception):
    """A failure the user can act on: printed as one line, never a traceback."""

    exit_code = EXIT_SETUP

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BuildError(KcontVmError):
    """The kernel could not be prepared or built (bad patch, bad config)."""

    exit_code = EXIT_BUILD
