"""request-key.conf rules: a differential test against keyutils' own request-key.

keyutils' ``request-key -d -l -n -v -v -D DESC -- op key uid gid tk pk sk
callout`` reads ./request-key.d/*.conf and ./request-key.conf, picks a
line and prints the program and expanded argv without running anything:
the oracle.  Hypothesis writes config files (arbitrary bytes: non-ASCII,
NUL, control characters, overlong lines, drop-in directories in odd
states) and requests (arbitrary bytes but NUL, which no argv and no key
description can hold); the daemon's answer must equal keyutils', with the
exceptions named in conf.py, each asserted here as the exact difference
it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from request_key_daemon import conf

# keyutils is installed by `kcont-vm setup`; its absence is a failure, not a skip.
REQUEST_KEY = shutil.which("request-key", path="/sbin:/usr/sbin") or "/sbin/request-key"
RUN = re.compile(rb'(?:^|\n)(Run|PipeThru) (\S*)\n- argv\[0\] = "')


@dataclass(frozen=True)
class Outcome:
    kind: str  # "action", "nomatch", "error"
    program: bytes = b""
    argv: tuple[bytes, ...] = ()
    pipe: bool = False


def _argv_of(stderr: bytes, start: int) -> tuple[bytes, ...]:
    """The argv lines keyutils prints last: ``- argv[N] = "VALUE"``, where a
    VALUE may hold newlines and quotes, so each ends where the next begins."""
    rest, argv, index = stderr[start:], [], 1
    while True:
        separator = b'"\n- argv[%d] = "' % index
        cut = rest.find(separator)
        if cut < 0:
            assert rest.endswith(b'"\n'), rest[-80:]
            argv.append(rest[:-2])
            return tuple(argv)
        argv.append(rest[:cut])
        rest, index = rest[cut + len(separator):], index + 1


def oracle(request: conf.Request, conf_dir: Path) -> Outcome:
    desc = b";".join([request.key_type, request.uid, request.gid, b"3f010000",
                      request.description])
    proc = subprocess.run(
        [REQUEST_KEY, "-d", "-l", "-n", "-v", "-v", "-D", desc, "--", request.op, request.key,
         request.uid, request.gid, request.thread_keyring, request.process_keyring,
         request.session_keyring, request.callout],
        cwd=conf_dir, capture_output=True, check=False, timeout=30)
    if proc.returncode != 0:
        nomatch = proc.stderr.rstrip().endswith(b"No matching action")
        return Outcome("nomatch" if nomatch else "error")
    assert b"-- exec disabled --" in proc.stdout, proc
    runs = list(RUN.finditer(proc.stderr))
    assert runs, proc.stderr[-400:]
    run = runs[-1]
    argv = _argv_of(proc.stderr, run.end())
    return Outcome("action", run.group(2), argv, run.group(1) == b"PipeThru")


def ours(request: conf.Request, conf_dir: Path, matcher: conf.Matcher = conf.match,
         reader: conf.Reader = conf.read_lines) -> Outcome:
    try:
        action = conf.resolve(request, conf_dir, matcher=matcher, reader=reader)
    except conf.ConfigError:
        return Outcome("error")
    if action is None:
        return Outcome("nomatch")
    return Outcome("action", action.program, action.argv, action.pipe)


def keyutils_1_6_3_match(pattern: bytes, datum: bytes) -> int | None:
    """keyutils 1.6.3's match(), KEYUTILS_SUFFIX_BUG included: for a ``*``
    inside the pattern, the datum's tail is compared with the pattern's
    *start*."""
    star = pattern.find(b"*")
    if star < 0:
        return 0 if pattern == datum else None
    if len(datum) < len(pattern) - 1:
        return None
    if star == 0 or star == len(pattern) - 1:
        return conf.match(pattern, datum)
    tail = len(pattern) - star - 1
    if datum[:star] != pattern[:star] or datum[len(datum) - tail:] != pattern[:tail]:
        return None
    return len(datum) - (len(pattern) - 1)


def keyutils_1_6_3_reader(path: Path | str) -> conf.Lines:
    """keyutils 1.6.3's reading of a file, KEYUTILS_LAST_LINE_BUG and
    KEYUTILS_NUL_LINE included: fgets() into 4098 bytes, strlen() of that,
    then the last byte before the terminator dropped as the newline."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return ()
    except OSError as err:
        raise conf.ConfigError(str(path), err.strerror or str(err)) from None
    lines, pos, number = [], 0, 0
    while pos < len(data):
        number += 1
        newline = data.find(b"\n", pos, pos + conf.MAX_LINE + 1)
        end = min(len(data), pos + conf.MAX_LINE + 1 if newline < 0 else newline + 1)
        chunk, pos = data[pos:end], end
        text = chunk.split(b"\0", 1)[0]
        if len(text) >= conf.MAX_LINE:
            lines.append(conf.Line(number, b"", "Line too long"))
        elif not text:
            lines.append(conf.Line(number, b"", "crash: buf[-1] written"))
        else:
            lines.append(conf.Line(number, text[:-1]))
    return tuple(lines)


