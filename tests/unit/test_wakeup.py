"""The daemon loop's wake-up pipe: a signal must wake select() however it lands.

These run on the host: they test Python's and the kernel's signal delivery,
not the series.
"""

from __future__ import annotations

import select
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from request_key_daemon.wakeup import Wakeup

SIG = signal.SIGUSR1


@pytest.fixture
def wakeup() -> Iterator[Wakeup]:
    old = signal.getsignal(SIG)
    w = Wakeup()
    try:
        yield w
    finally:
        w.close()
        signal.signal(SIG, old)


def _readable(w: Wakeup, timeout: float) -> bool:
    return bool(select.select([w.fileno()], [], [], timeout)[0])


def test_a_signal_taken_by_another_thread_wakes_select(wakeup: Wakeup) -> None:
    """The kernel may hand a process signal to a worker thread; the main
    thread's select() is then not interrupted, and only the wake-up fd
    can end it."""
    seen: list[str] = []
    wakeup.install({SIG: lambda: seen.append(threading.current_thread().name)})
    worker = threading.Thread(
        target=lambda: (time.sleep(0.2), signal.pthread_kill(threading.get_ident(), SIG)),
        name="worker")
    start = time.monotonic()
    worker.start()
    woke = _readable(wakeup, 5.0)
    worker.join()
    assert woke and time.monotonic() - start < 4.0
    wakeup.drain()
    assert seen == ["MainThread"], "the Python handler runs on the main thread"


def test_a_signal_before_select_leaves_it_readable(wakeup: Wakeup) -> None:
    """The window the CI run fell into: the signal came before select()
    started.  The byte the C-level handler wrote is still there, so select()
    returns at once, whatever the Python handler did."""
    wakeup.install({SIG: lambda: None})
    signal.raise_signal(SIG)
    assert _readable(wakeup, 0)
    wakeup.drain()
    assert not _readable(wakeup, 0), "drain empties the pipe"


def test_wake_never_blocks_even_when_the_pipe_is_full(wakeup: Wakeup) -> None:
    for _ in range(100_000):     # far past a 64 KiB pipe
        wakeup.wake()
    assert _readable(wakeup, 0)
    wakeup.drain()
    assert not _readable(wakeup, 0)


def test_close_gives_the_wakeup_fd_back(wakeup: Wakeup) -> None:
    wakeup.install({SIG: lambda: None})
    installed = signal.set_wakeup_fd(-1)
    assert installed >= 0
    signal.set_wakeup_fd(installed)
    wakeup.close()
    assert signal.set_wakeup_fd(-1) == -1
