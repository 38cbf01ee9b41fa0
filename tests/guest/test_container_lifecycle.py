"""fork_into_container() and the container's life: init, death, POLLHUP, ECANCELED."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from budget import examples
from containers import in_container, reaped_within, run_child

from kcont import keys, proc
from kcont.container import Container, fork_into


def wait_status(pid: int, timeout: float = 30.0) -> int:
    status = reaped_within(pid, timeout)
    if status is None:
        raise AssertionError(f"pid {pid} did not exit within {timeout}s")
    return status


def sleeper(c: Container) -> int:
    """A member that would sleep for an hour."""
    return c.spawn(["sleep", "3600"])


def container_ids() -> set[int]:
    return {row.id for row in proc.read()}


def test_first_task_is_init_and_its_exit_kills_members() -> None:
    with Container("kc-life") as c:
        init = sleeper(c)
        members = [sleeper(c) for _ in range(3)]
        assert fdinfo_members(c) == 4
        os.kill(init, signal.SIGTERM)
        assert os.WTERMSIG(wait_status(init)) == signal.SIGTERM
        for pid in members:
            status = wait_status(pid)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert c.dead


def fdinfo_members(c: Container) -> int:
    from kcont.container import fdinfo

    return int(fdinfo(c.fd)["members"])


def test_dead_container_polls_hup_and_refuses_forks() -> None:
    with Container("kc-dead") as c:
        poller = select.poll()
        poller.register(c.fd, select.POLLIN)
        assert poller.poll(0) == []
        init = c.spawn(["true"])
        wait_status(init)
        assert any(ev & select.POLLHUP for _, ev in poller.poll(5000))
        with pytest.raises(OSError) as err:
            c.fork()
        assert err.value.errno == errno.ECANCELED
        assert err.value.filename == "clone3"


def test_kill_on_close() -> None:
    c = Container("kc-koc", kill_on_close=True)
    init = sleeper(c)
    member = sleeper(c)
    c.close()
    for pid in (init, member):
        assert os.WTERMSIG(wait_status(pid)) == signal.SIGKILL


def test_container_with_members_outlives_its_fd() -> None:
    c = Container("kc-outlive")
    ident = c.id
    init = sleeper(c)
    c.close()
    assert ident in container_ids()
    os.kill(init, signal.SIGKILL)
    wait_status(init)
    deadline = time.monotonic() + 10
    while ident in container_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ident not in container_ids(), "freed once the last fd and member are gone"


def test_children_of_members_are_members() -> None:
    with Container("kc-kids", ns=["pid"]) as c:
        def grandchild_view() -> list[int]:
            return run_child(os.fork, lambda: [os.getpid(), os.getppid()])

        pid, ppid = in_container(c, grandchild_view)
        assert ppid == 1 and pid > 1


def test_members_start_without_the_creators_keyrings(session_keyring: int) -> None:
    with Container("kc-keys") as c:
        inside = in_container(c, lambda: keys.Keyring.special(keys.SESSION, create=True).serial)
        assert inside != session_keyring


def test_proc_containers_from_inside() -> None:
    with Container("kc-procview") as c:
        rows = in_container(c, lambda: [(r.name, r.current) for r in proc.read()])
        assert rows == [["kc-procview", True]]
        outside = {r.name: r for r in proc.read()}
        assert outside[".init"].current and "kc-procview" in outside


def test_fork_into_bad_fds() -> None:
    with pytest.raises(OSError) as err:
        fork_into(-1)
    assert err.value.errno == errno.EBADF
    rfd, wfd = os.pipe()
    try:
        with pytest.raises(OSError) as err:
            fork_into(rfd)
        assert err.value.errno == errno.EINVAL
    finally:
        os.close(rfd)
        os.close(wfd)
    c = Container("kc-closed")
    fd = c.fd
    c.close()
    with pytest.raises(OSError) as err:
        fork_into(fd)
    assert err.value.errno == errno.EBADF


def test_spawn_reports_exec_failure() -> None:
    with Container("kc-noexec") as c, pytest.raises(FileNotFoundError):
        c.spawn(["/nonexistent/kcont-binary"])


def test_no_leak_over_many_cycles() -> None:
    """create, fork in, exit, close, 300 times (more per soak round); kmemleak
    is scanned after the suite, and one leaked object per cycle is already a
    report, so more cycles buy little in `make check`: 300 keep a counter or
    id that fails to come back visible below."""
    before = container_ids()
    subprocess.run([sys.executable, str(Path(__file__).with_name("cycle_containers.py")),
                    str(examples(300))], check=True, timeout=600)
    deadline = time.monotonic() + 30
    while container_ids() != before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert container_ids() == before