# --- strategies: small alphabets so that lines collide and ties happen, with
# --- non-ASCII, control and odd bytes among them

TOKENS = [b"a", b"b", b"\xc3\xa9", b"\xc3", b"\xff", b"\x01", b"\x7f", b"%", b'"']
DATA_TOKENS = [*TOKENS, b" ", b"\n", b"\t", b";", b"*"]


def field_bytes(min_size: int = 0, semicolon: bool = True) -> st.SearchStrategy[bytes]:
    """Request data: mostly from the small alphabet, sometimes any bytes but NUL."""
    tokens = DATA_TOKENS if semicolon else [t for t in DATA_TOKENS if t != b";"]
    small = st.lists(st.sampled_from(tokens), min_size=min_size, max_size=5).map(b"".join)
    wide = st.binary(min_size=min_size, max_size=12).map(lambda b: b.replace(b"\0", b"a"))
    if not semicolon:
        wide = wide.map(lambda b: b.replace(b";", b"a"))
    return st.one_of(small, small, small, wide)


def pattern() -> st.SearchStrategy[bytes]:
    word = st.lists(st.sampled_from(TOKENS), max_size=3).map(b"".join)
    return st.one_of(
        word.filter(bool),
        st.tuples(word, word).map(lambda t: t[0] + b"*" + t[1]),
        st.tuples(word, word, word).map(lambda t: t[0] + b"*" + t[1] + b"*" + t[2]),
    )


ARGS = st.sampled_from([b"%k", b"%d", b"%c", b"%o", b"%t", b"%u", b"%g", b"%T", b"%P", b"%S",
                        b"%%k", b"%kx", b"x", b"ab", b"%Z", b"%", b"%{user:nokey}", b"%{user}",
                        b"%{:x}", b"%{a:}", b"%{a:b}x", b"%{a:b", b"%\xff", b"\xc3\xa9",
                        b"%%", b'"q"'])
PROGRAMS = st.sampled_from([b"/bin/echo", b"/usr/bin/keyctl", b"|/bin/cat", b"/x/y/z",
                            b"| /bin/cat", b"echo", b"/bin/\xc3\xa9", b"|", b"rel/prog"])
SEPARATORS = st.sampled_from([b" ", b"\t", b"  ", b"\v", b"\f", b"\r", b" \t"])


@st.composite
def config_line(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["rule"] * 10 + ["comment", "blank", "indented", "short",
                                                  "junk", "nul", "long", "crlf"]))
    if shape == "comment":
        return b"# " + draw(pattern())
    if shape == "blank":
        return b""
    if shape == "indented":
        return draw(SEPARATORS) + draw(pattern())
    if shape == "junk":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    fields = [draw(pattern()) for _ in range(4)]
    if shape == "short":
        return b" ".join(fields[:draw(st.integers(1, 4))])
    args = draw(st.lists(ARGS, max_size=4))
    sep = draw(SEPARATORS)
    line = sep.join([*fields, draw(PROGRAMS), *args])
    if shape == "nul":
        at = draw(st.integers(0, len(line)))
        return line[:at] + b"\0" + line[at:]
    if shape == "long":
        # around keyutils' 4096-byte buffer, newline included
        return line + b" " + b"x" * max(0, draw(st.integers(4090, 4100)) - len(line))
    if shape == "crlf":
        return line + b"\r"
    return line


