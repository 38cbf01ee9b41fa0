"""Serving one intercepted request, from its authorisation key to an answer.

The steps are those of keyutils' /sbin/request-key, driven by the kernel's
interception instead of a kernel-spawned helper: learn who asked
(KEYCTL_QUERY_REQUEST_KEY_AUTH), assume the authority, read the callout,
check the policy, pick the request-key.conf line (``%{type:desc}`` looked
up in the requester's keyrings), and run its program; if a program fails,
look up op ``negate`` and run that line, as keyutils does.

The request boundary: every path ends the request, instantiated, negated
(no line, a failed handler, a ``negate`` line, a config error, *any*
exception while serving) or rejected (the policy said no), with one log
line saying why.  Only a request that ended before we could answer it
(timed out, its record or queue went away) is logged as ``gone``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kcont import upcalls
from kcont.admission import Webhook
from kcont.keys import Key, assume_authority, auth_target, instantiate, negate, reject, request_key
from request_key_daemon import conf, handlers
from request_key_daemon.policy import Decision, Inputs, PolicyEngine

log = logging.getLogger("request-key-daemon")

# How long a key the daemon negates answers later requests: the kernel's
# key_negative_timeout, what a request gets when /sbin/request-key fails.
NEGATE_TIMEOUT = 60
# Default deadline for one request: below the kernel's intercept timeout.
DEFAULT_DEADLINE = 20.0


@dataclass(frozen=True)
class Outcome:
    """How one request ended, for the log line and the stats."""

    serial: int
    key_type: bytes
    description: bytes
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
        """One line, whatever the fields hold: every field is escaped
        (conf.printable), so no description, comm, path or error text can
        end the line or forge another field."""
        def text(value: str) -> str:
            return conf.printable(conf.to_bytes(value))

        return (f"serial={self.serial} type={conf.printable(self.key_type)} "
                f"desc='{conf.printable(self.description)}' "
                f"requester={text(self.requester)} decision='{text(self.decision)}' "
                f"handler='{text(self.handler)}' result='{text(self.result)}' "
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
        return os.read(fd, 64).decode(errors="surrogateescape").removesuffix("\n")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _why(err: BaseException) -> str:
    """An exception as the reason in a log line."""
    if isinstance(err, handlers.HandlerError | conf.ConfigError):
        return str(err)
    if isinstance(err, OSError) and err.strerror:
        return f"{type(err).__name__}: {err.strerror}"
    return f"{type(err).__name__}: {err}"


def end_unanswered(target: int) -> str:
    """Negate ``target`` if it is still under construction (authority held);
    reject it if negating fails.  Returns the verb for the log line:
    "negated", or "gone" if the request had ended already."""
    answers: tuple[Callable[[], None], ...] = (
        lambda: negate(target, NEGATE_TIMEOUT),
        lambda: reject(target, errno.ENOKEY, NEGATE_TIMEOUT))
    for answer in answers:
        try:
            answer()
        except OSError as err:
            if err.errno in ANSWERED:
                return "gone"
            continue
        except Exception:   # the boundary: try the next answer
            continue
        return "negated"
    return "gone"


# What an answer fails with once the request was answered or ended.
ANSWERED = (errno.EPERM, errno.EKEYREVOKED, errno.ENOKEY, errno.EACCES, errno.EBUSY)


def names_of(target: int) -> tuple[bytes, bytes]:
    """The key's type and description for a log line, ``?`` if unreadable."""
    try:
        described = Key(target).describe_bytes()
    except Exception:   # for the log only
        return b"?", b"?"
    return described.type, described.description


def end_with_authority(target: int) -> str:
    """end_unanswered() from a thread that does not hold the authority."""
    try:
        with assume_authority(target):
            return end_unanswered(target)
    except Exception:   # cannot assume it: the request has ended
        return "gone"


def _negate_if_pending(target: int) -> bool:
    """Negate ``target`` unless it was answered already; True if we negated."""
    return end_unanswered(target) == "negated"


def keysub_in_requesters_keyrings(key_type: bytes, description: bytes) -> bytes:
    """keyutils' ``%{type:description}``: ``request_key()`` with no callout
    while holding the authority, so that the requester's keyrings are
    searched and nothing is constructed; the key's payload."""
    return request_key(key_type, description, None).read()


Done = Callable[[str, str, str], Outcome]


def on_worker() -> bool:
    """True on a worker thread (the daemon's pool), where blocking is allowed."""
    return threading.current_thread().name.startswith(WORKER_PREFIX)


WORKER_PREFIX = "serve"


