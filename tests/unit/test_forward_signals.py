"""kcont run's signal rules while CMD runs (kcont.forward_signals), on a
plain child process: they are about this process's dispositions, which
need no kernel series to check."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from functools import partial

from kcont.forward_signals import forwarding, forwarding_to

# The child starts with SIGHUP at its default even under nohup (a shell
# cannot trap a signal ignored on entry).
spawn = partial(subprocess.Popen, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
TRAPS_INT = ["sh", "-c", 'trap "" INT QUIT; trap "exit 7" TERM; i=0; '
             'while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; exit 3']


def test_ctrl_c_is_ignored_here_and_left_to_cmd() -> None:
    """A SIGINT and SIGQUIT to kcont (as a terminal sends the whole group)
    neither interrupt the wait nor end CMD: CMD's own status comes back."""
    child = spawn(TRAPS_INT)
    before = signal.getsignal(signal.SIGINT)
    with forwarding_to(child.pid):
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGQUIT)
        _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    assert signal.getsignal(signal.SIGINT) is before, "the old handler is not back"


def test_sigterm_and_sighup_are_passed_on_to_cmd() -> None:
    for sig, expect in ((signal.SIGTERM, 7), (signal.SIGHUP, -signal.SIGHUP)):
        child = spawn(TRAPS_INT)
        with forwarding_to(child.pid):
            time.sleep(0.2)
            os.kill(os.getpid(), sig)
            _, status = os.waitpid(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == expect, sig


def test_a_second_sigterm_kills_a_cmd_that_did_not_act_on_the_first() -> None:
    """As a pid namespace's init, CMD may never see a SIGTERM from outside;
    ``kill`` twice must still end it."""
    child = spawn(["sh", "-c", 'trap "" TERM; sleep 30'])
    with forwarding_to(child.pid):
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        assert child.poll() is None, "the first SIGTERM was not ignored by CMD"
        os.kill(os.getpid(), signal.SIGTERM)
        _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL


def test_cmd_forked_inside_gets_the_default_sigint() -> None:
    """The rules are in place before CMD is forked (no moment in which a
    Ctrl-C ends kcont and leaves CMD behind), yet CMD must not inherit an
    ignored SIGINT: a shell that signals itself dies of it."""
    with forwarding() as forwarder:
        child = spawn(["sh", "-c", "kill -INT $$; sleep 5; exit 0"])
        forwarder.target(child.pid)
        _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGINT


def test_sigterm_before_cmd_exists_reaches_it_once_it_does() -> None:
    with forwarding() as forwarder:
        os.kill(os.getpid(), signal.SIGTERM)
        child = spawn(["sh", "-c", "sleep 5"])
        forwarder.target(child.pid)
        _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