def config_file() -> st.SearchStrategy[bytes]:
    lines = st.lists(config_line(), min_size=1, max_size=6)
    return st.tuples(lines, st.booleans()).map(
        lambda t: b"\n".join(t[0]) + (b"\n" if t[1] else b""))


@st.composite
def requests(draw: st.DrawFn) -> conf.Request:
    op = draw(st.one_of(st.sampled_from([b"create", b"negate", b"a", b"ab"]), field_bytes()))
    return conf.Request(op=op, key_type=draw(field_bytes(1, semicolon=False)),
                        description=draw(field_bytes()), callout=draw(field_bytes()),
                        key=b"123", uid=b"0", gid=b"0", thread_keyring=b"1",
                        process_keyring=b"2", session_keyring=b"3")


DROP_IN_STATES = ("dir", "missing", "file", "odd-entries")
MAIN_STATES = ("file", "file", "file", "missing", "directory", "dangling-symlink")


def write_config(root: Path, main: bytes, drop_ins: list[bytes], drop_in_state: str = "dir",
                 main_state: str = "file") -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    main_path, drop_dir = root / "request-key.conf", root / "request-key.d"
    if main_state == "file":
        main_path.write_bytes(main)
    elif main_state == "directory":
        main_path.mkdir()
    elif main_state == "dangling-symlink":
        main_path.symlink_to(root / "nowhere")
    if drop_in_state == "file":
        drop_dir.write_bytes(main)
    elif drop_in_state in ("dir", "odd-entries"):
        drop_dir.mkdir()
        for i, text in enumerate(drop_ins):
            (drop_dir / f"{i}.conf").write_bytes(text)
    if drop_in_state == "odd-entries":
        (drop_dir / "sub.conf").mkdir()                       # a directory: skipped
        (drop_dir / "sub.conf" / "x.conf").write_bytes(b"create * * * /bin/sub\n")
        (drop_dir / ".hidden.conf").write_bytes(b"create * * * /bin/hidden\n")
        (drop_dir / ".conf").write_bytes(b"create * * * /bin/dotconf\n")
        (drop_dir / "notes.txt").write_bytes(b"create * * * /bin/txt\n")
        (drop_dir / "conf").write_bytes(b"create * * * /bin/short\n")
        (drop_dir / "target").write_bytes(b"create * * * /bin/link\n")
        (drop_dir / "link.conf").symlink_to(drop_dir / "target")   # a symlink: skipped
        (drop_dir / "\udcff\udcfe.conf").write_bytes(b"create * * * /bin/nonutf8name\n")
    return root


def named_differences(main: bytes, drop_ins: list[bytes]) -> set[str]:
    """Which of conf.py's named differences these files can show."""
    texts = [main, *drop_ins]
    found = set()
    if any(re.search(rb"[^\s*]\*[^\s*]", text) for text in texts):
        found.add("KEYUTILS_SUFFIX_BUG")
    if any(text and not text.endswith(b"\n") for text in texts):
        found.add("KEYUTILS_LAST_LINE_BUG")
    if any(b"\0" in text for text in texts):
        found.add("KEYUTILS_NUL_LINE")
    return found


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(main=config_file(), drop_ins=st.lists(config_file(), max_size=2), request=requests(),
       drop_in_state=st.sampled_from(DROP_IN_STATES), main_state=st.sampled_from(MAIN_STATES))
def test_same_answer_as_keyutils(tmp_path: Path, main: bytes, drop_ins: list[bytes],
                                 request: conf.Request, drop_in_state: str,
                                 main_state: str) -> None:
    root = write_config(tmp_path / "conf", main, drop_ins, drop_in_state, main_state)
    expected = oracle(request, root)
    # With keyutils' matcher and reader, everything is keyutils' behaviour exactly ...
    emulated = (keyutils_1_6_3_match, keyutils_1_6_3_reader)
    assert ours(request, root, *emulated) == expected
    # ... the daemon's cache gives what reading the files gives, first time
    # and from the cache ...
    cache = conf.LineCache()
    assert ours(request, root, reader=cache) == ours(request, root)
    assert ours(request, root, reader=cache) == ours(request, root)
    # ... and so does its listing of the files, first time and from the cache.
    for _ in range(2):
        try:
            listed: list[str] | str = conf.conf_files(root)
        except conf.ConfigError as err:
            listed = str(err)
        try:
            assert cache.files(root) == listed
        except conf.ConfigError as err:
            assert str(err) == listed
    # ... and the daemon's own answer differs only by the named differences.
    if ours(request, root) != expected:
        possible = named_differences(main if main_state == "file" else b"",
                                     drop_ins if drop_in_state in ("dir", "odd-entries")
                                     else [])
        assert possible, f"a difference no named difference explains: {expected}"


