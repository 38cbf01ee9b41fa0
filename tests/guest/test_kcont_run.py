"""``kcont run``'s exit codes on the patched kernel, with and without
``--daemon``: CMD's own status (128+N for signal N), 127 for a CMD that
is not found, 126 for one that cannot be executed, 125 when kcont run
itself fails (the kernel refuses the container, the daemon never becomes
ready), 2 for a usage error; and ``kcont ls --json`` on the kernel's
/proc/containers.

Most runs call ``kcont.cli.main`` in this process (it forks into a real
container as the command line does; a Python start-up per case would
cost minutes under TCG); a few run the installed ``kcont`` script to
check the entry point and its one-line stderr.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kcont import cli
from kcont.container import Container

# The CLI (userspace): the perf boot, beside keyutils' suite.
pytestmark = pytest.mark.perf_boot

KCONT = str(Path(sys.executable).parent / "kcont")
MODES = ["init", "daemon"]


@pytest.fixture
def mode_args(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """kcont run's options for the mode: CMD as the container's init, or as
    the child of an init that runs request-key-daemon first."""
    if request.param == "init":
        yield []
        return
    confdir = tmp_path / "rk"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text("create user kcont-run:* * @static ok\n")
    yield ["--daemon", "--daemon-config", str(confdir)]


@contextmanager
def own_signals() -> Iterator[None]:
    """main() puts SIGPIPE and SIGXFSZ back to their defaults (for CMD);
    this process gets its own handlers back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGPIPE, signal.SIGXFSZ)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def kcont(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``kcont ARGS``, in process: (exit code, stdout, stderr)."""
    with own_signals():
        try:
            code: int | str | None = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
    out, err = capfd.readouterr()
    assert isinstance(code, int), code
    return code, out, err


def kcont_run(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return kcont(capfd, "run", "--name", "kcont-run-test", *args)


def kcont_lines(err: str) -> list[str]:
    """kcont run's own lines, without the daemon's log."""
    return [line for line in err.splitlines() if line.startswith("kcont run:")]


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_cmd_status_passes_through(capfd: pytest.CaptureFixture[str],
                                   mode_args: list[str]) -> None:
    code, out, err = kcont_run(capfd, *mode_args, "--", "sh", "-c", "echo ran; exit 3")
    assert (code, out) == (3, "ran\n"), err
    assert kcont_lines(err) == []


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_a_signal_is_128_plus_its_number(capfd: pytest.CaptureFixture[str],
                                         mode_args: list[str]) -> None:
    code, _, err = kcont_run(capfd, *mode_args, "--", "sh", "-c", "kill -TERM $$")
    assert code == 128 + signal.SIGTERM, err


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_cmd_not_found_is_127(capfd: pytest.CaptureFixture[str], mode_args: list[str],
                              tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-command")
    code, _, err = kcont_run(capfd, *mode_args, "--", missing, "arg")
    assert code == 127, err
    assert kcont_lines(err) == [f"kcont run: {missing}: No such file or directory"]


def test_cmd_not_found_on_path_is_127(capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = kcont_run(capfd, "--", "kcont-no-such-command")
    assert code == 127, err
    assert kcont_lines(err) == ["kcont run: kcont-no-such-command: No such file or directory"]


def _unrunnable(tmp_path: Path, case: str) -> str:
    if case == "directory":
        return str(tmp_path)
    path = tmp_path / case
    if case == "not-executable":
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o644)
    else:  # ENOEXEC: executable, but no format the kernel knows, no #!
        path.write_bytes(b"\x7fELF\x02not really an ELF file")
        path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("case,message", [("directory", "Permission denied"),
                                          ("not-executable", "Permission denied"),
                                          ("garbage", "Exec format error")])
def test_cmd_that_cannot_be_executed_is_126(capfd: pytest.CaptureFixture[str], tmp_path: Path,
                                            case: str, message: str) -> None:
    cmd = _unrunnable(tmp_path, case)
    code, _, err = kcont_run(capfd, "--", cmd)
    assert code == 126, err
    assert kcont_lines(err) == [f"kcont run: {cmd}: {message}"]


@pytest.mark.parametrize("mode_args", ["daemon"], indirect=True)
@pytest.mark.parametrize("case", ["not-executable", "garbage"])
def test_cmd_that_cannot_be_executed_is_126_under_the_daemon(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, mode_args: list[str],
        case: str) -> None:
    code, _, err = kcont_run(capfd, *mode_args, "--", _unrunnable(tmp_path, case))
    assert code == 126, err
    assert len(kcont_lines(err)) == 1, err


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_a_refused_container_is_125(capfd: pytest.CaptureFixture[str], mode_args: list[str],
                                    tmp_path: Path) -> None:
    """container_create() refuses a name with '/' (EINVAL): CMD never runs."""
    marker = tmp_path / "ran"
    code, _, err = kcont(capfd, "run", "--name", "bad/name", *mode_args, "--", "touch",
                         str(marker))
    assert code == 125, err
    assert kcont_lines(err) == ["kcont run: container_create: Invalid argument"]
    assert not marker.exists()


def test_a_daemon_that_never_serves_is_125(capfd: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    """The daemon exits at start (its policy file is missing): the command
    never runs and kcont run says why."""
    marker = tmp_path / "ran"
    code, _, err = kcont_run(capfd, "--daemon", "--daemon-config", str(tmp_path),
                             f"--daemon-arg=--policy={tmp_path / 'missing.toml'}",
                             "--", "touch", str(marker))
    assert code == 125, err
    assert kcont_lines(err) == ["kcont run: request-key-daemon did not become ready"]
    assert not marker.exists()


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_cmd_gets_sigpipe_back(capfd: pytest.CaptureFixture[str],
                               mode_args: list[str]) -> None:
    """Python ignores SIGPIPE and an exec keeps an ignored signal; CMD must
    start with it at its default, as under a shell (``yes | head`` ends)."""
    code, out, err = kcont_run(capfd, *mode_args, "--", "grep", "^SigIgn:", "/proc/self/status")
    assert code == 0, err
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), out
    assert not ignored & (1 << (signal.SIGXFSZ - 1)), out


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KCONT, *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_installed_script_one_line_each() -> None:
    """The console script as a user runs it: one line on stderr for each of
    the three ways kcont run itself can end without CMD's status."""
    usage = _script("run", "--frobnicate", "--", "true")
    assert usage.returncode == 2
    assert usage.stderr == ("kcont run: unrecognized arguments: --frobnicate "
                            "(see kcont run --help)\n")
    refused = _script("run", "--name", "bad/name", "--", "true")
    assert refused.returncode == 125
    assert refused.stderr == "kcont run: container_create: Invalid argument\n"
    missing = _script("run", "--", "/kcont/no/such/command")
    assert missing.returncode == 127
    assert missing.stderr == "kcont run: /kcont/no/such/command: No such file or directory\n"


def test_ls_json_lists_the_kernel_s_containers(capfd: pytest.CaptureFixture[str]) -> None:
    """Every field of /proc/containers, for a container this test made;
    its name holds a space and a tab (which the kernel leaves as they are),
    a backslash (which it escapes) and UTF-8."""
    name = "kcont json\t\\é"
    with Container(name, trusted=False) as box:
        code, out, err = kcont(capfd, "ls", "--json")
        ident = box.id
    assert code == 0, err
    rows = json.loads(out)
    mine = [row for row in rows if row["id"] == ident]
    assert len(mine) == 1 and mine[0].pop("use") >= 1, rows
    assert mine == [{"name": name, "id": ident, "flags": "----", "trusted": False,
                     "owner": 0, "group": 0, "current": False}], rows
    current = [row for row in rows if row["current"]]
    assert len(current) == 1 and current[0]["id"] == 1, rows


TRAPPER = ('trap "" INT QUIT; trap "exit 7" TERM; echo up; '
           'while :; do sleep 0.1; done')


@pytest.mark.parametrize("mode_args", MODES, indirect=True)
def test_ctrl_c_is_cmds_and_sigterm_reaches_it(mode_args: list[str]) -> None:
    """The terminal's Ctrl-C (SIGINT to the whole process group) neither
    ends kcont run with a traceback nor kills the init under CMD: a CMD
    that ignores it keeps running.  SIGTERM to kcont alone is passed on
    to CMD (through the init with --daemon), whose trap exits 7, and
    kcont run exits with that."""
    proc = subprocess.Popen([KCONT, "run", *mode_args, "--", "sh", "-c", TRAPPER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready and proc.stdout.readline() == "up\n", "CMD never started"
        os.killpg(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGQUIT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 7, err
    assert "Traceback" not in err, err
