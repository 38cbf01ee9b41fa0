"""``kcont ls --json`` and the table, from /proc/containers text as the
kernel writes it (only a backslash escaped, as ``\\134``), hostile names
included."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcont import cli, proc

FIELDS = ["name", "id", "use", "flags", "trusted", "owner", "group", "current"]
SAMPLE = (
    "NAME             ID     USE FL   TRUST     OWNER GROUP\n"
    ".init            1      131 I--- trusted       0     0 <current>\n"
    "web tier\tété    7        3 I--U untrusted     0     0\n"
    "back\\134slash    9        1 ---K trusted    1000  1000\n"
)


def kernel_escape(name: bytes) -> bytes:
    """As the series' /proc/containers does (string_escape_str with only
    "\\"): a backslash as octal, every other byte as it is."""
    return name.replace(b"\\", b"\\134")


def test_json_is_an_array_of_objects_with_every_field() -> None:
    rows = json.loads(cli.format_json(proc.parse(SAMPLE)))
    assert isinstance(rows, list) and len(rows) == 3
    assert all(list(row) == FIELDS for row in rows)
    assert rows[0] == {"name": ".init", "id": 1, "use": 131, "flags": "I---", "trusted": True,
                       "owner": 0, "group": 0, "current": True}
    assert rows[1]["name"] == "web tier\tété" and rows[1]["trusted"] is False
    assert rows[1]["current"] is False and rows[1]["flags"] == "I--U"
    assert rows[2]["name"] == "back\\slash" and rows[2]["owner"] == 1000


def test_the_table_cannot_be_forged_by_a_name() -> None:
    table = cli.format_table(proc.parse(SAMPLE)).splitlines()
    assert len(table) == 4
    assert table[2].split()[0] == "web\\040tier\\011été"  # printable UTF-8 stays
    assert table[3].split()[0] == "back\\134slash"


def test_ls_json_option_parses() -> None:
    for args in (["ls", "--json"], ["ls", "-J"]):
        assert cli.make_parser().parse_args(args).json is True
    assert cli.make_parser().parse_args(["ls"]).json is False


# Any bytes a container name may hold (not / or NUL), less the two the
# kernel's line cannot carry: a newline (not escaped, it ends the line) and
# trailing spaces (not told from the padding).
NAMES = st.binary(min_size=1, max_size=63).filter(
    lambda b: not set(b) & set(b"/\0\n") and not b.endswith(b" "))


@given(NAMES)
def test_any_name_survives_json_and_the_table(name: bytes) -> None:
    """--json gives the name back (UTF-8, or surrogateescape for the rest)
    and the table shows it in one column of one line."""
    line = b"%-16s %-6u %3u %s %-9s %5u %5u\n" % (kernel_escape(name), 12, 2, b"I---",
                                                    b"untrusted", 0, 0)
    text = (b"NAME ID USE FL TRUST OWNER GROUP\n" + line).decode("utf-8", "surrogateescape")
    rows = proc.parse(text)
    decoded = json.loads(cli.format_json(rows))[0]["name"]
    assert decoded.encode("utf-8", "surrogateescape") == name
    table = cli.format_table(rows).splitlines()
    assert len(table) == 2 and len(table[1].split()) == 7, table
    assert table[1].isascii() or all(ch.isprintable() for ch in table[1])


@pytest.mark.parametrize("bad", ["", "NAME ID\n", SAMPLE + "x 1 2\n"])
def test_bad_proc_text_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        proc.parse(bad)
