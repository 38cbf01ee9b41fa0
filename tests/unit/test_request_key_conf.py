"""request-key.conf rules: a differential test against keyutils' own request-key.

keyutils' ``request-key -d -l -n -v -v -D DESC op key uid gid tk pk sk
callout`` reads ./request-key.d/*.conf and ./request-key.conf, picks a
line and prints the program and expanded argv without running anything:
the oracle.  Hypothesis writes config files and requests; the daemon's
answer must equal keyutils', with the exceptions named in conf.py, each
asserted here as the exact difference it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from request_key_daemon import conf

# keyutils is installed by `kcont-vm setup`; its absence is a failure, not a skip.
REQUEST_KEY = shutil.which("request-key", path="/sbin:/usr/sbin") or "/sbin/request-key"


@dataclass(frozen=True)
class Outcome:
    kind: str  # "action", "nomatch", "error"
    program: str = ""
    argv: tuple[str, ...] = ()
    pipe: bool = False


def oracle(request: conf.Request, conf_dir: Path) -> Outcome:
    desc = f"{request.key_type};{request.uid};{request.gid};3f010000;{request.description}"
    proc = subprocess.run(
        [REQUEST_KEY, "-d", "-l", "-n", "-v", "-v", "-D", desc, request.op, request.key,
         request.uid, request.gid, request.thread_keyring, request.process_keyring,
         request.session_keyring, request.callout],
        cwd=conf_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return Outcome("nomatch" if "No matching action" in proc.stderr else "error")
    run = re.search(r"^(Run|PipeThru) (.*)$", proc.stderr, re.M)
    assert run, proc.stderr
    argv = tuple(re.findall(r'^- argv\[\d+\] = "(.*)"$', proc.stderr, re.M))
    return Outcome("action", run.group(2), argv, run.group(1) == "PipeThru")


def ours(request: conf.Request, conf_dir: Path, matcher: conf.Matcher = conf.match,
         reader: conf.Reader = conf.read_lines) -> Outcome:
    try:
        action = conf.resolve(request, conf_dir, matcher=matcher, reader=reader)
    except conf.ConfigError:
        return Outcome("error")
    if action is None:
        return Outcome("nomatch")
    return Outcome("action", action.program, action.argv, action.pipe)


def keyutils_1_6_3_match(pattern: str, datum: str) -> int | None:
    """keyutils 1.6.3's match(), KEYUTILS_SUFFIX_BUG included: for a ``*``
    inside the pattern, the datum's tail is compared with the pattern's
    *start*."""
    star = pattern.find("*")
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


# --- strategies: small alphabets so that lines collide and ties happen ---

def pattern() -> st.SearchStrategy[str]:
    word = st.text("ab", min_size=0, max_size=3)
    return st.one_of(
        word.filter(bool),
        st.tuples(word, word).map(lambda t: f"{t[0]}*{t[1]}"),
    )


ARGS = st.sampled_from(["%k", "%d", "%c", "%o", "%t", "%u", "%g", "%T", "%P", "%S",
                        "%%k", "%kx", "x", "ab", "%Z", "%", "%{user:nokey}", "%{user}"])
PROGRAMS = st.sampled_from(["/bin/echo", "/usr/bin/keyctl", "|/bin/cat", "/x/y/z"])


@st.composite
def config_line(draw: st.DrawFn) -> str:
    shape = draw(st.sampled_from(["rule"] * 8 + ["comment", "blank", "indented", "short"]))
    if shape == "comment":
        return "# " + draw(pattern())
    if shape == "blank":
        return ""
    if shape == "indented":
        return "  " + draw(pattern())
    fields = [draw(pattern()) for _ in range(4)]
    if shape == "short":
        return " ".join(fields[:draw(st.integers(1, 4))])
    args = draw(st.lists(ARGS, max_size=4))
    sep = draw(st.sampled_from([" ", "\t", "  "]))
    return sep.join([*fields, draw(PROGRAMS), *args])


def config_file() -> st.SearchStrategy[str]:
    return st.lists(config_line(), min_size=1, max_size=6).map(lambda ls: "\n".join(ls) + "\n")


@st.composite
def requests(draw: st.DrawFn) -> conf.Request:
    word = st.text("ab", min_size=1, max_size=5)
    return conf.Request(op=draw(st.sampled_from(["a", "ab", "create"])), key_type=draw(word),
                        description=draw(word), callout=draw(word), key="123", uid="0",
                        gid="0", thread_keyring="1", process_keyring="2", session_keyring="3")


def write_config(root: Path, main: str, drop_ins: list[str]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    (root / "request-key.d").mkdir(parents=True)
    (root / "request-key.conf").write_text(main)
    for i, text in enumerate(drop_ins):
        (root / "request-key.d" / f"{i}.conf").write_text(text)
    return root


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(main=config_file(), drop_ins=st.lists(config_file(), max_size=2), request=requests())
def test_same_answer_as_keyutils(tmp_path: Path, main: str, drop_ins: list[str],
                                 request: conf.Request) -> None:
    root = write_config(tmp_path / "conf", main, drop_ins)
    expected = oracle(request, root)
    # Everything but the matcher is keyutils' behaviour exactly ...
    assert ours(request, root, keyutils_1_6_3_match) == expected
    # ... the daemon's cache gives what reading the files gives, first time
    # and from the cache ...
    cache = conf.LineCache()
    assert ours(request, root, keyutils_1_6_3_match, cache) == expected
    assert ours(request, root, keyutils_1_6_3_match, cache) == expected
    # ... and the daemon's own answer differs only by KEYUTILS_SUFFIX_BUG.
    if ours(request, root) != expected:
        text = main + "".join(drop_ins)
        assert re.search(r"[ab]\*[ab]", text), "a difference without an inner '*'"


def test_suffix_bug_is_the_named_exception(tmp_path: Path) -> None:
    """KEYUTILS_SUFFIX_BUG: keyutils' abc*def matches abcXabc, not abcXdef."""
    root = write_config(tmp_path / "conf", "create user abc*def * /bin/echo %d\n", [])

    def request(desc: str) -> conf.Request:
        return conf.Request("create", "user", desc, "-", "1")

    assert oracle(request("abcXdef"), root).kind == "nomatch"
    assert oracle(request("abcXabc"), root).kind == "action"
    assert ours(request("abcXdef"), root) == Outcome("action", "/bin/echo",
                                                     ("echo", "abcXdef"))
    assert ours(request("abcXabc"), root).kind == "nomatch"


