"""Helpers for guest tests of container objects: run a function in a child."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from kcont.container import Container
from kcont.namespaces import NS_KINDS


def ns_inodes(pid: int | str = "self") -> dict[str, int]:
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in NS_KINDS}


def run_child(fork: Callable[[], int], body: Callable[[], Any]) -> Any:
    """Fork with ``fork`` (os.fork or Container.fork), run ``body`` in the
    child, and return what it returned (JSON over a pipe).  An exception in
    the child is re-raised here as AssertionError with its traceback.
    """
    rfd, wfd = os.pipe()
    pid = fork()
    if pid == 0:
        os.close(rfd)
        try:
            payload = {"ok": body()}
        except BaseException as err:
            payload = {"error": f"{type(err).__name__}: {err}",
                       "errno": getattr(err, "errno", None), "tb": traceback.format_exc()}
        os.write(wfd, json.dumps(payload).encode())
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd) as report:
        data = report.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    result = json.loads(data)
    if "error" in result:
        raise AssertionError(result["tb"])
    return result["ok"]


def in_container(container: Container, body: Callable[[], Any]) -> Any:
    return run_child(container.fork, body)


def errno_in_child(body: Callable[[], Any]) -> int | None:
    """Run ``body`` in a plain child; the errno it raised, or None."""

    def wrapped() -> int | None:
        try:
            body()
        except OSError as err:
            return err.errno
        return None

    return run_child(os.fork, wrapped)


def reaped_within(pid: int, seconds: float) -> int | None:
    """The wait status of child ``pid`` if it ends within ``seconds``, else
    None (it is not reaped then)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    return None
