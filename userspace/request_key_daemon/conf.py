"""request-key.conf: keyutils' matching and argument rules, as a library.

The daemon must pick the same line and build the same argv as keyutils'
``/sbin/request-key`` would for the same request and files, so that a
container's existing ``/etc/request-key.conf`` keeps working.  Everything
here is bytes, as in keyutils' C: a description, a callout or a config
line need not be UTF-8, and what is matched, counted and passed on is
exactly what the kernel and the files hold.  The rules (keyutils 1.6.3,
``request-key.c``):

- files: ``request-key.d/*.conf`` in directory order (regular files whose
  name does not start with ``.``), then ``request-key.conf``; a missing
  file or directory is skipped, one that cannot be opened fails the lookup;
- a line is ``<op> <type> <description> <callout-info> <program...>``;
  lines that are blank, start with ``#`` or start with whitespace are
  skipped; fields are split on C ``isspace()`` bytes;
- each of the four patterns holds at most one ``*``, matching any run of
  bytes; its *wildness* is the number of bytes it absorbed;
- the line with the smallest (op, type, description, callout) wildness
  tuple, compared left to right, wins; ties go to the line read first;
- a line whose first fields match but that ends early is a syntax error
  and fails the whole lookup (lines that stop matching earlier are skipped
  without looking at the rest);
- arguments that start with ``%`` are macros, expanded whole: ``%o %k %t
  %d %c %u %g %T %P %S``, ``%{type:description}`` (the payload of that key
  on the requester's keyrings, which must be printable ASCII), ``%%x``
  gives ``%x``; a longer ``%xy`` is left as it is; an unknown single letter
  is an error;
- a program starting with ``|`` is piped: the callout on stdin, the
  payload from stdout; if it fails, the lookup runs again with op
  ``negate`` (see ``negate_request``).

Where keyutils 1.6.3 is wrong, this module is not; each difference is
named here, tested in tests/unit/test_request_key_conf.py as the exact
difference, and listed in docs/request-key-daemon.md:

- KEYUTILS_SUFFIX_BUG: for ``abc*def``, keyutils compares the datum's tail
  with the *start* of the pattern, so it matches ``abcXabc`` and not
  ``abcXdef``.  Here ``abc*def`` means prefix ``abc`` and suffix ``def``,
  as request-key.conf(5) documents.
- KEYUTILS_LAST_LINE_BUG: keyutils drops the last byte of a last line
  that has no newline.  Here the line is read whole.
- KEYUTILS_RELATIVE_PROGRAM: keyutils crashes (NULL + 1) on a program path
  without ``/``, and on ``| prog`` (an empty program before the blank).
  Here both are configuration errors, except for the daemon's own
  built-in handlers, whose names start with ``@``.
- KEYUTILS_NUL_LINE: keyutils reads a line as a C string, so a NUL byte
  ends it there and the byte before the NUL is dropped as if it were the
  newline (a line starting with NUL writes out of bounds and crashes).
  Here a line holding a NUL fails the lookup when it is reached, as a line
  too long does.
- KEYUTILS_SPECIAL_FILE: keyutils reads a ``request-key.conf`` that is a
  FIFO or a device, and waits forever on a FIFO nobody writes.  Here a
  configuration file that is not a regular file fails the lookup.
- KEYUTILS_NEGATE_STALE_BEST: keyutils' ``negate`` re-lookup keeps the
  failed line's wildness as the bar to beat (and the old op's length), so
  a ``negate`` line applies only when strictly more specific than the
  failed line; otherwise the failed program runs a second time.  Here the
  ``negate`` lookup is a fresh one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

MAX_LINE = 4096
MAX_ARGS = 254
WHITESPACE = b" \t\n\v\f\r"      # C isspace() in the C locale
BUILTIN_PREFIX = b"@"
NEGATE_OP = b"negate"
SINGLE_MACROS = {
    ord("o"): "op", ord("k"): "key", ord("t"): "key_type", ord("d"): "description",
    ord("c"): "callout", ord("u"): "uid", ord("g"): "gid", ord("T"): "thread_keyring",
    ord("P"): "process_keyring", ord("S"): "session_keyring",
}


def to_bytes(value: str | bytes) -> bytes:
    """Bytes as given; a str as the bytes it came from (surrogateescape),
    so that nothing decoded from the kernel or a file is changed."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