def test_suffix_bug_is_the_named_exception(tmp_path: Path) -> None:
    """KEYUTILS_SUFFIX_BUG: keyutils' abc*def matches abcXabc, not abcXdef."""
    root = write_config(tmp_path / "conf", b"create user abc*def * /bin/echo %d\n", [])

    def request(desc: bytes) -> conf.Request:
        return conf.Request(b"create", b"user", desc, b"-", b"1")

    assert oracle(request(b"abcXdef"), root).kind == "nomatch"
    assert oracle(request(b"abcXabc"), root).kind == "action"
    assert ours(request(b"abcXdef"), root) == Outcome("action", b"/bin/echo",
                                                      (b"echo", b"abcXdef"))
    assert ours(request(b"abcXabc"), root).kind == "nomatch"


def test_last_line_without_newline_is_read_whole(tmp_path: Path) -> None:
    """KEYUTILS_LAST_LINE_BUG: keyutils chops the last byte, here turning
    ``%d`` into ``%`` ("Missing macro name")."""
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo %d", [])
    assert oracle(request, root).kind == "error"
    assert ours(request, root) == Outcome("action", b"/bin/echo", (b"echo", b"k"))
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo %dx", [])
    assert oracle(request, root) == Outcome("action", b"/bin/echo", (b"echo", b"k"))


def test_nul_in_a_line_fails_the_lookup(tmp_path: Path) -> None:
    """KEYUTILS_NUL_LINE: keyutils reads up to the NUL and drops the byte
    before it, so ``... %dX<NUL>junk`` serves ``%d``; here the line fails
    the lookup once reached, and a NUL in a line never reached is harmless."""
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo %dX\0junk\n", [])
    assert oracle(request, root) == Outcome("action", b"/bin/echo", (b"echo", b"k"))
    with pytest.raises(conf.ConfigError, match="NUL byte in line"):
        conf.resolve(request, root)
    # A line starting with NUL: keyutils writes before its buffer and dies.
    root = write_config(tmp_path / "conf", b"\0create user k * /bin/echo\n", [])
    assert oracle(request, root).kind == ours(request, root).kind == "error"
    # After the winning line, in a file read later, the NUL line still fails
    # the lookup in both: keyutils reads every line.
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo %d\nx\0\n", [])
    assert ours(request, root).kind == "error"


def test_relative_program_is_a_config_error(tmp_path: Path) -> None:
    """KEYUTILS_RELATIVE_PROGRAM: keyutils dereferences NULL + 1 on a program
    without '/' and on ``| prog``; we refuse both as configuration errors."""
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    for command, message in ((b"echo %d", "not an absolute path"),
                             (b"| /bin/cat", "No command path"),
                             (b"|\t/bin/cat", "No command path")):
        root = write_config(tmp_path / "conf", b"create user k * " + command + b"\n", [])
        assert oracle(request, root).kind == "error"
        with pytest.raises(conf.ConfigError, match=message):
            conf.resolve(request, root)


def test_special_file_is_a_config_error(tmp_path: Path) -> None:
    """KEYUTILS_SPECIAL_FILE: a FIFO as request-key.conf blocks keyutils
    forever; here it fails the lookup at once."""
    root = write_config(tmp_path / "conf", b"", [], main_state="missing")
    os.mkfifo(root / "request-key.conf")
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([REQUEST_KEY, "-d", "-l", "-n", "create", "1", "0", "0", "1", "2", "3",
                        "-"], cwd=root, capture_output=True, timeout=1.0, check=False)
    for reader in (conf.read_lines, conf.LineCache()):
        with pytest.raises(conf.ConfigError, match="not a regular file"):
            conf.resolve(request, root, reader=reader)


