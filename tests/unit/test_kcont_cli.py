"""The kcont command line (host: argument handling only)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kcont import cli, exit_codes


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kcont.cli", *args], capture_output=True,
                          text=True, check=False)


def test_parse_run() -> None:
    opts = cli.make_parser().parse_args(["run", "--name", "web", "--ns", "pid,mnt",
                                         "--untrusted", "--", "sh", "-c", "true"])
    assert opts.name == "web" and opts.ns == ["pid", "mnt"] and opts.trusted is False
    assert opts.cmd == ["--", "sh", "-c", "true"]


def test_trust_flags_are_exclusive() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.make_parser().parse_args(["run", "--trusted", "--untrusted", "--", "true"])
    assert exc.value.code == cli.EXIT_USAGE


@pytest.mark.parametrize("args,needle", [
    (["run", "--ns", "pid,bogus", "--", "true"], "unknown namespace 'bogus'"),
    (["frob"], "invalid choice"),
    (["run", "--what"], "unrecognized arguments"),
])
def test_usage_errors_are_one_line(args: list[str], needle: str) -> None:
    result = run_cli(*args)
    assert result.returncode == cli.EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_run_without_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run"])
    assert exc.value.code == cli.EXIT_USAGE
    assert capsys.readouterr().err == ("kcont run: no command given: kcont run [OPTIONS] -- "
                                       "CMD... (see kcont run --help)\n")


@pytest.mark.parametrize("status,code", [(0, 0), (3 << 8, 3), (9, 137)])
def test_exit_status(status: int, code: int) -> None:
    assert exit_codes.wait_status(status) == code
    assert os.WIFSIGNALED(status) == (code >= 128)
