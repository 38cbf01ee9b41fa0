"""request-key-daemon serving for real: the request boundary, bytes end to
end, programs from many threads, and keyutils' negate re-lookup.

The request boundary: a failure at any step of serving still ends the
request, at once, and the daemon keeps serving.

The daemon runs in this process (a thread, as ``run()`` runs in the real
one) for a container whose member, an Agent, makes the requests, so that
each step of serving can be made to fail once: every function the serving
path calls, from the kernel queries to the log line, is wrapped in turn to
raise on its next call (an OSError, then an exception no handler expects).
For each, the requester must get an answer (a key, ENOKEY or
EKEYREJECTED) well before the kernel's intercept timeout, the daemon must
log one line for the request, and it must go on serving.  Each injection
must actually fire: a point the chosen request never reaches fails the
test, so the list cannot rot into checks of nothing.
"""

from __future__ import annotations

import errno
import logging
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agents import Agent
from upcall_fixtures import host_request_key_conf, sysctl

import kcont.upcalls
from kcont.container import Container
from kcont.keys import USER, Key, Keyring, request_key
from request_key_daemon import conf, handlers, serve
from request_key_daemon.daemon import Daemon
from request_key_daemon.policy import Policy

# The kernel's intercept timeout for this module: an answer within
# ANSWER_WITHIN seconds cannot be the kernel's timeout.
INTERCEPT_TIMEOUT = 60
ANSWER_WITHIN = 15.0
SUB_PAYLOAD = "from-the-requesters-keyring"

CONFIG = textwrap.dedent("""\
    create user kcont-fi-st:*   * @static served-builtin
    create user kcont-fi-pipe:* * |/bin/cat
    create user kcont-fi-exec:* * /bin/keyctl instantiate %k %c %S
    create user kcont-fi-ks:*   * @static %{user:kcont-fi-sub}
    create user kcont-fi-neg:*  * |/bin/false
    negate user kcont-fi-neg:*  * |/bin/echo -n via-the-negate-line
    create user kcont-fi-raw:*  * |/bin/echo -n %d
    create user kcont-fi-self:* * @static %{user:kcont-fi-self:loop}
    """)
POLICY = {"default": "allow",
          "rule": [{"action": "deny", "description": "kcont-fi-deny:*",
                    "reason": "the test denies these"}]}

# What each kind of request should end with when nothing fails.
EXPECTED: dict[str, tuple[str, Any]] = {
    "st": ("payload", "served-builtin"),
    "pipe": ("payload", "the-callout"),
    "exec": ("payload", "the-callout"),
    "ks": ("payload", SUB_PAYLOAD),
    "neg": ("payload", "via-the-negate-line"),
    "none": ("errno", errno.ENOKEY),
    "deny": ("errno", errno.EKEYREJECTED),
}

# (name, owner, attribute, the request kinds that reach it, which calls fail)
POINTS: list[tuple[str, Any, str, tuple[str, ...], frozenset[int]]] = [
    # (The requester's name comes with the query: it has no step of its own.)
    ("query", kcont.upcalls, "query_auth", ("st",), frozenset({1})),
    ("assume", serve, "assume_authority", ("st", "exec"), frozenset({1})),
    ("assume-again", serve, "assume_authority", ("exec",), frozenset({2})),
    ("read-callout", Key, "read", ("st",), frozenset({1})),
    ("describe", Key, "describe_bytes", ("st",), frozenset({1})),
    ("policy", Policy, "decide", ("st", "deny"), frozenset({1})),
    ("record", serve.Server, "_record", ("st",), frozenset({1})),
    ("conf-files", conf.LineCache, "files", ("st",), frozenset({1})),
    ("line-cache", conf.LineCache, "__call__", ("st",), frozenset({1})),
    ("lookup", conf, "lookup", ("st",), frozenset({1})),
    ("expand", conf, "expand", ("st",), frozenset({1})),
    ("keysub", serve, "keysub_in_requesters_keyrings", ("ks",), frozenset({1})),
    ("builtin", handlers, "run_builtin", ("st",), frozenset({1})),
    ("pipe", handlers, "run_pipe", ("pipe", "neg"), frozenset({1})),
    ("negate-line", handlers, "run_pipe", ("neg",), frozenset({2})),
    ("exec", handlers, "run_exec", ("exec",), frozenset({1})),
    ("instantiate", serve, "instantiate", ("st", "pipe"), frozenset({1})),
    ("negate", serve, "negate", ("none",), frozenset({1})),
    ("negate-twice", serve, "negate", ("none",), frozenset({1, 2})),
    ("reject", serve, "reject", ("deny",), frozenset({1})),
    ("handoff", serve.Handoff, "finish", ("pipe", "exec"), frozenset({1})),
    ("log-line", serve.Outcome, "line", ("st",), frozenset({1})),
]
FAILURES: dict[str, Callable[[str], BaseException]] = {
    "OSError": lambda where: OSError(errno.EIO, f"injected at {where}"),
    "RuntimeError": lambda where: RuntimeError(f"injected at {where}"),
}