def test_wildness_counts_bytes(tmp_path: Path) -> None:
    """Wildness is bytes: for ``ééx``, ``*x`` absorbs 4 bytes (2 characters)
    and ``é*`` 3 bytes (2 characters); counted in characters the two tie and
    the first line would win, counted in bytes the second wins, as in keyutils."""
    root = write_config(tmp_path / "conf", b"create user *x * /bin/first\n"
                        b"create user \xc3\xa9* * /bin/second\n", [])
    request = conf.Request(b"create", b"user", b"\xc3\xa9\xc3\xa9x", b"-", b"1")
    assert oracle(request, root).program == ours(request, root).program == b"/bin/second"
    action = conf.resolve(request, root)
    assert action is not None and action.wildness == (0, 0, 3, 1)


def test_non_utf8_data_pass_through_unchanged(tmp_path: Path) -> None:
    """A description and callout that are not UTF-8 reach the argv byte for byte."""
    root = write_config(tmp_path / "conf", b"create user * * /bin/echo %d %c\n", [])
    request = conf.Request(b"create", b"user", b"\xff\xfe\n\"x", b"\x80 \x01", b"1")
    expected = Outcome("action", b"/bin/echo", (b"echo", b"\xff\xfe\n\"x", b"\x80 \x01"))
    assert oracle(request, root) == ours(request, root) == expected


def test_drop_in_directory_that_is_a_file_fails_the_lookup(tmp_path: Path) -> None:
    """keyutils: "Cannot open request-key.d"; the daemon must fail the lookup
    (and negate), not raise NotADirectoryError out of serving."""
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo\n", [],
                        drop_in_state="file")
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    assert oracle(request, root).kind == "error"
    with pytest.raises(conf.ConfigError, match="Cannot open"):
        conf.resolve(request, root)


def test_builtin_handler_is_not_exec(tmp_path: Path) -> None:
    root = write_config(tmp_path / "conf", b"create user k * @static hello %k\n", [])
    action = conf.resolve(conf.Request(b"create", b"user", b"k", b"-", b"77"), root)
    assert action is not None and action.builtin
    assert action.argv == (b"@static", b"hello", b"77")


def test_line_too_long_fails_the_lookup(tmp_path: Path) -> None:
    """4095 bytes and the newline: keyutils' fgets() buffer is full."""
    prefix = b"create user k * /bin/echo "
    line = prefix + b"x" * (conf.MAX_LINE - len(prefix) - 1) + b"\n"
    root = write_config(tmp_path / "conf", line, [])
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    assert oracle(request, root).kind == "error"
    with pytest.raises(conf.ConfigError, match="Line too long"):
        conf.resolve(request, root)
    root = write_config(tmp_path / "conf", line.replace(b"x", b"", 1), [])  # one shorter
    assert oracle(request, root).kind == ours(request, root).kind == "action"


def test_keysub_expands_a_printable_payload(tmp_path: Path) -> None:
    root = write_config(tmp_path / "conf", b"create user k * /bin/echo %{user:sub}\n", [])
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    action = conf.resolve(request, root, keysub=lambda t, d: t + b"/" + d)
    assert action is not None and action.argv == (b"echo", b"user/sub")
    for payload in (b"bad\x01", b"caf\xc3\xa9", b"nul\0"):
        with pytest.raises(conf.ConfigError, match="not printable"):
            conf.resolve(request, root, keysub=lambda t, d, p=payload: p)