def test_last_line_without_newline_is_read_whole(tmp_path: Path) -> None:
    """KEYUTILS_LAST_LINE_BUG: keyutils chops the last character, here
    turning ``%d`` into ``%`` ("Missing macro name")."""
    request = conf.Request("create", "user", "k", "-", "1")
    root = write_config(tmp_path / "conf", "create user k * /bin/echo %d", [])
    assert oracle(request, root).kind == "error"
    assert ours(request, root) == Outcome("action", "/bin/echo", ("echo", "k"))
    root = write_config(tmp_path / "conf", "create user k * /bin/echo %dx", [])
    assert oracle(request, root) == Outcome("action", "/bin/echo", ("echo", "k"))


def test_relative_program_is_a_config_error(tmp_path: Path) -> None:
    """KEYUTILS_RELATIVE_PROGRAM: keyutils dereferences NULL; we refuse."""
    root = write_config(tmp_path / "conf", "create user k * echo %d\n", [])
    request = conf.Request("create", "user", "k", "-", "1")
    assert oracle(request, root).kind == "error"
    with pytest.raises(conf.ConfigError, match="not an absolute path"):
        conf.resolve(request, root)


def test_builtin_handler_is_not_exec(tmp_path: Path) -> None:
    root = write_config(tmp_path / "conf", "create user k * @static hello %k\n", [])
    action = conf.resolve(conf.Request("create", "user", "k", "-", "77"), root)
    assert action is not None and action.builtin and action.argv == ("@static", "hello", "77")


def test_line_too_long_fails_the_lookup(tmp_path: Path) -> None:
    """4095 characters and the newline: keyutils' fgets() buffer is full."""
    prefix = "create user k * /bin/echo "
    line = prefix + "x" * (conf.MAX_LINE - len(prefix) - 1) + "\n"
    root = write_config(tmp_path / "conf", line, [])
    request = conf.Request("create", "user", "k", "-", "1")
    assert oracle(request, root).kind == "error"
    with pytest.raises(conf.ConfigError, match="Line too long"):
        conf.resolve(request, root)
    root = write_config(tmp_path / "conf", line.replace("x", "", 1), [])  # one shorter: fine
    assert oracle(request, root).kind == ours(request, root).kind == "action"


def test_keysub_expands_a_printable_payload(tmp_path: Path) -> None:
    root = write_config(tmp_path / "conf", "create user k * /bin/echo %{user:sub}\n", [])
    action = conf.resolve(conf.Request("create", "user", "k", "-", "1"), root,
                          keysub=lambda t, d: f"{t}/{d}")
    assert action is not None and action.argv == ("echo", "user/sub")
    with pytest.raises(conf.ConfigError, match="not printable"):
        conf.resolve(conf.Request("create", "user", "k", "-", "1"), root,
                     keysub=lambda t, d: "bad\x01")


def test_line_cache_sees_an_edit_and_a_removal(tmp_path: Path) -> None:
    """The daemon's cache must never serve a stale line: an edit (even one
    keeping the size) or a removed drop-in is seen by the next request."""
    request = conf.Request("create", "user", "k", "-", "1")
    root = write_config(tmp_path / "conf", "create user k * @static aa\n",
                        ["create user k * @static bb\n"])
    cache = conf.LineCache()
    assert ours(request, root, reader=cache).argv == ("@static", "bb")
    drop_in = root / "request-key.d" / "0.conf"
    drop_in.write_text("create user k * @static cc\n")          # same size
    assert ours(request, root, reader=cache).argv == ("@static", "cc")
    drop_in.unlink()
    assert ours(request, root, reader=cache).argv == ("@static", "aa")


def test_unreadable_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """A file that cannot be read fails the lookup (the daemon negates and
    logs it) instead of escaping as an OSError that would leave the request
    waiting for the kernel's timeout."""
    root = tmp_path / "conf"
    (root / "request-key.conf").mkdir(parents=True)      # exists, cannot be read
    request = conf.Request("create", "user", "k", "-", "1")
    for reader in (conf.read_lines, conf.LineCache()):
        with pytest.raises(conf.ConfigError, match=r"request-key\.conf: Is a directory"):
            conf.resolve(request, root, reader=reader)
