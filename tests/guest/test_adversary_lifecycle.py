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


def state_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    raise LookupError(pid)


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise LookupError(pid)


@pytest.mark.parametrize("how", sorted(ENTRIES))
def test_the_init_s_first_thread_exiting_leaves_the_container_alive(how: str) -> None:
    with Container("adv-pthread-exit") as c:
        init = spawn(c, [sys.executable, "-c", MAIN_THREAD_EXITS], how)
        try:
            # The first thread gone (a zombie leader), one thread left.
            assert wait_for(lambda: state_of(init) == "Z" and threads_of(init) == 1)
            time.sleep(0.5)
            assert not c.dead
            assert Path(f"/proc/{init}").exists()
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


@pytest.mark.parametrize("ns", [(), ("pid",)], ids=["shared-pid-ns", "own-pid-ns"])
def test_a_failed_first_entry_leaves_no_live_unenterable_container(ns: tuple[str, ...]) -> None:
    """Fail each fault point of the first entry in turn (a fresh container
    each time): the next entry either starts the init or finds the
    container dead (ECANCELED), never a live container it cannot enter."""
    failed = 0
    with faults_allowed():
        for n in range(1, 400, 3):
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
