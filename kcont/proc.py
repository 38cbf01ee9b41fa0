"""Parse /proc/containers: the caller's container and its descendants.

Pure text handling, no kernel needed, so the host tests cover it.  Also
the one place that undoes the kernel's escaping of container names
(``unescape``), for /proc/containers and for a container fd's fdinfo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROC_CONTAINERS = Path("/proc/containers")
HEADER = ("NAME", "ID", "USE", "FL", "TRUST", "OWNER", "GROUP")
CURRENT_MARK = "<current>"
# What the kernel writes for a byte it escapes: ``\ooo`` for every byte of
# a name that is not printable ASCII, and for the space and the backslash
# (container_escape_name(), the same for fdinfo and /proc/containers).
# ``\n`` ``\r`` ``\t`` ``\v`` ``\f`` are still read, as kernels before
# that escaping wrote them.
_ESCAPE = re.compile(rb"\\(?:([0-3][0-7]{2})|([nrtvf]))")
_SPACE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"f": b"\f"}
# One data line as containers_show() prints it:
# "%-16s %-6llu %3u %s %-9s %5u %5u%s\n".  An escaped name has no
# whitespace; the fields are still taken from the right, so that the line
# of a kernel that left spaces in names is read too.
_LINE = re.compile(r"(?P<name>.+?) +(?P<id>[0-9]+) +(?P<use>[0-9]+) (?P<flags>[A-Za-z-]{4}) "
                   r"(?P<trust>trusted|untrusted) +(?P<owner>[0-9]+) +(?P<group>[0-9]+)"
                   r"(?P<current> <current>)?", re.S)


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


def unescape(name: bytes | str) -> str:
    """A container name as the kernel escaped it, back to the name.

    The kernel escapes bytes, not characters: a name is UTF-8 (or any
    bytes but NUL and '/'), and ``\\ooo`` is one byte of it.  So the
    escapes become bytes first and the whole is decoded once; a name that
    is not UTF-8 keeps its bytes as surrogates (``surrogateescape``), as
    os.fsdecode() does with a file name.  A str argument is taken as
    decoded the same way (the text of /proc/containers, say).
    """
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name

    def byte(match: re.Match[bytes]) -> bytes:
        octal, space = match.groups()
        return bytes([int(octal, 8)]) if octal else _SPACE[space]

    return _ESCAPE.sub(byte, raw).decode("utf-8", "surrogateescape")


def parse_line(line: str) -> ContainerInfo:
    """One data line; raises ValueError on anything else."""
    match = _LINE.fullmatch(line.rstrip("\n"))
    if match is None:
        raise ValueError(f"/proc/containers: not a container line: {line!r}")
    return ContainerInfo(unescape(match["name"]), int(match["id"]), int(match["use"]),
                         match["flags"], match["trust"] == "trusted", int(match["owner"]),
                         int(match["group"]), match["current"] is not None)


def parse(text: str) -> list[ContainerInfo]:
    """All lines after the header.  Lines end at a newline only: a name may
    hold any other line break (VT, NEL, U+2028), which str.splitlines()
    would take for the end of its line."""
    lines = [ln for ln in text.split("\n") if ln.strip(" ")]
    if not lines or tuple(lines[0].split()) != HEADER:
        raise ValueError("/proc/containers: missing header")
    return [parse_line(ln) for ln in lines[1:]]


def read(path: Path = PROC_CONTAINERS) -> list[ContainerInfo]:
    """/proc/containers; a name that is not UTF-8 keeps its bytes (unescape)."""
    return parse(path.read_bytes().decode("utf-8", "surrogateescape"))
