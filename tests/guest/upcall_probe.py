"""The probes, attached once per guest run, and each test's share of
what they saw.

kcont-upcallsnoop runs as its own process (``--json``), as a developer
would run it: bcc's LLVM stays out of the pytest process, whose many forks
it would slow down, and the tests read the same output a person reads.
Compiling the program takes about a minute under TCG with KASAN, so it is
done once; a test takes a ``Window`` on the stream from its start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from kcont.probes.upcallsnoop import READY
from kcont.testing.trails import Trail, trails

ATTACH_TIMEOUT = 600.0


class Snoop:
    """A running ``kcont-upcallsnoop --json`` and every event it printed."""

    def __init__(self, *args: str) -> None:
        """Start the tool with ``--json`` and ``args`` (filters), and wait
        until it has attached.  Its stderr is read with bytes that are not
        UTF-8 escaped: bcc's compile can put a stray tool's message there
        (``rm: invalid option -- '\\xdd'`` was seen), which must not crash
        the reader."""
        self.proc = subprocess.Popen([sys.executable, "-m", "kcont.probes.upcallsnoop",
                                      "--json", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     errors="backslashreplace")
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.changed = threading.Condition()
        assert self.proc.stderr is not None and self.proc.stdout is not None
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                self.proc.wait()
                raise RuntimeError("kcont-upcallsnoop failed to attach: "
                                   + "".join(self.errors))
            if line.strip() == READY:
                break
            self.errors.append(line)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line)

    def window(self) -> Window:
        with self.changed:
            return Window(self, len(self.events))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


class Window:
    """The events from one point on: a test's own."""

    def __init__(self, snoop: Snoop, start: int) -> None:
        self.snoop = snoop
        self.start = start

    def events(self) -> list[dict[str, Any]]:
        with self.snoop.changed:
            return list(self.snoop.events[self.start:])

    def by_description(self, descriptions: Iterable[str]) -> dict[str, Trail]:
        """Each description's trail (all its events), for those routed."""
        wanted = set(descriptions)
        events = self.events()
        keys = {event["key"]: event["description"] for event in events
                if event["event"] == "route" and event["description"] in wanted}
        return {keys[key]: trail for key, trail in trails(events).items() if key in keys}

    def wait_ended(self, descriptions: list[str], timeout: float = 60.0) -> dict[str, Trail]:
        """Wait until every description was routed and its upcall ended (the
        ring buffer is read asynchronously); return their trails."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.by_description(descriptions)
            if all(d in found and found[d].ended for d in descriptions):
                return found
            if time.monotonic() > deadline:
                return found
            with self.snoop.changed:
                self.snoop.changed.wait(0.2)