@dataclass
class Handoff:
    """The part of serving that may take up to the deadline (a program, or
    the admission webhook's review), for a worker thread.

    ``Server.begin`` did everything before it on the thread that saw the
    request; ``finish`` assumes the authority again on its own thread (an
    authority belongs to a thread's credentials, not to the process) and
    runs ``step``, and the steps it leads to (the ``negate`` line's).
    """

    request: conf.Request
    done: Done
    where: str
    step: Callable[[], Outcome | Handoff]

    def finish(self) -> Outcome:
        target = int(self.request.key)
        try:
            with assume_authority(target):
                try:
                    outcome: Outcome | Handoff = self
                    while isinstance(outcome, Handoff):   # at most the negate line's
                        outcome = outcome.step()
                    return outcome
                except Exception as err:   # the request boundary
                    verb = end_unanswered(target)
                    return self.done("allow", self.where, f"{verb} ({_why(err)})")
        except Exception as err:
            # The authority could not be assumed again: the request ended
            # meanwhile (timed out, its record or queue went away), or
            # assuming failed for another reason, which one more try tells.
            return self.done("allow", self.where,
                             f"{end_with_authority(target)} ({_why(err)})")


class Server:
    """What serving needs: config, policy, limits.

    ``begin`` is quick and runs on the thread that saw the request: it
    reads the request, checks the policy, picks the line and answers
    whatever needs no program (policy denials, negate and no-match lines,
    ``@`` built-ins).  Only program handlers come back as a ``Handoff`` for
    a worker, so the common in-process path costs no thread switch.
    """

    def __init__(self, config_dir: Path, policy: PolicyEngine,
                 deadline: float = DEFAULT_DEADLINE, container_name: str = "",
                 decisions: Path | None = None, webhook: Webhook | None = None) -> None:
        self.config_dir = config_dir
        self.policy = policy
        self.webhook = webhook
        self.deadline = deadline
        self.container_name = container_name
        self.decisions = decisions
        self.lines = conf.LineCache()

    def _record(self, inputs: Inputs, decision: Decision) -> None:
        if self.decisions is not None:
            with self.decisions.open("a") as out:
                out.write(decision.to_json(inputs, self.policy.engine) + "\n")

    def begin(self, auth: int) -> Outcome | Handoff:
        """Serve the request behind auth key ``auth`` as far as it is quick."""
        start = time.monotonic()
        try:
            query = upcalls.query_auth(auth)
        except Exception as err:   # the request boundary: end it without its details
            return self._end_unqueried(auth, err, start)
        target = query.target_key
        requester = f"{query.requester_pid}/?@{query.container_id}"
        key_type = description = b"?"

        def done(decision: str, handler: str, result: str) -> Outcome:
            return Outcome(target, key_type, description, requester, decision, handler,
                           result, time.monotonic() - start)

        try:
            with assume_authority(target) as authkey:
                try:
                    # The kernel's record of the requester's name, taken when
                    # it asked; /proc only on a kernel that does not report it.
                    comm = query.requester_comm if upcalls.query_reports_comm() \
                        else comm_of(query.requester_pid)
                    requester = f"{query.requester_pid}/{comm}@{query.container_id}"
                    # keyutils takes the callout as a C string (strlen()).
                    callout = authkey.read().split(b"\0", 1)[0]
                    described = Key(target).describe_bytes()
                    key_type, description = described.type, described.description
                    return self._answer(query, callout, key_type, description, comm, done)
                except Exception as err:   # the request boundary
                    if description == b"?":
                        key_type, description = names_of(target)
                    verb = end_unanswered(target)
                    return done("-", "-", f"{verb} ({_why(err)})")
        except Exception as err:
            # The authority could not be assumed: the request ended meanwhile,
            # or assuming failed for another reason, which one more try tells.
            key_type, description = names_of(target)
            return done("-", "-", f"{end_with_authority(target)} ({_why(err)})")

    def abandon(self, auth: int, err: BaseException) -> Outcome:
        """The last resort for a request whose serving failed outside the
        boundaries above (a bug): end it from its auth key alone."""
        return self._end_unqueried(auth, err, time.monotonic())

    def _end_unqueried(self, auth: int, err: BaseException, start: float) -> Outcome:
        """The request could not be queried: find its key from the auth key's
        description and negate it, or call it gone if that fails too."""
        try:
            target = auth_target(Key(auth))
        except Exception:   # the auth key is gone with its request
            return Outcome(auth, b"?", b"?", "?", "-", "-", f"gone ({_why(err)})",
                           time.monotonic() - start)
        verb = end_with_authority(target)
        return Outcome(target, *names_of(target), "?", "-", "-",
                       f"{verb} (cannot serve the request: {_why(err)})",
                       time.monotonic() - start)

    def _answer(self, query: upcalls.AuthRequest, callout: bytes, key_type: bytes,
                description: bytes, comm: str, done: Done) -> Outcome | Handoff:
        """The line that would serve the request, then the policy (which
        sees that line), then the webhook if any, then the line's program."""
        target = query.target_key
        request = conf.Request(query.operation, key_type, description, callout, str(target),
                               str(query.fsuid), str(query.fsgid), str(query.thread_keyring),
                               str(query.process_keyring), str(query.session_keyring))
        found, config_error = self.lookup(request)
        inputs = Inputs(query.operation, key_type.decode("utf-8", "surrogateescape"),
                        description.decode("utf-8", "surrogateescape"), query.fsuid, comm,
                        query.container_id, self.container_name, query.fsgid,
                        conf.printable(conf.to_bytes(found[0])) if found else "",
                        conf.printable(found[1]) if found else "")
        decision = self.policy.decide(inputs)
        self._record(inputs, decision)
        if not decision.allowed:
            reject(target, errno.EKEYREJECTED, NEGATE_TIMEOUT)
            return done(f"deny ({decision.reason})", "-", "rejected")
        webhook = self.webhook
        if webhook is not None:
            def review() -> Outcome | Handoff:
                verdict = webhook.review("KeyRequest", "keyrequests", "CREATE",
                                         conf.printable(key_type + b":" + description)[:253],
                                         {"spec": inputs.document()}, query.fsuid, query.fsgid)
                if not verdict.allowed:
                    reject(target, errno.EKEYREJECTED, NEGATE_TIMEOUT)
                    return done(f"deny ({verdict.line()})", "-", "rejected")

                def reviewed(decision: str, handler: str, result: str) -> Outcome:
                    # the log line says who allowed it: the webhook, or its
                    # failure policy
                    said = f"allow ({verdict.line()})" if decision == "allow" else decision
                    return done(said, handler, result)

                return self.serve_found(request, target, found, config_error, reviewed, False)
            return Handoff(request, done, "-", review)
        return self.serve_found(request, target, found, config_error, done, negating=False)

    def lookup(self, request: conf.Request) -> tuple[conf.Match | None, conf.ConfigError | None]:
        """The winning line (not yet expanded: no keysub before the policy
        has decided), or the configuration error that fails the lookup."""
        try:
            return conf.lookup(request, self.lines.files(self.config_dir),
                               reader=self.lines), None
        except conf.ConfigError as err:
            return None, err

    def serve_request(self, request: conf.Request, target: int, done: Done,
                      negating: bool) -> Outcome | Handoff:
        """Look ``request`` up and run its line, or hand a program off.
        (The negate re-lookup: keyutils reads the files again after the
        program failed, so what this wake-up's hold kept is not used.)"""
        self.lines.refresh()
        found, config_error = self.lookup(request)
        return self.serve_found(request, target, found, config_error, done, negating)

    def serve_found(self, request: conf.Request, target: int, found: conf.Match | None,
                    config_error: conf.ConfigError | None, done: Done,
                    negating: bool) -> Outcome | Handoff:
        """Expand the found line (``%{type:desc}`` in the requester's
        keyrings: the authority is held) and run it, or hand it off."""
        try:
            if config_error is not None:
                raise config_error
            if found is None:
                negate(target, NEGATE_TIMEOUT)
                what = "no negate line after a failed program" if negating else \
                    "no matching line"
                return done("allow", "-", f"negated ({what})")
            where, command, wildness = found
            if b"%{" in command and not on_worker():
                # A key lookup may wait for a key under construction: never
                # on the thread that reads the queue.
                return Handoff(request, done, where, lambda: self.serve_found(
                    request, target, found, None, done, negating))
            program, argv, pipe = conf.expand(request, where, command,
                                              keysub_in_requesters_keyrings)
        except conf.ConfigError as err:
            negate(target, NEGATE_TIMEOUT)
            return done("allow", "-", f"negated (config error: {err})")
        action = conf.Action(program, argv, pipe, where, wildness)
        if not action.builtin:
            return Handoff(request, done, action.where,
                           lambda: self.run_action(action, request, target, done, negating))
        return self.run_action(action, request, target, done, negating)

    def run_action(self, action: conf.Action, request: conf.Request, target: int,
                   done: Done, negating: bool) -> Outcome | Handoff:
        """Run ``action`` for ``request``, the authority held on this thread;
        a failed pipe or built-in leads to the ``negate`` re-lookup, once
        (whose program line comes back as a Handoff)."""
        start = time.monotonic()
        try:
            if action.builtin:
                payload = handlers.run_builtin(action.program, request, action.argv[1:])
                # A Python function cannot be killed: a built-in that overran
                # the deadline has its answer dropped, and the request negated.
                if time.monotonic() - start > self.deadline:
                    raise handlers.HandlerError(f"{conf.printable(action.program)}: "
                                                f"no answer in {self.deadline:.0f}s")
                instantiate(target, payload)
                return done("allow", action.where, "instantiated")
            if action.pipe:
                instantiate(target, handlers.run_pipe(action.program, action.argv,
                                                      request.callout, self.deadline, target))
                return done("allow", action.where, "instantiated")
            status = handlers.run_exec(action.program, action.argv, target,
                                       self.deadline)
        except handlers.HandlerError as err:
            if not err.program_failed or negating:
                verb = end_unanswered(target)
                return done("allow", action.where, f"{verb} ({err})")
            # keyutils: a failed program means "look up op negate and run that".
            return self.serve_request(conf.negate_request(request), target, done, True)
        # The kernel's helper path negates a key its helper left pending;
        # so do we.
        if _negate_if_pending(target):
            why = f"the program did not answer: {status}" if status else \
                "the program did not answer"
            return done("allow", action.where, f"negated ({why})")
        return done("allow", action.where, "answered by the program")
