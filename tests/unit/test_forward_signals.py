"""kcont run's signal rules while CMD runs (kcont.forward_signals), on a
plain child process: they are about this process's dispositions, which
need no kernel series to check."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from kcont.forward_signals import forwarding_to

TRAPS_INT = ["sh", "-c", 'trap "" INT QUIT; trap "exit 7" TERM; i=0; '
             'while [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; exit 3']


def test_ctrl_c_is_ignored_here_and_left_to_cmd() -> None:
    """A SIGINT and SIGQUIT to kcont (as a terminal sends the whole group)
    neither interrupt the wait nor end CMD: CMD's own status comes back."""
    child = subprocess.Popen(TRAPS_INT)
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
        child = subprocess.Popen(TRAPS_INT)
        with forwarding_to(child.pid):
            time.sleep(0.2)
            os.kill(os.getpid(), sig)
            _, status = os.waitpid(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == expect, sig