def test_negate_lookup_is_fresh(tmp_path: Path) -> None:
    """KEYUTILS_NEGATE_STALE_BEST: after a failed program the lookup runs
    with op ``negate``; here a negate line as specific as the failed
    create line applies (keyutils would keep the failed line and run it
    again, see conf.py)."""
    root = write_config(tmp_path / "conf", b"create user * * |/bin/false\n"
                        b"negate user * * /bin/keyctl negate %k 30 %S\n", [])
    request = conf.Request(b"create", b"user", b"k", b"-", b"1", session_keyring=b"5")
    first = conf.resolve(request, root)
    again = conf.resolve(conf.negate_request(request), root)
    assert first is not None and first.pipe and first.wildness == again.wildness
    assert again.argv == (b"keyctl", b"negate", b"1", b"30", b"5")


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A clock 2 s ahead, so that what the test just wrote counts as
    settled and the cache keeps it (the racily-clean rule would not);
    returns the paths conf._read reads, to tell a cache hit from a read."""
    real, reads = time.time_ns, []
    monkeypatch.setattr(conf.time, "time_ns", lambda: real() + 2 * conf.RACY_NS)
    read = conf._read

    def counted(path: Path | str) -> Any:
        reads.append(Path(path).name)
        return read(path)

    monkeypatch.setattr(conf, "_read", counted)
    return reads


def test_line_cache_sees_an_edit_and_a_removal(tmp_path: Path, settled: list[str]) -> None:
    """The daemon's cache must never serve a stale line: an edit (even one
    keeping the size) or a removed drop-in is seen by the next request;
    and nothing unchanged is read twice."""
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    root = write_config(tmp_path / "conf", b"create user k * @static aa\n",
                        [b"create user k * @static bb\n"])
    cache = conf.LineCache()
    assert ours(request, root, reader=cache).argv == (b"@static", b"bb")
    assert sorted(settled) == ["0.conf", "request-key.conf"]
    assert ours(request, root, reader=cache).argv == (b"@static", b"bb")
    assert len(settled) == 2                                       # from the cache
    drop_in = root / "request-key.d" / "0.conf"
    drop_in.write_bytes(b"create user k * @static cc\n")          # same size
    assert ours(request, root, reader=cache).argv == (b"@static", b"cc")
    assert settled[2:] == ["0.conf"]                               # only what changed
    drop_in.unlink()
    assert ours(request, root, reader=cache).argv == (b"@static", b"aa")


def test_unreadable_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """A file that cannot be read fails the lookup (the daemon negates and
    logs it) instead of escaping as an OSError that would leave the request
    waiting for the kernel's timeout."""
    root = write_config(tmp_path / "conf", b"", [], main_state="directory")
    request = conf.Request(b"create", b"user", b"k", b"-", b"1")
    assert oracle(request, root).kind == "error"
    for reader in (conf.read_lines, conf.LineCache()):
        with pytest.raises(conf.ConfigError, match=r"request-key\.conf: Is a directory"):
            conf.resolve(request, root, reader=reader)


@pytest.mark.parametrize(("data", "shown"), [
    (b"plain", "plain"), (b"caf\xc3\xa9", "café"), (b"\xff\xfe", "\\xff\\xfe"),
    (b"a\nb", "a\\x0ab"), (b"back\\x41", "back\\\\x41"), (b"\x1b[31m", "\\x1b[31m"),
])
def test_printable_is_one_line_and_never_ambiguous(data: bytes, shown: str) -> None:
    assert conf.printable(data) == shown


@given(st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8",
                                                                            "surrogatepass")))
def test_printable_fast_path_is_the_same_escape(data: bytes) -> None:
    """The plain-ASCII shortcut shows exactly what the character-by-character
    escape shows, for every byte string."""
    assert conf.printable(data) == conf.escape_each(data)


def test_the_cached_listing_follows_every_change_to_the_drop_in_directory(
        tmp_path: Path) -> None:
    """A file added, removed or renamed, or the directory made unlistable or
    replaced, is seen at the next request, as keyutils (which lists it for
    every request) sees it."""
    root = write_config(tmp_path / "conf", b"", [b"a\n"])
    drop = root / "request-key.d"
    cache = conf.LineCache()

    def agree() -> list[str]:
        listed = cache.files(root)
        assert listed == conf.conf_files(root)
        return [Path(path).name for path in listed]

    assert agree() == ["0.conf", "request-key.conf"]
    (drop / "1.conf").write_bytes(b"b\n")
    assert sorted(agree()) == ["0.conf", "1.conf", "request-key.conf"]
    (drop / "0.conf").unlink()
    assert agree() == ["1.conf", "request-key.conf"]
    (drop / "1.conf").rename(drop / "1.conf.off")
    assert agree() == ["request-key.conf"]
    (drop / "1.conf.off").rename(drop / "2.conf")
    assert agree() == ["2.conf", "request-key.conf"]
    shutil.rmtree(drop)
    drop.write_bytes(b"")                       # a file where the directory was
    with pytest.raises(conf.ConfigError, match="Cannot open"):
        cache.files(root)
    drop.unlink()
    assert agree() == ["request-key.conf"]
    drop.mkdir()
    (drop / "3.conf").write_bytes(b"c\n")
    assert agree() == ["3.conf", "request-key.conf"]
    if os.geteuid() != 0:                       # root lists a mode-000 directory
        drop.chmod(0)
        with pytest.raises(conf.ConfigError, match="Cannot open"):
            cache.files(root)
        drop.chmod(0o755)


