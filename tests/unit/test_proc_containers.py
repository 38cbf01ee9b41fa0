"""Parsing /proc/containers (host: pure text)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcont import proc

SAMPLE = """\
NAME             ID     USE FL   TRUST     OWNER GROUP
.init            1      312 I--- trusted       0     0 <current>
web              2        3 I--U untrusted  1000  1000
with\\040space    5        1 -DK- untrusted     0     0
"""


def test_parse_sample() -> None:
    rows = proc.parse(SAMPLE)
    assert [r.name for r in rows] == [".init", "web", "with space"]
    init, web, dead = rows
    assert init.current and init.trusted and init.init_running and init.id == 1
    assert not web.current and not web.trusted and web.own_user_ns and web.owner == 1000
    assert dead.dead and dead.kill_on_close and not dead.init_running and dead.use == 1


@pytest.mark.parametrize("text", ["", "garbage\n", "NAME ID USE FL TRUST OWNER\n"])
def test_missing_header(text: str) -> None:
    with pytest.raises(ValueError, match="missing header"):
        proc.parse(text)


@pytest.mark.parametrize("line", [
    "web 2 3 I--U",
    "web 2 3 I--U maybe 0 0",
    "web 2 3 I-U untrusted 0 0",
    "web x 3 I--U untrusted 0 0",
])
def test_bad_lines(line: str) -> None:
    with pytest.raises(ValueError):
        proc.parse_line(line)


def _escape(name: str) -> str:
    return "".join(f"\\{ord(ch):03o}" if ch in " \t\n\\" else ch for ch in name)


@given(name=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126,
                                           blacklist_characters="/"), min_size=1, max_size=63),
       ident=st.integers(1, 2**63), use=st.integers(0, 2**31),
       flags=st.tuples(*(st.sampled_from([c, "-"]) for c in "IDKU")).map("".join),
       trusted=st.booleans(), current=st.booleans())
def test_round_trip(name: str, ident: int, use: int, flags: str, trusted: bool,
                    current: bool) -> None:
    line = (f"{_escape(name):16} {ident:<6} {use:3} {flags} "
            f"{'trusted' if trusted else 'untrusted':9} {0:5} {0:5}"
            f"{' <current>' if current else ''}")
    row = proc.parse_line(line)
    assert (row.name, row.id, row.use, row.flags, row.trusted, row.current) == \
        (name, ident, use, flags, trusted, current)
