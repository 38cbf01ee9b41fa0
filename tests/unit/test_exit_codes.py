"""kcont.exit_codes against the tools it follows: env(1) for a command
that cannot run, the shell for a command that ran.  Real execs and real
wait statuses, no kernel patches needed."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from kcont import exit_codes
from kcont.exit_codes import EXIT_CANCELED, EXIT_CANNOT_INVOKE, EXIT_ENOENT, exec_failure

ENV = shutil.which("env") or "/usr/bin/env"


def exec_errno(argv: list[str]) -> int:
    """The errno the kernel gives for exec'ing argv (via posix_spawnp,
    which reports it in the parent, as kcont's two paths do)."""
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ)
    except OSError as err:
        return err.errno or 0
    os.waitpid(pid, 0)
    raise AssertionError(f"{argv} ran")


@pytest.fixture
def unrunnable(tmp_path: Path) -> dict[str, str]:
    no_x = tmp_path / "not-executable"
    no_x.write_text("#!/bin/sh\nexit 0\n")
    no_x.chmod(0o644)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF\x00not a real binary")
    garbage.chmod(0o755)
    return {"missing": str(tmp_path / "missing"), "missing-on-path": "kcont-no-such-command",
            "directory": str(tmp_path), "not-executable": str(no_x),
            "garbage": str(garbage)}


@pytest.mark.parametrize("case,code", [("missing", 127), ("missing-on-path", 127),
                                       ("directory", 126), ("not-executable", 126),
                                       ("garbage", 126)])
def test_exec_failures(unrunnable: dict[str, str], case: str, code: int) -> None:
    assert exec_failure(exec_errno([unrunnable[case]])) == code


@pytest.mark.parametrize("case", ["missing", "missing-on-path", "directory", "not-executable"])
def test_the_same_codes_as_env(unrunnable: dict[str, str], case: str) -> None:
    """env(1) decides the same way (it would run an ENOEXEC file with
    /bin/sh, so "garbage" is not compared: kcont never does that)."""
    env = subprocess.run([ENV, unrunnable[case]], capture_output=True, check=False)
    assert exec_failure(exec_errno([unrunnable[case]])) == env.returncode


def test_every_errno_but_enoent_is_cannot_invoke() -> None:
    assert exec_failure(errno.ENOENT) == EXIT_ENOENT
    others = [code for code in errno.errorcode if code != errno.ENOENT]
    assert {exec_failure(code) for code in others} == {EXIT_CANNOT_INVOKE}


@pytest.mark.parametrize("script", ["exit 0", "exit 3", "exit 125", "exit 255",
                                    "kill -TERM $$", "kill -KILL $$", "kill -HUP $$"])
def test_wait_status_is_what_the_shell_reports(script: str) -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", script], os.environ,
                         setsigdef=(signal.SIGPIPE,))
    status = os.waitpid(pid, 0)[1]
    shell = subprocess.run(["/bin/sh", "-c", f"/bin/sh -c '{script}'; echo $?"],
                           capture_output=True, text=True, check=True)
    assert exit_codes.wait_status(status) == int(shell.stdout.split()[-1])


def test_the_reserved_codes() -> None:
    assert (EXIT_CANCELED, EXIT_CANNOT_INVOKE, EXIT_ENOENT) == (125, 126, 127)
    assert exit_codes.EXIT_USAGE == 2
