"""Parsing /proc/containers and undoing the kernel's escaping of names
(host: pure text, against a model of the kernel's escaping)."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kcont import proc

# lib/string_helpers.c (6.1), string_escape_mem(): the flags the series uses.
ESCAPE_SPACE = 0x01
ESCAPE_OCTAL = 0x04
SPACE_LETTERS = {ord("\n"): b"n", ord("\r"): b"r", ord("\t"): b"t", ord("\v"): b"v",
                 ord("\f"): b"f"}


def string_escape_mem(src: bytes, flags: int, only: bytes) -> bytes:
    """string_escape_mem() for ESCAPE_SPACE and ESCAPE_OCTAL, rule for rule:
    with a non-empty ``only``, a byte not in it passes through; then
    ESCAPE_SPACE turns \\n \\r \\t \\v \\f into a backslash and a letter;
    then ESCAPE_OCTAL turns any byte into a backslash and three octal
    digits; else the byte passes through."""
    out = bytearray()
    for c in src:
        if only and c not in only:
            out.append(c)
        elif flags & ESCAPE_SPACE and c in SPACE_LETTERS:
            out += b"\\" + SPACE_LETTERS[c]
        elif flags & ESCAPE_OCTAL:
            out += b"\\%03o" % c
        else:
            out.append(c)
    return bytes(out)


def proc_containers_escape(name: bytes) -> bytes:
    """containers_show(): string_escape_str(name, ..., ESCAPE_SPACE |
    ESCAPE_OCTAL, "\\\\") -- only a backslash is escaped (as \\134): "only"
    lets every other byte through, whitespace included."""
    return string_escape_mem(name, ESCAPE_SPACE | ESCAPE_OCTAL, b"\\")


def fdinfo_escape(name: bytes) -> bytes:
    """container_show_fdinfo(): seq_escape(m, name, " \\t\\n\\\\"), which is
    ESCAPE_OCTAL with that set as "only"."""
    return string_escape_mem(name, ESCAPE_OCTAL, b" \t\n\\")


def proc_line(name: bytes, ident: int, use: int, flags: str, trusted: bool, owner: int,
              group: int, current: bool) -> str:
    """One line as containers_show() prints it ("%-16s %-6llu %3u %s %-9s
    %5u %5u%s\\n", C's padding counting bytes), read back as kcont.proc
    reads the file."""
    line = b"%-16s %-6d %3d %s %-9s %5d %5d%s\n" % (
        proc_containers_escape(name), ident, use, flags.encode(),
        b"trusted" if trusted else b"untrusted", owner, group,
        b" <current>" if current else b"")
    return line.decode("utf-8", "surrogateescape")


# A container name: 1 to CONTAINER_NAME_MAX (63) bytes, no NUL, no '/'.
NAME_BYTES = st.binary(min_size=1, max_size=63).filter(lambda b: b"\0" not in b and b"/" not in b)
NAME_TEXT = st.text(st.characters(blacklist_characters="\0/", blacklist_categories=("Cs",)),
                    min_size=1, max_size=15)
NAMES = st.one_of(NAME_TEXT.map(str.encode).filter(lambda b: len(b) <= 63), NAME_BYTES)


def as_python(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


@given(NAMES)
@example("café".encode())
@example(b"a b\\c\td\ne")
@example(b"\\134")           # a name that is itself an escape
@example(b"\xff\xfe")         # not UTF-8
def test_unescape_undoes_both_escapings(name: bytes) -> None:
    assert proc.unescape(fdinfo_escape(name)) == as_python(name)
    assert proc.unescape(proc_containers_escape(name)) == as_python(name)
    # The same from text decoded as /proc is read (surrogateescape).
    assert proc.unescape(as_python(fdinfo_escape(name))) == as_python(name)


@given(NAMES)
def test_unescape_undoes_escape_space(name: bytes) -> None:
    """ESCAPE_SPACE is in /proc/containers' flags: were its "only" to name
    whitespace, \\t and the like would come out as letter escapes."""
    escaped = string_escape_mem(name, ESCAPE_SPACE | ESCAPE_OCTAL, b" \t\n\r\v\f\\")
    assert proc.unescape(escaped) == as_python(name)


def test_the_model_is_the_kernels() -> None:
    """Outputs worked by hand from lib/string_helpers.c."""
    assert fdinfo_escape("a b\\c\té\n".encode()) == b"a\\040b\\134c\\011\xc3\xa9\\012"
    assert proc_containers_escape(b"a b\\c\t\n") == b"a b\\134c\t\n"
    assert string_escape_mem(b"\t\x01", ESCAPE_SPACE | ESCAPE_OCTAL, b"\t\x01") == b"\\t\\001"


def test_unicode_escape_was_wrong() -> None:
    """What Container.name did before: decoding as unicode_escape turns the
    UTF-8 bytes of "café" into Latin-1 characters."""
    escaped = fdinfo_escape("café".encode()).decode("utf-8", "surrogateescape")
    assert escaped.encode().decode("unicode_escape") != "café"
    assert proc.unescape(escaped) == "café"


SAMPLE = """\
NAME             ID     USE FL   TRUST     OWNER GROUP
.init            1      312 I--- trusted       0     0 <current>
web              2        3 I--U untrusted  1000  1000
with space       5        1 -DK- untrusted     0     0
back\\134slash    6        1 ---- trusted       0     0
"""


def test_parse_sample() -> None:
    rows = proc.parse(SAMPLE)
    assert [r.name for r in rows] == [".init", "web", "with space", "back\\slash"]
    init, web, dead, _ = rows
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
    "2 3 I--U untrusted 0 0",
])
def test_bad_lines(line: str) -> None:
    with pytest.raises(ValueError):
        proc.parse_line(line)


# /proc/containers prints a newline in a name as it is, which ends the
# line; and the padding swallows a name's trailing spaces.  Those names
# cannot be read back from it (fdinfo has them whole).
LINE_NAMES = NAMES.filter(lambda b: b"\n" not in b and not b.endswith(b" "))


@given(name=LINE_NAMES, ident=st.integers(1, 2**64 - 1), use=st.integers(0, 2**32 - 1),
       flags=st.tuples(*(st.sampled_from([c, "-"]) for c in "IDKU")).map("".join),
       trusted=st.booleans(), owner=st.integers(0, 2**32 - 1),
       group=st.integers(0, 2**32 - 1), current=st.booleans())
@example(name=b"x 1 1 I--- trusted 0 0", ident=7, use=1, flags="----", trusted=False,
         owner=0, group=0, current=False)
def test_round_trip(name: bytes, ident: int, use: int, flags: str, trusted: bool, owner: int,
                    group: int, current: bool) -> None:
    row = proc.parse_line(proc_line(name, ident, use, flags, trusted, owner, group, current))
    assert (row.name, row.id, row.use, row.flags, row.trusted, row.owner, row.group,
            row.current) == (as_python(name), ident, use, flags, trusted, owner, group,
                             current)


@given(names=st.lists(LINE_NAMES, min_size=1, max_size=5))
def test_parse_keeps_other_line_breaks(names: list[bytes]) -> None:
    """Only "\\n" ends a line: a name with \\v, \\x1c or U+2028 is one row."""
    text = "NAME             ID     USE FL   TRUST     OWNER GROUP\n" + "".join(
        proc_line(n + "\v\u2028\x1c".encode(), i + 2, 1, "----", True, 0, 0, False)
        for i, n in enumerate(names))
    assert [r.name for r in proc.parse(text)] == [as_python(n) + "\v\u2028\x1c" for n in names]
