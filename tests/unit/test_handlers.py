"""Pipe programs and built-in handlers, run for real on the host."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from request_key_daemon import handlers
from request_key_daemon.conf import Request

REQUEST = Request("create", "user", "desc", "the callout", "42")


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "prog"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def test_pipe_passes_callout_and_returns_stdout(tmp_path: Path) -> None:
    prog = script(tmp_path, 'read line; printf "%s|%s" "$1" "$line"\n')
    assert handlers.run_pipe(prog, ("prog", "arg1"), "hello") == b"arg1|hello"


@pytest.mark.parametrize(("body", "message"), [
    ("echo nope >&2; exit 3\n", "exit 3: nope"),
    ("kill -TERM $$\n", "signal 15"),
    ("head -c 32769 /dev/zero\n", "payload of more than 32768 bytes"),
    ("cat /dev/zero\n", "payload of more than 32768 bytes"),
])
def test_pipe_failures_name_the_cause(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(handlers.HandlerError, match=message):
        handlers.run_pipe(script(tmp_path, body), ("prog",), "x")


def test_pipe_exactly_the_limit_is_fine(tmp_path: Path) -> None:
    prog = script(tmp_path, f"head -c {handlers.MAX_PAYLOAD} /dev/zero\n")
    assert len(handlers.run_pipe(prog, ("prog",), "x")) == handlers.MAX_PAYLOAD


def test_pipe_timeout_and_missing_program(tmp_path: Path) -> None:
    with pytest.raises(handlers.HandlerError, match="no answer in"):
        handlers.run_pipe(script(tmp_path, "sleep 5\n"), ("prog",), "x", timeout=0.5)
    with pytest.raises(handlers.HandlerError, match="No such file"):
        handlers.run_pipe(str(tmp_path / "missing"), ("missing",), "x")


def test_static_and_python_builtins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert handlers.run_builtin("@static", REQUEST, ("a", "b")) == b"a b"
    (tmp_path / "kcont_test_handler.py").write_text(
        "def serve(request, args):\n    return request.key + b':' + args[0]\n"
        "def broken(request, args):\n    return 1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert handlers.run_builtin("@python:kcont_test_handler:serve", REQUEST, ("x",)) == b"42:x"
    with pytest.raises(handlers.HandlerError, match="raised ZeroDivisionError"):
        handlers.run_builtin("@python:kcont_test_handler:broken", REQUEST, ())
    sys.modules.pop("kcont_test_handler", None)


@pytest.mark.parametrize(("program", "message"), [
    ("@static", "needs a payload"),
    ("@nosuch", "no such built-in"),
    ("@python:nomodule_kcont:f", "No module named"),
    ("@python:os:no_such_function", "has no attribute"),
    ("@python:justone", "want @python:module:function"),
])
def test_builtin_errors(program: str, message: str) -> None:
    with pytest.raises(handlers.HandlerError, match=message):
        handlers.run_builtin(program, REQUEST, ())


def test_programs_from_many_threads_at_once(tmp_path: Path) -> None:
    """The daemon's workers start programs concurrently; with no Python code
    between fork and exec (no preexec_fn), none may hang or mix answers."""
    from concurrent.futures import ThreadPoolExecutor

    prog = script(tmp_path, 'read line; printf "%s" "$line"\n')
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: handlers.run_pipe(prog, ("prog",), f"req-{i}",
                                                            timeout=60),
                                range(128)))
    assert answers == [f"req-{i}".encode() for i in range(128)]


def test_no_preexec_fn_in_the_daemon() -> None:
    """Python documents preexec_fn as unsafe in a threaded program."""
    package = Path(handlers.__file__).parent
    users = [path.name for path in package.glob("*.py") if "preexec_fn=" in path.read_text()]
    assert users == []


def test_programs_get_request_keys_environment_and_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the kernel starts /sbin/request-key: HOME=/ and the system PATH
    only, in /; nothing of the daemon's own environment."""
    monkeypatch.setenv("KCONT_DAEMON_SECRET", "leak")
    monkeypatch.chdir(tmp_path)
    prog = script(tmp_path, 'pwd; env | sort\n')
    out = handlers.run_pipe(prog, ("prog",), "x").decode().splitlines()
    assert out[0] == "/"
    assert [line for line in out[1:] if not line.startswith(("PWD=", "SHLVL=", "_="))] == \
        ["HOME=/", "PATH=/sbin:/bin:/usr/sbin:/usr/bin"]


def test_a_builtin_raising_systemexit_fails_the_request_not_the_daemon(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "kcont_exit_handler.py").write_text(
        "def quit(request, args):\n    raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(handlers.HandlerError, match="raised SystemExit") as failed:
        handlers.run_builtin("@python:kcont_exit_handler:quit", REQUEST, ())
    assert failed.value.program_failed
    sys.modules.pop("kcont_exit_handler", None)
