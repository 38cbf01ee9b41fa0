"""Each upcall's trail: every event kcont-upcallsnoop printed for one key.

Only the probe tests group events this way (the tool prints events as
they come), so it lives with the other test helpers; pure Python, so the
host tests check it without bcc or the binding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The event name of each list a Trail keeps.
_PLURAL = {"route": "routes", "assume": "assumes", "end": "ends", "complete": "completes",
           "timeout": "timeouts", "helper": "helpers"}


@dataclass
class Trail:
    """Everything seen of one upcall, keyed by its target key's serial."""

    key: int
    routes: list[dict[str, Any]] = field(default_factory=list)
    assumes: list[dict[str, Any]] = field(default_factory=list)
    ends: list[dict[str, Any]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    timeouts: list[dict[str, Any]] = field(default_factory=list)
    helpers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def route(self) -> dict[str, Any]:
        """The one route event (a test asserts there is exactly one)."""
        if len(self.routes) != 1:
            raise LookupError(f"key {self.key}: {len(self.routes)} route events")
        return self.routes[0]

    @property
    def ended(self) -> bool:
        """An end or a timeout was seen: the upcall is over."""
        return bool(self.ends or self.timeouts)


def trails(events: list[dict[str, Any]]) -> dict[int, Trail]:
    """Group decoded events (``--json`` lines) by key; helper spawns by the
    key on their argv, and only /sbin/request-key's (modprobe and other
    usermode helpers carry no key)."""
    out: dict[int, Trail] = {}
    for event in events:
        name = _PLURAL.get(event["event"])
        if name is None or (event["event"] == "helper"
                            and not event["path"].endswith("request-key")):
            continue
        trail = out.setdefault(event["key"], Trail(event["key"]))
        getattr(trail, name).append(event)
    return out
