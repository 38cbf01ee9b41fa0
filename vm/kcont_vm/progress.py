"""Progress of a kernel build, read from kbuild's ``  CC      path`` lines.

A bar on a terminal (rich), plain lines every 10% otherwise (CI logs).
The total is the object count of the previous build of the same
profile, or an estimate on the first build; the bar never goes past 99%
before make exits.
"""

from __future__ import annotations

import re
import sys
import time
from types import TracebackType

COMPILE = re.compile(r"^\s+(CC|AS)\s+\S")


def is_compile_step(line: str) -> bool:
    return COMPILE.match(line) is not None


class BuildProgress:
    """Context manager fed one make output line at a time."""

    def __init__(self, stage: str, expected: int, tty: bool | None = None) -> None:
        self.stage = stage
        self.expected = max(expected, 1)
        self.done = 0
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._last_pct = -10
        self._start = time.monotonic()
        self._bar = None
        self._task = None

    def __enter__(self) -> BuildProgress:
        if self.tty:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                 TextColumn("{task.fields[current]}"))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.stage, total=self.expected, current="")
        else:
            print(f"[{self.stage}] started", flush=True)
        return self

    def feed(self, line: str) -> None:
        if not is_compile_step(line):
            return
        self.done += 1
        shown = min(self.done, int(self.expected * 0.99))
        if self._bar is not None:
            self._bar.update(self._task, completed=shown, current=line.split()[-1][-40:])
            return
        pct = 100 * shown // self.expected
        if pct >= self._last_pct + 10:
            self._last_pct = pct - pct % 10
            elapsed = time.monotonic() - self._start
            print(f"[{self.stage}] {self._last_pct:3d}% ({self.done} objects, {elapsed:.0f}s)",
                  flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        elapsed = time.monotonic() - self._start
        if self._bar is not None:
            if exc_type is None:
                self._bar.update(self._task, completed=self.expected)
            self._bar.__exit__(exc_type, exc, tb)
        status = "done" if exc_type is None else "failed"
        print(f"[{self.stage}] {status}: {self.done} objects in {elapsed:.0f}s", flush=True)