@dataclass
class FailCalls:
    """Wraps ``owner.attribute`` so that its calls numbered in ``calls``
    (1 is the next call) raise ``failure``."""

    owner: Any
    attribute: str
    failure: BaseException
    calls: frozenset[int]
    seen: int = 0
    fired: int = 0
    original: Any = field(default=None)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> FailCalls:
        self.original = self.owner.__dict__[self.attribute]
        original, this = self.original, self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with this.lock:
                this.seen += 1
                fire = this.seen in this.calls
                this.fired += fire
            if fire:
                raise this.failure
            return original(*args, **kwargs)

        setattr(self.owner, self.attribute, wrapper)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.attribute, self.original)


class Lines(logging.Handler):
    """The daemon's log lines, as the test reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Served:
    box: Container
    agent: Agent
    daemon: Daemon
    thread: threading.Thread
    log: Lines
    count: int = 0

    def request(self, kind: str, tag: str = "", callout: str = "the-callout",
                timeout: float = ANSWER_WITHIN) -> tuple[str, dict[str, Any]]:
        self.count += 1
        desc = f"kcont-fi-{kind}:{tag}{self.count}"
        result = self.agent.request("user", desc, callout=callout,
                                    keys=[("user", "kcont-fi-sub", SUB_PAYLOAD)]
                                    ).result(timeout=timeout)
        return desc, result


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    confdir = tmp_path_factory.mktemp("rk-boundary")
    (confdir / "request-key.conf").write_text(CONFIG)
    log = Lines()
    logger = logging.getLogger("request-key-daemon")
    logger.addHandler(log)
    logger.setLevel(logging.INFO)
    # The daemon possesses its queue (in the user keyring) through its
    # session; earlier tests leave this process in sessions of their own
    # that do not link the user keyring, so give it one that does.
    Keyring(USER).link(Keyring.join_session())
    with sysctl("kernel.keys.intercept_timeout", str(INTERCEPT_TIMEOUT)):
        box = Container("kcont-rkd-boundary", trusted=False)
        agent = Agent(box)
        server = serve.Server(confdir, Policy.from_dict(POLICY, "test policy"), deadline=25)
        daemon = Daemon(box.fd, server, types=("user",), workers=8)
        thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
        thread.start()
        try:
            yield Served(box, agent, daemon, thread, log)
        finally:
            daemon.stop()
            thread.join(timeout=60)
            agent.stop()
            box.close()
            logger.removeHandler(log)
    assert not thread.is_alive(), "the daemon did not stop"


def _idle(served: Served) -> None:
    """Wait until the daemon has nothing in hand, so that an injection can
    only fire on the request the test makes next."""
    deadline = time.monotonic() + 30
    while served.daemon.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not served.daemon.in_flight, served.daemon.in_flight


def _check_answered(served: Served, desc: str, result: dict[str, Any], why: str) -> None:
    assert "payload" in result or result.get("errno") in (errno.ENOKEY, errno.EKEYREJECTED), \
        (why, result)
    assert result["elapsed"] < ANSWER_WITHIN, (why, result)
    _idle(served)
    mine = [line for line in served.log.lines if f"desc='{desc}'" in line]
    assert len(mine) == 1, (why, mine or served.log.lines[-5:])
    assert "result='gone" not in mine[0] and "kind=gone" not in mine[0], (why, mine)
    assert served.thread.is_alive(), f"{why}: the daemon stopped"


def test_every_kind_is_served_when_nothing_fails(served: Served) -> None:
    for kind, (field_name, value) in EXPECTED.items():
        desc, result = served.request(kind)
        assert result.get(field_name) == value, (kind, result, served.log.lines[-3:])
        _check_answered(served, desc, result, kind)


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize(("point", "owner", "attribute", "kinds", "calls"), POINTS,
                         ids=[p[0] for p in POINTS])
def test_a_failure_at_each_step_still_ends_the_request(
        served: Served, failure: str, point: str, owner: Any, attribute: str,
        kinds: tuple[str, ...], calls: frozenset[int]) -> None:
    for kind in kinds:
        why = f"{failure} at {point}, request {kind}"
        _idle(served)
        with FailCalls(owner, attribute, FAILURES[failure](point), calls) as injected:
            desc, result = served.request(kind, f"{point}-")
            _idle(served)
        assert injected.fired == len(calls), f"{why}: fired {injected.fired} of {len(calls)}"
        _check_answered(served, desc, result, why)
    # That the daemon still serves as before is the next test's first
    # request, and test_every_kind_is_served_after_all_the_failures.


def test_every_kind_is_served_after_all_the_failures(served: Served) -> None:
    test_every_kind_is_served_when_nothing_fails(served)


def test_a_hostile_description_stays_in_its_field(served: Served) -> None:
    """A description holding the log's quote, a newline and field names is
    one field of one line."""
    desc = "kcont-fi-st:x' requester=1/sshd@0 decision='allow\nserial=1 result='forged"
    result = served.agent.request("user", desc, callout="x").result(timeout=ANSWER_WITHIN)
    assert result.get("payload") == "served-builtin", result
    _idle(served)
    mine = [line for line in served.log.lines if "sshd" in line]
    assert len(mine) == 1 and "\n" not in mine[0], mine
    assert "desc='kcont-fi-st:x\\x27 requester=1/sshd@0 decision=\\x27allow\\x0aserial=1 " \
        "result=\\x27forged'" in mine[0], mine


def test_a_key_lookup_that_waits_does_not_stop_serving(served: Served) -> None:
    """``%{user:X}`` for the very key being constructed waits for it (as it
    does under keyutils, until the kernel's timeout): on a worker, while
    the daemon goes on serving everyone else."""
    with sysctl("kernel.keys.intercept_timeout", "6"):
        waiting = served.agent.request("user", "kcont-fi-self:loop", callout="x")
        waiting.namespaces()
        time.sleep(0.5)
        _desc, result = served.request("st", "beside-the-wait-")
        assert result.get("payload") == "served-builtin" and result["elapsed"] < 5, result
        stuck = waiting.result(timeout=30)
    assert "errno" in stuck, stuck


def test_bytes_reach_the_program_unchanged(served: Served) -> None:
    """A description that is not UTF-8 is matched and passed on as its bytes,
    and logged escaped on one line."""
    desc = "kcont-fi-raw:\udcff\udcfe caf\u00e9"
    result = served.agent.request("user", desc, callout="x").result(timeout=ANSWER_WITHIN)
    assert bytes.fromhex(result["payload_hex"]) == desc.encode("utf-8", "surrogateescape")
    _idle(served)  # the log line is written after the answer, before the request leaves
    assert any("desc='kcont-fi-raw:\\xff\\xfe café'" in line for line in served.log.lines)


def test_programs_from_many_threads_at_once(served: Served) -> None:
    """24 requests at once, each an exec'd and a piped program, served by 8
    workers starting programs concurrently (rk-exec, no preexec_fn)."""
    for kind in ("exec", "pipe"):
        descs = [f"kcont-fi-{kind}:many-{i}" for i in range(24)]
        results = served.agent.request("user", descs, callout="the-callout").results(
            timeout=120)
        assert sorted(r["desc"] for r in results) == sorted(descs)
        assert all(r.get("payload") == "the-callout" for r in results), results


def test_negate_lookup_is_fresh_where_keyutils_keeps_the_failed_line(
        served: Served, session_keyring: int) -> None:
    """KEYUTILS_NEGATE_STALE_BEST, against the real /sbin/request-key: after
    ``|/bin/false`` fails, a ``negate`` line exactly as specific as the
    failed line runs in the daemon; keyutils keeps the failed line as the
    best and runs /bin/false again, so the requester gets ENOKEY.  With a
    strictly more specific negate line both run it: keyutils does look up
    op negate, the difference is only the stale bar."""
    exact = f"kcont-stale:exact-{served.count}"
    lines = (f"create user kcont-stale:* * |/bin/false\n"
             f"negate user kcont-stale:* * |/bin/echo -n via-the-negate-line\n"
             f"negate user {exact} * |/bin/echo -n via-the-negate-line\n")
    with host_request_key_conf(lines):
        with pytest.raises(OSError) as classic:
            request_key("user", f"kcont-stale:equal-{served.count}", "x")
        specific = request_key("user", exact, "x").read()
    assert classic.value.errno == errno.ENOKEY
    assert specific == b"via-the-negate-line"
    _desc, result = served.request("neg")
    assert result.get("payload") == "via-the-negate-line", result
