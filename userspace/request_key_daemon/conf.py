"""request-key.conf: keyutils' matching and argument rules, as a library.

The daemon must pick the same line and build the same argv as keyutils'
``/sbin/request-key`` would for the same request and files, so that a
container's existing ``/etc/request-key.conf`` keeps working.  The rules
(keyutils 1.6.3, ``request-key.c``):

- files: ``request-key.d/*.conf`` in directory order (regular files whose
  name does not start with ``.``), then ``request-key.conf``;
- a line is ``<op> <type> <description> <callout-info> <program...>``;
  lines that are blank, start with ``#`` or start with whitespace are
  skipped; fields are split on whitespace;
- each of the four patterns holds at most one ``*``, matching any run of
  characters; its *wildness* is the number of characters it absorbed;
- the line with the smallest (op, type, description, callout) wildness
  tuple, compared left to right, wins; ties go to the line read first;
- a line whose first fields match but that ends early is a syntax error
  and fails the whole lookup (lines that stop matching earlier are skipped
  without looking at the rest);
- arguments that start with ``%`` are macros, expanded whole: ``%o %k %t
  %d %c %u %g %T %P %S``, ``%{type:description}`` (the payload of that key
  on the requester's keyrings), ``%%x`` gives ``%x``; a longer ``%xy`` is
  left as it is; an unknown single letter is an error;
- a program starting with ``|`` is piped: the callout on stdin, the
  payload from stdout.

Where keyutils 1.6.3 is wrong, this module is not; each difference is
named here, tested in tests/unit/test_request_key_conf.py and listed in
docs/request-key-daemon.md:

- KEYUTILS_SUFFIX_BUG: for ``abc*def``, keyutils compares the datum's tail
  with the *start* of the pattern, so it matches ``abcXabc`` and not
  ``abcXdef``.  Here ``abc*def`` means prefix ``abc`` and suffix ``def``,
  as request-key.conf(5) documents.
- KEYUTILS_LAST_LINE_BUG: keyutils drops the last character of a last line
  that has no newline.  Here the line is read whole.
- KEYUTILS_RELATIVE_PROGRAM: keyutils crashes (NULL + 1) on a program path
  without ``/``.  Here it is a configuration error, except for the
  daemon's own built-in handlers, whose names start with ``@``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINE = 4096
MAX_ARGS = 254
WHITESPACE = " \t\n\v\f\r"
BUILTIN_PREFIX = "@"
SINGLE_MACROS = {
    "o": "op", "k": "key", "t": "key_type", "d": "description", "c": "callout",
    "u": "uid", "g": "gid", "T": "thread_keyring", "P": "process_keyring",
    "S": "session_keyring",
}


class ConfigError(Exception):
    """A configuration problem that fails the lookup, as in keyutils.

    ``where`` is ``file:line`` like keyutils' messages.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Request:
    """What request-key is told about one upcall, all as strings, as on its argv."""

    op: str
    key_type: str
    description: str
    callout: str
    key: str
    uid: str = "0"
    gid: str = "0"
    thread_keyring: str = "0"
    process_keyring: str = "0"
    session_keyring: str = "0"


@dataclass(frozen=True)
class Action:
    """The program a request maps to, with its argv already expanded."""

    program: str
    argv: tuple[str, ...]
    pipe: bool
    where: str
    wildness: tuple[int, ...] = field(compare=False)

    @property
    def builtin(self) -> bool:
        """A handler served in the daemon's process (``@name``), not exec'd."""
        return self.program.startswith(BUILTIN_PREFIX)


def match(pattern: str, datum: str) -> int | None:
    """Characters the ``*`` absorbed (0 without one), or None for no match."""
    star = pattern.find("*")
    if star < 0:
        return 0 if pattern == datum else None
    prefix, suffix = pattern[:star], pattern[star + 1:]
    if len(datum) < len(prefix) + len(suffix):
        return None
    if not (datum.startswith(prefix) and datum.endswith(suffix)):
        return None
    return len(datum) - len(prefix) - len(suffix)


def _split_field(line: str, pos: int) -> tuple[str, int] | None:
    """The next whitespace-delimited field at or after ``pos``, and the position
    after it; None if the line ends before a field *and its terminator*."""
    while pos < len(line) and line[pos] in WHITESPACE:
        pos += 1
    start = pos
    while pos < len(line) and line[pos] not in WHITESPACE:
        pos += 1
    if pos >= len(line):
        return None
    return line[start:pos], pos + 1


def conf_files(conf_dir: Path | str) -> list[str]:
    """``request-key.d/*.conf`` in directory (readdir) order, then
    ``request-key.conf``: the order, and so the tie-breaking, of keyutils.
    (Plain strings and os calls: this runs for every request.)"""
    drop_in = os.path.join(conf_dir, "request-key.d")
    try:
        entries = list(os.scandir(drop_in))
    except FileNotFoundError:
        entries = []
    files = [entry.path for entry in entries
             if not entry.name.startswith(".") and entry.name.endswith(".conf")
             and entry.is_file(follow_symlinks=False)]
    main = os.path.join(conf_dir, "request-key.conf")
    if os.path.exists(main):
        files.append(main)
    return files


# A file's lines: None stands for a line too long, an error only once the
# lookup reaches it (as in keyutils, an earlier syntax error wins).
Lines = tuple[tuple[int, "str | None"], ...]


