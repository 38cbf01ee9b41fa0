"""The daemon: one interception record per key type for its container, a
queue keyring it watches, and what serves what arrives there: the watch
thread itself for quick answers (Server.begin), a bounded pool of
workers for program handlers.

The queue keyring lives in the user keyring of the daemon's uid, named
after the container, so that a daemon restarted after a crash finds it,
with whatever its predecessor left unserved, and serves that first.
SIGTERM stops taking new work, lets the workers finish (each has its
deadline), removes the records and exits; SIGHUP reloads the policy
(request-key.conf needs no reload: a changed file is read again from the
next wake-up on; the requests one wake-up brings share one look at the
files, see conf.LineCache).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kcont import upcalls
from kcont.container import fdinfo
from kcont.keys import USER, Key, Keyring
from kcont.watch import KeyChange, KeyEvent, WatchQueue
from request_key_daemon.conf import printable
from request_key_daemon.policy import load_policy
from request_key_daemon.request_log import RequestLog
from request_key_daemon.serve import WORKER_PREFIX, Outcome, Server, comm_of
from request_key_daemon.wakeup import Wakeup

log = logging.getLogger("request-key-daemon")
WATCH_ID = 0x6B


def queue_name(container_id: int) -> str:
    return f"request-key-daemon:{container_id}"


class Daemon:
    """Serves one container's upcalls; ``run()`` until ``stop()``."""

    def __init__(self, container_fd: int, server: Server, *, types: Iterable[str] = ("*",),
                 ns_mask: int = 0, workers: int = 4, policy_path: Path | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 request_log: RequestLog | None = None) -> None:
        self.container_fd = container_fd
        self.container_id = int(fdinfo(container_fd)["id"])
        self.server = server
        self.types = tuple(types)
        self.ns_mask = ns_mask
        self.policy_path = policy_path
        self.on_outcome = on_outcome
        self.request_log = request_log or RequestLog(log)
        self.in_flight: set[int] = set()
        self.lock = threading.Lock()
        self.counts = {"served": 0, "instantiated": 0, "negated": 0, "rejected": 0, "gone": 0}
        self.latencies: list[float] = []
        self.wakeup = Wakeup()
        self._stopping = False
        self.queue = self._find_or_make_queue()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=WORKER_PREFIX)
        self.watch = WatchQueue()
        self.watch.watch(self.queue.serial, WATCH_ID)
        for key_type in self.types:
            try:
                upcalls.intercept(container_fd, key_type, ns_mask, self.queue.serial)
            except OSError as err:
                if err.errno != errno.EEXIST:   # a predecessor's record: keep it
                    raise
        log.info("serving container %d: types %s, ns mask %#x, queue keyring %d",
                 self.container_id, ",".join(self.types), ns_mask, self.queue.serial)

    def _find_or_make_queue(self) -> Keyring:
        user = Keyring.special(USER, create=True)
        try:
            found = user.search("keyring", queue_name(self.container_id))
        except OSError:
            return user.add_keyring(queue_name(self.container_id))
        return Keyring(found.serial)

    # ------------------------------------------------------------ serving

    def submit(self, auth: int) -> None:
        """Serve ``auth`` on this thread as far as it is quick (Server.begin);
        a program handler goes on to a worker."""
        with self.lock:
            if auth in self.in_flight or self._stopping:
                return
            self.in_flight.add(auth)
        try:
            step = self.server.begin(auth)
        except Exception as err:   # a bug in serving must not stop the daemon
            self._done(auth, self.server.abandon(auth, err))
            return
        if isinstance(step, Outcome):
            self._done(auth, step)
            return
        try:
            future = self.pool.submit(step.finish)
        except Exception as err:   # the pool is shut down or broken: end it here
            self._done(auth, self.server.abandon(auth, err))
            return
        future.add_done_callback(lambda f: self._finished(auth, f))

    def _finished(self, auth: int, future: Future[Outcome]) -> None:
        try:
            outcome = future.result()
        except Exception as err:   # a bug in serving must not stop the daemon
            outcome = self.server.abandon(auth, err)
        self._done(auth, outcome)

    def _done(self, auth: int, outcome: Outcome | None) -> None:
        """Log the request's one line, then let it go: a request is in
        flight until its line is written (a stats or status reader, or a
        test, that sees nothing in flight sees every line).  Whatever
        fails here, the request is let go and counted."""
        try:
            # An answer (instantiate, negate, reject) invalidates the auth
            # key, which takes it out of the queue; only what ended otherwise
            # (or failed in serving) is unlinked here, so that it is not
            # served again.
            if outcome is None or outcome.kind == "gone":
                with contextlib.suppress(OSError):   # already gone with its request
                    Key(auth).unlink(self.queue)
            if outcome is not None and self.request_log.enabled:
                try:
                    line = outcome.line()
                except Exception as err:   # the answer is given; say so even so
                    line = f"serial={outcome.serial} " \
                           f"desc='{printable(outcome.description)}' kind={outcome.kind} " \
                           f"(log line failed: {type(err).__name__})"
                self.request_log.write(line)
        finally:
            with self.lock:
                self.in_flight.discard(auth)
                if outcome is not None:
                    self.counts["served"] += 1
                    self.counts[outcome.kind] += 1
                    self.latencies.append(outcome.seconds)
                    del self.latencies[:-1000]
        if outcome is not None and self.on_outcome:
            try:
                self.on_outcome(outcome)
            except Exception as err:   # an observer's bug must not stop serving
                log.warning("on_outcome failed: %s", type(err).__name__)

    def serve_backlog(self) -> int:
        """Serve what is already in the queue (a predecessor's leftovers)."""
        waiting = [key.serial for key in self.queue.linked()]
        for auth in waiting:
            self.submit(auth)
        return len(waiting)

    # --------------------------------------------------------------- loop

    def reload(self) -> str | None:
        """SIGHUP: take the policy file again; a bad one keeps the old policy.
        Returns the error, None if reloaded (or nothing to reload)."""
        if self.policy_path is None:
            return None
        try:
            self.server.policy = load_policy(self.policy_path)
        except Exception as err:   # a bad file must never end the daemon
            log.error("reload refused, keeping the current policy: %s",
                      printable(str(err).encode("utf-8", "surrogateescape")))
            return str(err)
        log.info("policy reloaded from %s", self.policy_path)
        return None

    def control(self, request: dict[str, Any], who: tuple[int, int, int]) -> dict[str, Any]:
        """Answer one control-socket request (see control.py)."""
        cmd = request["cmd"]
        with self.lock:
            in_flight = len(self.in_flight)
            counts = dict(self.counts)
            latencies = sorted(self.latencies)
        if cmd == "status":
            return {"container": self.container_id, "queue": self.queue.serial,
                    "types": list(self.types), "ns_mask": self.ns_mask,
                    "in_flight": in_flight, "policy": self.server.policy.source}
        if cmd == "stats":
            def pct(q: float) -> float | None:
                return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))]
                             * 1000, 2) if latencies else None
            return {"counts": counts, "in_flight": in_flight,
                    "log_lines_lost": self.request_log.lost,
                    "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)}}
        if cmd == "reload":
            error = self.reload()
            if error:
                raise ValueError(error)
            return {"policy": self.server.policy.source}
        # set-policy: the current policy decides whether it may be replaced.
        # The policy decides on the resolved path: "..", symlinks and a
        # relative path cannot slip past a pattern on the directory.
        pid, uid, gid = who
        path = os.path.realpath(request["path"])
        shown = printable(os.fsencode(path))
        decision = self.server.policy.check_update(path, uid, comm_of(pid),
                                                   self.container_id,
                                                   self.server.container_name, gid)
        if not decision.allowed:
            log.warning("set-policy %s by uid %d refused: %s", shown, uid,
                        printable(decision.reason.encode("utf-8", "surrogateescape")))
            raise PermissionError(f"refused by the current policy: {decision.reason}")
        new = load_policy(Path(path))
        self.server.policy, self.policy_path = new, Path(path)
        log.info("policy set to %s by uid %d", shown, uid)
        return {"policy": new.source}

    def stop(self) -> None:
        self._stopping = True
        self.wakeup.wake()

    def run(self, extra_fds: dict[int, Callable[[], None]] | None = None) -> None:
        extra = extra_fds or {}
        backlog = self.serve_backlog()
        if backlog:
            log.info("serving %d requests left in the queue", backlog)
        watch_fd = self.watch.fileno()
        while not self._stopping:
            ready, _, _ = select.select([watch_fd, self.wakeup.fileno(), *extra], [], [])
            if watch_fd in ready:
                # Every request this wake-up brings is served against the
                # configuration as it is now: checked once, not per request.
                lost = False
                with self.server.lines.hold():
                    for event in self.watch.read():
                        if isinstance(event, KeyEvent) and event.change is KeyChange.LINKED:
                            self.submit(event.aux)
                        elif not isinstance(event, KeyEvent):
                            lost = True
                if lost:        # lost notifications: rescan, with the config as it is now
                    self.serve_backlog()
            for fd in ready:
                if fd in extra:
                    extra[fd]()
            if self.wakeup.fileno() in ready:
                self.wakeup.drain()
        self._shutdown()

    def _shutdown(self) -> None:
        log.info("stopping: %d in flight", len(self.in_flight))
        self.pool.shutdown(wait=True)
        try:
            removed = sum(upcalls.remove_intercepts(self.container_fd, t, self.ns_mask)
                          for t in self.types)
        except OSError as err:
            log.warning("removing the records: %s", err)
            removed = 0
        log.info("removed %d records; exiting", removed)
        self.watch.close()

    def install_signals(self) -> None:
        """SIGTERM and SIGINT stop, SIGHUP reloads; any of them wakes the loop
        even if it arrives just before select() (see wakeup.py)."""
        self.wakeup.install({signal.SIGTERM: self.stop, signal.SIGINT: self.stop,
                             signal.SIGHUP: self.reload})
