"""The attacker in a name: what a container's name may make others read.

A container's name is chosen by whoever creates it, and root reads it in
/proc/containers and in fdinfo.  Each row is one line whatever the name
holds (newline, spaces, a backslash, terminal escapes), the name field is
exactly the name escaped, and no name can look like another container's
row or carry the ``<current>`` marker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcont.container import Container, fdinfo
from kcont.proc import unescape

ROW = re.compile(rb"^(?P<name>\S+) +(?P<id>[0-9]+) +[0-9]+ [A-Z-]{4} +(un)?trusted +[0-9]+ +[0-9]+"
                 rb"(?P<current> <current>)?$")
FORGED = "x\n.init 1 9 I--- trusted 0 0 <current>\nx"

HOSTILE_NAMES = [
    FORGED,
    "a b",
    "tab\there",
    "back\\slash",
    "\x1b[2Jclear",
    "cr\rreturn",
    " lead",
    "x" * 63,
    " " * 63,
    "\\" * 63,
    "caf\u00e9 \u2014 dash",
]


def rows() -> list[bytes]:
    lines = Path("/proc/containers").read_bytes().split(b"\n")
    assert lines[-1] == b"", lines
    return lines[1:-1]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_hostile_name_is_one_escaped_field_of_its_own_row(name: str) -> None:
    with Container(name) as c:
        mine = []
        for row in rows():
            m = ROW.match(row)
            assert m, f"a row that is not a row: {row!r}"
            assert not (m["current"] and int(m["id"]) != 1), f"forged <current>: {row!r}"
            if int(m["id"]) == c.id:
                mine.append(m["name"])
        assert len(mine) == 1, mine
        assert unescape(mine[0]) == name
        assert not re.search(rb"[\x00-\x20\x7f]", mine[0]), mine[0]
        assert fdinfo(c.fd)["name"].encode("utf-8", "surrogateescape") == mine[0]


def test_the_name_field_ends_where_the_name_does() -> None:
    """The escaped name is terminated: a short name after a long one is
    not followed by what the longer left on the stack."""
    for name in ("y" * 63, "\\" * 63, "a", "b c"):
        with Container(name) as c:
            (row,) = [r for r in rows() if (m := ROW.match(r)) and int(m["id"]) == c.id]
            assert unescape(ROW.match(row)["name"]) == name  # type: ignore[index]