def read_lines(path: Path | str) -> Lines:
    """Numbered lines without their newline; keyutils reads 4096-byte lines.
    A file that cannot be read fails the lookup, as a syntax error does."""
    try:
        conf = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as err:
        raise ConfigError(str(path), err.strerror or str(err)) from None
    with conf:
        return tuple((number, None if len(raw) >= MAX_LINE else
                      raw.removesuffix(b"\n").decode("utf-8", "surrogateescape"))
                     for number, raw in enumerate(conf, start=1))


class LineCache:
    """Parsed files kept while their inode, size, mtime and ctime stay the same.

    keyutils reads the files again for every request; the daemon serves
    many, so it reads a file again only when a stat() says it changed.  An
    edit that keeps all four (same size, within one timestamp tick, in
    place) is the one change this can miss until the next one.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int, int, int], Lines]] = {}

    def __call__(self, path: Path | str) -> Lines:
        try:
            info = os.stat(path)
        except OSError as err:
            raise ConfigError(str(path), err.strerror or str(err)) from None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cached = self._files.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        lines = read_lines(path)
        self._files[str(path)] = (stamp, lines)
        return lines


def _words(text: str) -> list[str]:
    """Split on C isspace() only (str.split() also splits on Unicode spaces)."""
    words, current = [], []
    for char in text:
        if char in WHITESPACE:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


Match = tuple[str, str, tuple[int, ...]]


Matcher = Callable[[str, str], "int | None"]


Reader = Callable[[Path | str], Lines]


def lookup(request: Request, files: Iterable[Path | str],
           matcher: Matcher = match, reader: Reader = read_lines) -> Match | None:
    """The winning line's (where, command text, wildness) or None.

    Raises ConfigError as keyutils fails the lookup: on the first line
    that is too long, or that matches so far and then ends early.
    """
    best: tuple[tuple[int, ...], str, str] | None = None
    data = (request.op, request.key_type, request.description, request.callout)
    for path in files:
        for number, line in reader(path):
            if line is None:
                raise ConfigError(f"{path}:{number}", "Line too long")
            if not line or line[0] == "#" or line[0] in WHITESPACE:
                continue
            where = f"{path}:{number}"
            wildness: list[int] = []
            pos = 0
            for datum in data:
                found = _split_field(line, pos)
                if found is None:
                    raise ConfigError(where, "Syntax error")
                pattern, pos = found
                absorbed = matcher(pattern, datum)
                if absorbed is None:
                    break
                wildness.append(absorbed)
            else:
                command = line[pos:].lstrip(WHITESPACE)
                if not command:
                    raise ConfigError(where, "Syntax error")
                if best is None or tuple(wildness) < best[0]:
                    best = (tuple(wildness), where, command)
    return None if best is None else (best[1], best[2], best[0])


KeySub = Callable[[str, str], str]


def _no_keysub(key_type: str, description: str) -> str:
    raise LookupError(f"no key {key_type}:{description}")


def expand(request: Request, where: str, command: str,
           keysub: KeySub = _no_keysub) -> tuple[str, tuple[str, ...], bool]:
    """(program, argv, pipe) for a matched line's command text."""
    pipe = command.startswith("|")
    if pipe:
        command = command[1:]
    words = _words(command)
    if not words:
        raise ConfigError(where, "No command path")
    program, args = words[0], words[1:]
    if "/" not in program and not program.startswith(BUILTIN_PREFIX):
        raise ConfigError(where, f"program {program!r} is not an absolute path")
    argv = [program.rsplit("/", 1)[-1]]
    for arg in args:
        if len(argv) >= MAX_ARGS:
            raise ConfigError(where, "Too many arguments")
        argv.append(_expand_arg(request, where, arg, keysub))
    return program, tuple(argv), pipe


def _expand_arg(request: Request, where: str, arg: str, keysub: KeySub) -> str:
    if not arg.startswith("%"):
        return arg
    name = arg[1:]
    if not name:
        raise ConfigError(where, "Missing macro name")
    if name[0] == "%":
        return name
    if len(name) == 1:
        if name not in SINGLE_MACROS:
            raise ConfigError(where, "Unsupported macro")
        return str(getattr(request, SINGLE_MACROS[name]))
    if name[0] != "{":
        return arg
    body = name[1:]
    if ":" not in body:
        raise ConfigError(where, "Keysub macro lacks ':'")
    key_type, rest = body.split(":", 1)
    if "}" not in rest:
        raise ConfigError(where, "Unterminated keysub macro")
    description, trailing = rest.split("}", 1)
    if trailing:
        raise ConfigError(where, "Keysub macro has trailing rubbish")
    if not key_type:
        raise ConfigError(where, "Keysub type empty")
    if not description:
        raise ConfigError(where, "Keysub description empty")
    try:
        payload = keysub(key_type, description)
    except LookupError as err:
        raise ConfigError(where, f"Keysub key not found: {err}") from None
    if any(not " " <= char <= "~" for char in payload):
        raise ConfigError(where, "keysub data not printable")
    return payload


def resolve(request: Request, conf_dir: Path, keysub: KeySub = _no_keysub,
            matcher: Matcher = match, reader: Reader = read_lines) -> Action | None:
    """The action for ``request`` under ``conf_dir``, None if no line matches.

    ``matcher`` exists for the differential test, which swaps in keyutils'
    own (buggy) matcher to show that nothing else differs; ``reader`` is
    where the daemon puts its LineCache.
    """
    found = lookup(request, conf_files(conf_dir), matcher, reader)
    if found is None:
        return None
    where, command, wildness = found
    program, argv, pipe = expand(request, where, command, keysub)
    return Action(program, argv, pipe, where, wildness)