# Printable ASCII but the log's quote and the backslash: bytes that
# printable() shows as they are.  Most types and descriptions are only these.
_PLAIN = re.compile(rb"[\x20-\x26\x28-\x5b\x5d-\x7e]*")


def printable(data: bytes) -> str:
    """``data`` for a log line: UTF-8 where it is, ``\\xNN`` for every other
    byte, for control characters and for ``'`` (the log's quote), ``\\\\``
    for a backslash.  One line, never lossy: two different byte strings
    never look the same, and none can close a quoted field.

    Runs several times for every request (the log line, the policy's
    inputs), so plain ASCII, the common case, takes one regex match in C
    instead of a loop over the characters in Python."""
    if _PLAIN.fullmatch(data):
        return data.decode("ascii")
    return escape_each(data)


def escape_each(data: bytes) -> str:
    """printable(), character by character: what it does for any byte
    string that is not plain ASCII."""
    out = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif not char.isprintable() or char in "\n'":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


class ConfigError(Exception):
    """A configuration problem that fails the lookup, as in keyutils.

    ``where`` is ``file:line`` (or the file) like keyutils' messages.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, init=False)
class Request:
    """What request-key is told about one upcall, as bytes, as on its argv.

    A str given for a field is taken as the bytes it encodes (UTF-8 with
    surrogateescape), so callers holding text need not convert; the
    constructor is written out so that its types say so.
    """

    op: bytes
    key_type: bytes
    description: bytes
    callout: bytes
    key: bytes
    uid: bytes = b"0"
    gid: bytes = b"0"
    thread_keyring: bytes = b"0"
    process_keyring: bytes = b"0"
    session_keyring: bytes = b"0"

    def __init__(self, op: str | bytes, key_type: str | bytes, description: str | bytes,
                 callout: str | bytes, key: str | bytes, uid: str | bytes = b"0",
                 gid: str | bytes = b"0", thread_keyring: str | bytes = b"0",
                 process_keyring: str | bytes = b"0",
                 session_keyring: str | bytes = b"0") -> None:
        given = (op, key_type, description, callout, key, uid, gid, thread_keyring,
                 process_keyring, session_keyring)
        # One update of the instance dict: a frozen dataclass's fields,
        # set without ten calls of object.__setattr__ for every request.
        self.__dict__.update(zip(_REQUEST_FIELDS, map(to_bytes, given), strict=True))

    def with_op(self, op: bytes) -> Request:
        """The same request under another op (keyutils' ``negate`` re-lookup)."""
        return Request(op, self.key_type, self.description, self.callout, self.key, self.uid,
                       self.gid, self.thread_keyring, self.process_keyring,
                       self.session_keyring)


# Request's field names in order, once: fields() is slow for every request.
_REQUEST_FIELDS = tuple(spec.name for spec in fields(Request))


@dataclass(frozen=True)
class Action:
    """The program a request maps to, with its argv already expanded."""

    program: bytes
    argv: tuple[bytes, ...]
    pipe: bool
    where: str
    wildness: tuple[int, ...] = field(compare=False)

    @property
    def builtin(self) -> bool:
        """A handler served in the daemon's process (``@name``), not exec'd."""
        return self.program.startswith(BUILTIN_PREFIX)


def match(pattern: bytes, datum: bytes) -> int | None:
    """Bytes the ``*`` absorbed (0 without one), or None for no match."""
    star = pattern.find(b"*")
    if star < 0:
        return 0 if pattern == datum else None
    prefix, suffix = pattern[:star], pattern[star + 1:]
    if len(datum) < len(prefix) + len(suffix):
        return None
    if not (datum.startswith(prefix) and datum.endswith(suffix)):
        return None
    return len(datum) - len(prefix) - len(suffix)


def _split_field(line: bytes, pos: int) -> tuple[bytes, int] | None:
    """The next whitespace-delimited field at or after ``pos``, and the position
    after it; None if the line ends before a field *and its terminator*."""
    end = len(line)
    while pos < end and line[pos] in WHITESPACE:
        pos += 1
    start = pos
    while pos < end and line[pos] not in WHITESPACE:
        pos += 1
    if pos >= end:
        return None
    return line[start:pos], pos + 1


def conf_files(conf_dir: Path | str) -> list[str]:
    """``request-key.d/*.conf`` in directory (readdir) order, then
    ``request-key.conf``: the order, and so the tie-breaking, of keyutils.
    A drop-in directory that exists but cannot be listed (a file, no
    permission) fails the lookup, as keyutils' "Cannot open" does.
    (Plain strings and os calls: this runs for every request.)"""
    drop_in = os.path.join(conf_dir, "request-key.d")
    try:
        with os.scandir(drop_in) as listing:
            entries = list(listing)
    except FileNotFoundError:
        entries = []
    except OSError as err:
        raise ConfigError(drop_in, f"Cannot open: {err.strerror or err}") from None
    files = [entry.path for entry in entries
             if not entry.name.startswith(".") and entry.name.endswith(".conf")
             and _is_regular(entry)]
    files.append(os.path.join(conf_dir, "request-key.conf"))
    return files


def _is_regular(entry: os.DirEntry[str]) -> bool:
    """keyutils keeps DT_REG entries only (and DT_UNKNOWN, which it then opens)."""
    try:
        return entry.is_file(follow_symlinks=False)
    except OSError:
        return False


class Line(NamedTuple):
    """One numbered line without its newline; ``error`` fails the lookup
    once the lookup reaches the line (an earlier syntax error wins, as in
    keyutils)."""

    number: int
    text: bytes
    error: str | None = None


Lines = tuple[Line, ...]


def split_lines(data: bytes) -> Lines:
    """A file's lines as the daemon reads them: keyutils' 4096-byte limit
    (newline included), the last line whole, a NUL byte an error."""
    raw_lines = data.split(b"\n")
    last_has_newline = raw_lines[-1] == b""
    if last_has_newline:
        raw_lines.pop()
    lines = []
    for index, text in enumerate(raw_lines):
        with_newline = len(text) + (1 if index < len(raw_lines) - 1 or last_has_newline else 0)
        error = "Line too long" if with_newline >= MAX_LINE else \
            "NUL byte in line" if b"\0" in text else None
        lines.append(Line(index + 1, text, error))
    return tuple(lines)


def _read(path: Path | str) -> tuple[os.stat_result, bytes] | None:
    """The file's stat and bytes; None if it does not exist (skipped, as
    keyutils skips ENOENT).  Never blocks on a FIFO (KEYUTILS_SPECIAL_FILE)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(str(path), f"Cannot open: {err.strerror or err}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(str(path), os.strerror(errno.EISDIR))
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(str(path), "not a regular file")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return info, b"".join(chunks)
    except OSError as err:
        raise ConfigError(str(path), err.strerror or str(err)) from None
    finally:
        os.close(fd)


def read_lines(path: Path | str) -> Lines:
    """Numbered lines of ``path`` (none if it does not exist).  A file that
    cannot be read fails the lookup, as a syntax error does."""
    found = _read(path)
    return () if found is None else split_lines(found[1])


# What says a directory changed: mode, inode, mtime and ctime.
Stamp = tuple[int, int, int, int]


# A timestamp this close to the moment it was read proves nothing yet: the
# file system's clock (coarse, a jiffy on 6.1; 2 s on FAT) may not have
# ticked since, so a change later in the same tick would leave every stamp
# as it is (git's "racily clean" rule).  What changed this recently is read
# again next time.  It assumes the file system stamps with this machine's
# clock: on a network file system whose server lags by more, or whose
# attributes the client caches (NFS's actimeo), a change can be missed until
# the next one, as the stamps cannot show it.
RACY_NS = 2_000_000_000


def _settled(now_ns: int, *stamps_ns: int) -> bool:
    return all(now_ns - stamp >= RACY_NS for stamp in stamps_ns)


def _stamp(info: os.stat_result) -> Stamp:
    return (info.st_mode, info.st_ino, info.st_mtime_ns, info.st_ctime_ns)


class LineCache:
    """Parsed files kept while their inode, size, mtime and ctime stay the
    same, and the file list kept while the drop-in directory's do.

    keyutils reads the files again for every request; the daemon serves
    many, so it reads a file again only when a stat() says it changed, and
    lists ``request-key.d`` again only when a stat() of it says so (adding,
    removing or renaming an entry changes the directory's mtime; a chmod,
    its ctime).  A change within the same timestamp tick as the read
    would keep all four, so nothing whose mtime or ctime is under two
    seconds old is kept (RACY_NS), on a local file system.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int, int, int], Lines]] = {}
        self._listings: dict[str, tuple[Stamp, Stamp | None, list[str]]] = {}
        self._parsed: dict[str, tuple[Lines, tuple[Parsed, ...]]] = {}
        self._held = threading.local()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """On this thread, take the configuration as it is at the first
        lookup and keep it until the block ends: no stat() for the
        lookups after the first.  The daemon holds it over the requests
        one wake-up brings (they were all queued before it looked), so a
        burst of requests costs the checks of one; a change to the files
        is seen from the next wake-up on.  Other threads are not held."""
        if getattr(self._held, "memo", None) is not None:
            yield
            return
        self._held.memo = {}
        try:
            yield
        finally:
            self._held.memo = None

    def refresh(self) -> None:
        """Forget what this thread's hold() kept, keeping the hold: for a
        lookup that keyutils would make later than the ones before it
        (the negate line after a failed program)."""
        if getattr(self._held, "memo", None) is not None:
            self._held.memo = {}

    def _held_or(self, kind: str, path: Path | str, now: Callable[[Path | str], Any]) -> Any:
        """now(path), or what it gave earlier in this thread's hold()."""
        memo: dict[tuple[str, str], Any] | None = getattr(self._held, "memo", None)
        if memo is None:
            return now(path)
        key = (kind, str(path))
        if key not in memo:
            memo[key] = now(path)
        return memo[key]

    def files(self, conf_dir: Path | str) -> list[str]:
        """files_now(), or what it gave earlier in the same hold()."""
        return list(self._held_or("files", conf_dir, self.files_now))

    def __call__(self, path: Path | str) -> Lines:
        """lines_now(), or what it gave earlier in the same hold()."""
        lines: Lines = self._held_or("lines", path, self.lines_now)
        return lines

    def files_now(self, conf_dir: Path | str) -> list[str]:
        """conf_files(conf_dir), from the last listing while the stat of the
        config directory (and of the drop-in directory, if there was one)
        is unchanged: one or two stat() calls instead of a directory read
        per request, and no exception raised when there is no drop-in
        directory (creating one changes the config directory's mtime).
        Anything unexpected (a directory that cannot be stat'ed, a drop-in
        that is not a directory) runs conf_files(), which says why it fails
        if it does, and is not cached."""
        key = str(conf_dir)
        drop_in = os.path.join(key, "request-key.d")
        now = time.time_ns()
        try:
            top = _stamp(os.stat(key))
            cached = self._listings.get(key)
            if cached is not None and cached[0] == top and (
                    cached[1] is None or cached[1] == _stamp(os.stat(drop_in))):
                return list(cached[2])
            try:
                inner: Stamp | None = _stamp(os.stat(drop_in))
            except FileNotFoundError:
                inner = None
        except OSError:
            self._listings.pop(key, None)
            return conf_files(key)
        files = conf_files(key)
        if (inner is None or stat.S_ISDIR(inner[0])) and \
                _settled(now, top[2], top[3], *(inner[2:] if inner else ())):
            self._listings[key] = (top, inner, files)
        else:
            self._listings.pop(key, None)
        return list(files)

    def parsed(self, path: Path | str) -> tuple[Parsed, ...]:
        """parse_lines() of this call's lines (self(path)), kept while the
        lines are the same object: a file is split once per version, not
        once per request."""
        lines = self(path)
        key = str(path)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is lines:
            return cached[1]
        parsed = parse_lines(path, lines)
        self._parsed[key] = (lines, parsed)
        return parsed

    def lines_now(self, path: Path | str) -> Lines:
        """The lines of ``path``, from the cache while its stat() is unchanged."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self._files.pop(str(path), None)
            return ()
        except OSError as err:
            raise ConfigError(str(path), err.strerror or str(err)) from None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cached = self._files.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        now = time.time_ns()
        found = _read(path)
        if found is None:
            return ()
        info = found[0]
        lines = split_lines(found[1])
        if _settled(now, info.st_mtime_ns, info.st_ctime_ns):
            self._files[str(path)] = ((info.st_ino, info.st_size, info.st_mtime_ns,
                                       info.st_ctime_ns), lines)
        else:
            self._files.pop(str(path), None)
        return lines


Match = tuple[str, bytes, tuple[int, ...]]


Matcher = Callable[[bytes, bytes], "int | None"]


Reader = Callable[[Path | str], Lines]


class Parsed(NamedTuple):
    """A line split once into what lookup() compares: its first four fields
    (fewer if it ends early) and the command after them (None if the line
    has fewer than four fields and their terminators).  ``error`` fails the
    lookup when reached, as Line.error does."""

    where: str
    error: str | None
    fields: tuple[bytes, ...]
    command: bytes | None


def parse_lines(path: Path | str, lines: Lines) -> tuple[Parsed, ...]:
    """The lines lookup() reads, comments and blank lines left out, split
    into fields the way it would split them for every request."""
    parsed = []
    for number, line, error in lines:
        where = f"{path}:{number}"
        if error is not None:
            parsed.append(Parsed(where, error, (), None))
            continue
        if not line or line[0] == 0x23 or line[0] in WHITESPACE:   # '#'
            continue
        fields: list[bytes] = []
        pos = 0
        while len(fields) < 4:
            found = _split_field(line, pos)
            if found is None:
                break
            fields.append(found[0])
            pos = found[1]
        command = line[pos:].lstrip(WHITESPACE) if len(fields) == 4 else None
        parsed.append(Parsed(where, None, tuple(fields), command))
    return tuple(parsed)


def lookup(request: Request, files: Iterable[Path | str],
           matcher: Matcher = match, reader: Reader = read_lines) -> Match | None:
    """The winning line's (where, command text, wildness) or None.

    Raises ConfigError as keyutils fails the lookup: on the first file that
    cannot be read, the first line that is too long or holds a NUL, or
    that matches so far and then ends early.  A LineCache reader gives its
    lines split once per version of the file (LineCache.parsed).
    """
    best: tuple[tuple[int, ...], str, bytes] | None = None
    data = (request.op, request.key_type, request.description, request.callout)
    for path in files:
        entries = reader.parsed(path) if isinstance(reader, LineCache) \
            else parse_lines(path, reader(path))
        for where, error, patterns, command in entries:
            if error is not None:
                raise ConfigError(where, error)
            wildness: list[int] = []
            for index, datum in enumerate(data):
                if index == len(patterns):
                    raise ConfigError(where, "Syntax error")
                absorbed = matcher(patterns[index], datum)
                if absorbed is None:
                    break
                wildness.append(absorbed)
            else:
                if not command:
                    raise ConfigError(where, "Syntax error")
                if best is None or tuple(wildness) < best[0]:
                    best = (tuple(wildness), where, command)
    return None if best is None else (best[1], best[2], best[0])


KeySub = Callable[[bytes, bytes], bytes]


def _no_keysub(key_type: bytes, description: bytes) -> bytes:
    raise LookupError(f"no key {printable(key_type)}:{printable(description)}")


def expand(request: Request, where: str, command: bytes,
           keysub: KeySub = _no_keysub) -> tuple[bytes, tuple[bytes, ...], bool]:
    """(program, argv, pipe) for a matched line's command text."""
    pipe = command.startswith(b"|")
    if pipe:
        command = command[1:]
    if not command or command[0] in WHITESPACE:
        # keyutils takes the empty word before the blank as the program and
        # crashes on it (KEYUTILS_RELATIVE_PROGRAM).
        raise ConfigError(where, "No command path")
    words = command.split()
    program, args = words[0], words[1:]
    if b"/" not in program and not program.startswith(BUILTIN_PREFIX):
        raise ConfigError(where, f"program '{printable(program)}' is not an absolute path")
    argv = [program.rsplit(b"/", 1)[-1]]
    for arg in args:
        if len(argv) >= MAX_ARGS:
            raise ConfigError(where, "Too many arguments")
        argv.append(_expand_arg(request, where, arg, keysub))
    return program, tuple(argv), pipe