def test_a_drop_in_directory_created_later_is_seen(tmp_path: Path) -> None:
    """No drop-in directory when first listed (the cached case that stats
    only the config directory), then one made, filled and removed."""
    root = write_config(tmp_path / "conf", b"", [], drop_in_state="none")
    cache = conf.LineCache()
    assert cache.files(root) == conf.conf_files(root) == [str(root / "request-key.conf")]
    assert cache.files(root) == [str(root / "request-key.conf")]
    (root / "request-key.d").mkdir()
    (root / "request-key.d" / "a.conf").write_bytes(b"x\n")
    assert cache.files(root) == conf.conf_files(root)
    assert len(cache.files(root)) == 2
    shutil.rmtree(root / "request-key.d")
    assert cache.files(root) == [str(root / "request-key.conf")]


@given(st.binary(max_size=30), st.binary(max_size=30))
def test_printable_is_injective(one: bytes, two: bytes) -> None:
    if one != two:
        assert conf.printable(one) != conf.printable(two)
    assert "\n" not in conf.printable(one)


def test_a_hold_keeps_one_configuration_and_ends_with_the_block(tmp_path: Path) -> None:
    """Inside hold(), the first lookup's files and lines are kept (a burst
    of requests pays for one check); the next hold, and any other thread,
    sees the change at once."""
    import threading

    root = write_config(tmp_path / "conf", b"create user a * /bin/a\n", [], drop_in_state="none")
    main = root / "request-key.conf"
    cache = conf.LineCache()
    request = conf.Request(b"create", b"user", b"a", b"-", b"1")

    def program() -> bytes | None:
        found = conf.lookup(request, cache.files(root), reader=cache)
        return None if found is None else found[1]

    seen_elsewhere: list[bytes | None] = []
    with cache.hold():
        assert program() == b"/bin/a"
        main.write_bytes(b"create user a * /bin/changed-longer\n")
        (root / "request-key.d").mkdir()
        assert program() == b"/bin/a"                   # held
        assert cache.files(root) == [str(main)]
        other = threading.Thread(target=lambda: seen_elsewhere.append(program()))
        other.start()
        other.join()
        with cache.hold():                              # nested: the same hold
            assert program() == b"/bin/a"
        cache.refresh()                                 # the negate re-lookup's
        assert program() == b"/bin/changed-longer"
    assert seen_elsewhere == [b"/bin/changed-longer"]   # another thread: not held
    assert program() == b"/bin/changed-longer"          # the hold ended
    with cache.hold():
        assert program() == b"/bin/changed-longer"


def test_what_changed_within_the_last_second_is_read_again(tmp_path: Path) -> None:
    """The racily-clean rule: a file or listing whose mtime or ctime is
    under RACY_NS old is not kept, since a change later in the same clock
    tick would leave its stamps as they are; once older, it is kept."""
    root = write_config(tmp_path / "conf", b"create user a * /bin/a\n", [b"x\n"])
    main, drop = root / "request-key.conf", root / "request-key.d"
    cache = conf.LineCache()
    cache(main)
    cache.files(root)
    assert str(main) not in cache._files and str(root) not in cache._listings
    old = time.time_ns() - 2 * conf.RACY_NS
    for path in (main, drop, root):
        os.utime(path, ns=(old, old))
    # ctime cannot be set back: pretend the clock has moved on instead.
    later = time.time_ns() + 2 * conf.RACY_NS
    real_time_ns = time.time_ns
    try:
        time.time_ns = lambda: later  # type: ignore[assignment]
        cache(main)
        cache.files(root)
    finally:
        time.time_ns = real_time_ns  # type: ignore[assignment]
    assert str(main) in cache._files and str(root) in cache._listings
