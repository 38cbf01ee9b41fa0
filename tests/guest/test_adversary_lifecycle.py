"""The attacker at the init: a container lives exactly as long as its init process.

The init is a thread group, not a thread: its first thread may exit
before the others, and another thread may execve().  Neither kills the
container.  A container whose init failed to start is dead, not alive
and unenterable: no member joins a container without an init, and a
later entry fails with ECANCELED, never with ENOMEM for ever.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

import pytest
from cgroups import cgroup2_group
from containers import run_child
from fail_nth import faults_allowed, nth_failure

from kcont.container import Container, clone_into, fork_into

ENTRIES = {"clone3": clone_into, "fork_into_container": fork_into}


def spawn(c: Container, argv: list[str], how: str) -> int:
    """Start ``argv`` as the container's init with entry call ``how``."""
    pid = ENTRIES[how](c.fd)
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    return pid

MAIN_THREAD_EXITS = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,)).start()
ctypes.CDLL(None).pthread_exit(None)
"""

OTHER_THREAD_EXECS = """
import os, threading, time
threading.Thread(target=os.execv, args=("/bin/sleep", ["sleep", "60"])).start()
time.sleep(60)
"""


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def state_of(pid: int | str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise LookupError(pid)


def live_threads(pid: int) -> int:
    """Threads of ``pid`` that are not zombies (the leader stays one until
    the whole group has exited)."""
    tasks = Path(f"/proc/{pid}/task")
    return sum(state_of(f"{pid}/task/{tid.name}") != "Z" for tid in tasks.iterdir())


@pytest.mark.parametrize("how", sorted(ENTRIES))
def test_the_init_s_first_thread_exiting_leaves_the_container_alive(how: str) -> None:
    with Container("adv-pthread-exit") as c:
        init = spawn(c, [sys.executable, "-c", MAIN_THREAD_EXITS], how)
        try:
            # The first thread gone: a zombie leader, the other thread alive.
            assert wait_for(lambda: state_of(init) == "Z")
            time.sleep(0.5)
            assert not c.dead
            assert live_threads(init) == 1
        finally:
            os.kill(init, 9)
            os.waitpid(init, 0)
        assert wait_for(lambda: c.dead)


@pytest.mark.parametrize("how", sorted(ENTRIES))
def test_an_execve_from_another_thread_of_init_leaves_the_container_alive(how: str) -> None:
    with Container("adv-thread-exec") as c:
        init = spawn(c, [sys.executable, "-c", OTHER_THREAD_EXECS], how)
        try:
            assert wait_for(lambda: Path(f"/proc/{init}/comm").read_text().strip() == "sleep")
            time.sleep(0.5)
            assert not c.dead
        finally:
            os.kill(init, 9)
            os.waitpid(init, 0)
        assert wait_for(lambda: c.dead)


def _enter(fd: int) -> int:
    pid = fork_into(fd)
    if pid == 0:
        time.sleep(30)  # an init that outlives the test's checks
        os._exit(0)
    return pid


@pytest.mark.parametrize("ns,stride", [((), 7), (("pid",), 3)],
                         ids=["shared-pid-ns", "own-pid-ns"])
def test_a_failed_first_entry_leaves_no_live_unenterable_container(ns: tuple[str, ...],
                                                                   stride: int) -> None:
    """Fail fault points of the first entry in turn (a fresh container
    each time): the next entry either starts the init or finds the
    container dead (ECANCELED), never a live container it cannot enter.
    (No allocation follows the init's pid in copy_process(): the pids
    controller test below reaches that window.)"""
    failed = 0
    with faults_allowed():
        for n in range(1, 400, stride):
            with Container("adv-first-fork", ns=ns) as c:
                reached, outcome = nth_failure(n, lambda c=c: _enter(c.fd))
                if isinstance(outcome, int):
                    os.kill(outcome, 9)
                    os.waitpid(outcome, 0)
                    if not reached:
                        break
                    continue
                assert isinstance(outcome, OSError)
                failed += 1
                try:
                    second = _enter(c.fd)
                except OSError as err:
                    assert (n, err.errno, c.dead) == (n, errno.ECANCELED, True)
                else:
                    os.kill(second, 9)
                    os.waitpid(second, 0)
    assert failed > 0, "no fault point of the first entry failed it"


def test_a_first_entry_refused_after_its_pid_leaves_the_container_dead() -> None:
    """The pids controller refuses the first entry after the init's pid
    was allocated in the container's new pid namespace, which closes the
    namespace: the container must be dead (ECANCELED), not alive and
    failing every entry with ENOMEM."""
    with (Container("adv-pids", ns={"pid"}) as c,
          cgroup2_group("kcont-adv-pids", "pids", {"pids.max": "1"}) as group):
        def attempt() -> int | str:
            try:
                pid = fork_into(c.fd)
            except OSError as err:
                return err.errno or -1
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
            return "entered"

        def body() -> list[object]:
            (group / "cgroup.procs").write_text(str(os.getpid()))
            first = attempt()
            (group / "pids.max").write_text("max")
            return [first, attempt(), c.dead]

        result = run_child(os.fork, body)
    assert result == [errno.EAGAIN, errno.ECANCELED, True]