def _expand_arg(request: Request, where: str, arg: bytes, keysub: KeySub) -> bytes:
    if not arg.startswith(b"%"):
        return arg
    name = arg[1:]
    if not name:
        raise ConfigError(where, "Missing macro name")
    if name[0] == 0x25:                  # '%': "%%x" is "%x"
        return name
    if len(name) == 1:
        if name[0] not in SINGLE_MACROS:
            raise ConfigError(where, "Unsupported macro")
        value: bytes = getattr(request, SINGLE_MACROS[name[0]])   # every field is bytes
        return value
    if name[0] != 0x7B:                  # '{'
        return arg
    body = name[1:]
    if b":" not in body:
        raise ConfigError(where, "Keysub macro lacks ':'")
    key_type, rest = body.split(b":", 1)
    if b"}" not in rest:
        raise ConfigError(where, "Unterminated keysub macro")
    description, trailing = rest.split(b"}", 1)
    if trailing:
        raise ConfigError(where, "Keysub macro has trailing rubbish")
    if not key_type:
        raise ConfigError(where, "Keysub type empty")
    if not description:
        raise ConfigError(where, "Keysub description empty")
    try:
        payload = keysub(key_type, description)
    except (LookupError, OSError) as err:
        raise ConfigError(where, f"Keysub key not found: {err}") from None
    if any(not 0x20 <= byte <= 0x7E for byte in payload):
        raise ConfigError(where, "keysub data not printable")
    return payload


def resolve(request: Request, conf_dir: Path | str, keysub: KeySub = _no_keysub,
            matcher: Matcher = match, reader: Reader = read_lines) -> Action | None:
    """The action for ``request`` under ``conf_dir``, None if no line matches.

    ``keysub`` looks up ``%{type:description}`` keys (the daemon's looks in
    the requester's keyrings, as keyutils' does); ``matcher`` exists for
    the differential test, which swaps in keyutils' own (buggy) matcher to
    show that nothing else differs; ``reader`` is where the daemon puts its
    LineCache.
    """
    found = lookup(request, conf_files(conf_dir), matcher, reader)
    if found is None:
        return None
    where, command, wildness = found
    program, argv, pipe = expand(request, where, command, keysub)
    return Action(program, argv, pipe, where, wildness)


def negate_request(request: Request) -> Request:
    """The request keyutils looks up again after a failed program: op
    ``negate`` (a fresh lookup here, see KEYUTILS_NEGATE_STALE_BEST)."""
    return request.with_op(NEGATE_OP)
