"""Serving one intercepted request, from its authorisation key to an answer.

The steps are those of keyutils' /sbin/request-key, driven by the kernel's
interception instead of a kernel-spawned helper: learn who asked
(KEYCTL_QUERY_REQUEST_KEY_AUTH), assume the authority, read the callout,
check the policy, pick the request-key.conf line, and run its program.
Every path ends the request: instantiated, negated (no line, a failed
handler, the ``negate`` op) or rejected (the policy said no); a request
that cannot be read at all is negated if it can still be reached.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kcont import upcalls
from kcont._binding import check, lib
from kcont.keys import Key, Keyring, assume_authority, instantiate, negate, reject
from request_key_daemon import conf, handlers
from request_key_daemon.policy import Decision, Inputs, Policy

log = logging.getLogger("request-key-daemon")

# How long a negated key answers later requests, as keyutils' negate line.
NEGATE_TIMEOUT = 30
# Default deadline for one request: below the kernel's intercept timeout.
DEFAULT_DEADLINE = 20.0


@dataclass(frozen=True)
class Outcome:
    """How one request ended, for the log line and the stats."""

    serial: int
    key_type: str
    description: str
    requester: str
    decision: str
    handler: str
    result: str
    seconds: float

    @property
    def kind(self) -> str:
        """instantiated, negated, rejected or gone: what the stats count.
        A program's own answer counts as instantiated (keyutils' programs
        may also negate; the daemon cannot tell without reading the key)."""
        word = self.result.split(maxsplit=1)[0]
        return "instantiated" if word == "answered" else word

    def line(self) -> str:
        return (f"serial={self.serial} type={self.key_type} desc={self.description!r} "
                f"requester={self.requester} decision={self.decision} "
                f"handler={self.handler!r} result={self.result} "
                f"latency_ms={self.seconds * 1000:.1f}")


def comm_of(pid: int) -> str:
    """The requester's command name, '' if it is gone or not visible here."""
    if pid <= 0:
        return ""
    try:
        fd = os.open(f"/proc/{pid}/comm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 64).decode(errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def run_exec(action: conf.Action, target: int, deadline: float) -> None:
    """Run a plain program as /sbin/request-key does: in a session keyring of
    its own holding the auth key, with the authority assumed, so that
    ``keyctl instantiate %k ...`` works unchanged."""
    def prepare() -> None:
        # As keyutils' request-key: the authority first, which makes the
        # auth key reachable (and possessed) as @-7 in the new session.
        check("keyctl_assume_authority", lib.keyctl_assume_authority(target))
        Keyring.join_session()
        check("keyctl_link", lib.keyctl_link(lib.KEY_SPEC_REQKEY_AUTH_KEY,
                                             lib.KEY_SPEC_SESSION_KEYRING))

    try:
        proc = subprocess.run([action.program, *action.argv[1:]], executable=action.program,
                              preexec_fn=prepare, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=deadline, check=False)
    except subprocess.TimeoutExpired:
        raise handlers.HandlerError(f"{action.program}: no answer in {deadline:.0f}s") \
            from None
    except (OSError, subprocess.SubprocessError) as err:
        raise handlers.HandlerError(f"{action.program}: {err}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise handlers.HandlerError(f"{action.program}: exit {proc.returncode}"
                                    + (f": {detail[0]}" if detail else ""))


@dataclass
class Handoff:
    """A request whose handler is a program (pipe or exec): the part of
    serving that may take up to the deadline, for a worker thread.

    ``Server.begin`` did everything before it on the thread that saw the
    request; ``finish`` assumes the authority again on its own thread (an
    authority belongs to a thread's credentials, not to the process).
    """

    server: Server
    action: conf.Action
    request: conf.Request
    done: Callable[[str, str, str], Outcome]

    def finish(self) -> Outcome:
        target = int(self.request.key)
        handler = self.action.where
        try:
            with assume_authority(target):
                try:
                    return self._run(target, handler)
                except handlers.HandlerError as err:
                    log.warning("handler failed: %s", err)
                    _negate_if_pending(target)
                    return self.done("allow", handler, f"negated ({err})")
        except OSError as err:
            # The authority could not be assumed again: the request ended
            # meanwhile (timed out, its record or queue went away).
            return self.done("allow", handler, f"gone ({err.strerror})")

    def _run(self, target: int, handler: str) -> Outcome:
        if self.action.pipe:
            instantiate(target, handlers.run_pipe(self.action.program, self.action.argv,
                                                  self.request.callout, self.server.deadline))
            return self.done("allow", handler, "instantiated")
        run_exec(self.action, target, self.server.deadline)
        # The kernel's helper path negates a key its helper left pending;
        # so do we.
        if _negate_if_pending(target):
            return self.done("allow", handler, "negated (the program did not answer)")
        return self.done("allow", handler, "answered by the program")


class Server:
    """What serving needs: config, policy, limits.

    ``begin`` is quick and runs on the thread that saw the request: it
    reads the request, checks the policy, picks the line and answers
    whatever needs no program (policy denials, negate and no-match lines,
    ``@`` built-ins).  Only program handlers come back as a ``Handoff`` for
    a worker, so the common in-process path costs no thread switch.
    """

    def __init__(self, config_dir: Path, policy: Policy, deadline: float = DEFAULT_DEADLINE,
                 container_name: str = "", decisions: Path | None = None) -> None:
        self.config_dir = config_dir
        self.policy = policy
        self.deadline = deadline
        self.container_name = container_name
        self.decisions = decisions
        self.lines = conf.LineCache()

    def _record(self, inputs: Inputs, decision: Decision) -> None:
        if self.decisions is not None:
            with self.decisions.open("a") as out:
                out.write(decision.to_json(inputs) + "\n")

    def begin(self, auth: int) -> Outcome | Handoff:
        start = time.monotonic()
        try:
            query = upcalls.query_auth(auth)
        except OSError as err:
            return Outcome(auth, "?", "?", "?", "-", "-", f"gone ({err.strerror})",
                           time.monotonic() - start)
        target = query.target_key
        comm = comm_of(query.requester_pid)
        requester = f"{query.requester_pid}/{comm}@{query.container_id}"
        try:
            with assume_authority(target) as authkey:
                callout = authkey.read().decode(errors="replace")
                described = Key(target).describe()
                return self._answer(query, callout, described.type,
                                    described.description, comm, requester, start)
        except OSError as err:
            # The authority could not be assumed: the request ended meanwhile.
            return Outcome(target, "?", "?", requester, "-", "-", f"gone ({err.strerror})",
                           time.monotonic() - start)

    def _answer(self, query: upcalls.AuthRequest, callout: str, key_type: str,
                description: str, comm: str, requester: str,
                start: float) -> Outcome | Handoff:
        target = query.target_key

        def done(decision: str, handler: str, result: str) -> Outcome:
            return Outcome(target, key_type, description, requester, decision, handler, result,
                           time.monotonic() - start)

        inputs = Inputs(query.operation, key_type, description, query.fsuid, comm,
                        query.container_id, self.container_name)
        decision = self.policy.decide(inputs)
        self._record(inputs, decision)
        if not decision.allowed:
            reject(target, errno.EKEYREJECTED, NEGATE_TIMEOUT)
            return done(f"deny ({decision.reason})", "-", "rejected")
        request = conf.Request(query.operation, key_type, description, callout, str(target),
                               str(query.fsuid), str(query.fsgid), str(query.thread_keyring),
                               str(query.process_keyring), str(query.session_keyring))
        try:
            action = conf.resolve(request, self.config_dir, reader=self.lines)
        except conf.ConfigError as err:
            log.warning("config error: %s", err)
            negate(target, NEGATE_TIMEOUT)
            return done("allow", "-", f"negated (config error: {err})")
        if action is None:
            negate(target, NEGATE_TIMEOUT)
            return done("allow", "-", "negated (no matching line)")
        if not action.builtin:
            return Handoff(self, action, request, done)
        try:
            payload = handlers.run_builtin(action.program, request, action.argv[1:])
            # A Python function cannot be killed: a built-in that overran
            # the deadline has its answer dropped, and the request negated.
            if time.monotonic() - start > self.deadline:
                raise handlers.HandlerError(f"{action.program}: no answer in "
                                            f"{self.deadline:.0f}s")
            instantiate(target, payload)
        except handlers.HandlerError as err:
            log.warning("handler failed: %s", err)
            _negate_if_pending(target)
            return done("allow", action.where, f"negated ({err})")
        return done("allow", action.where, "instantiated")


def _negate_if_pending(target: int) -> bool:
    """Negate ``target`` unless it was answered already; True if we negated."""
    try:
        negate(target, NEGATE_TIMEOUT)
    except OSError as err:
        # Answered: the authority went with the answer, or the key is no
        # longer under construction.
        if err.errno in (errno.EPERM, errno.EKEYREVOKED, errno.ENOKEY, errno.EACCES,
                         errno.EBUSY):
            return False
        raise
    return True
