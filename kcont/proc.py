"""Parse /proc/containers: the caller's container and its descendants.

Pure text handling, no kernel needed, so the host tests cover it.  The
kernel escapes whitespace and backslashes in names as octal (``\\040``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROC_CONTAINERS = Path("/proc/containers")
HEADER = ("NAME", "ID", "USE", "FL", "TRUST", "OWNER", "GROUP")
CURRENT_MARK = "<current>"
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class ContainerInfo:
    """One line of /proc/containers."""

    name: str
    id: int
    use: int
    flags: str
    trusted: bool
    owner: int
    group: int
    current: bool

    @property
    def init_running(self) -> bool:
        return "I" in self.flags

    @property
    def dead(self) -> bool:
        return "D" in self.flags

    @property
    def kill_on_close(self) -> bool:
        return "K" in self.flags

    @property
    def own_user_ns(self) -> bool:
        return "U" in self.flags


def unescape(name: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), name)


def parse_line(line: str) -> ContainerInfo:
    """One data line; raises ValueError on anything else."""
    fields = line.split()
    current = fields[-1:] == [CURRENT_MARK]
    if current:
        fields = fields[:-1]
    if len(fields) != len(HEADER):
        raise ValueError(f"/proc/containers: expected {len(HEADER)} fields: {line!r}")
    name, ident, use, flags, trust, owner, group = fields
    if trust not in ("trusted", "untrusted") or len(flags) != 4:
        raise ValueError(f"/proc/containers: bad TRUST or FL field: {line!r}")
    return ContainerInfo(unescape(name), int(ident), int(use), flags, trust == "trusted",
                         int(owner), int(group), current)


def parse(text: str) -> list[ContainerInfo]:
    """All lines after the header."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or tuple(lines[0].split()) != HEADER:
        raise ValueError("/proc/containers: missing header")
    return [parse_line(ln) for ln in lines[1:]]


def read(path: Path = PROC_CONTAINERS) -> list[ContainerInfo]:
    return parse(path.read_text())
