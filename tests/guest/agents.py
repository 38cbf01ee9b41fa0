"""Agents: processes that live in a container and act for the test.

A test needs to do things *inside* containers while it keeps the
container fds and the queue keyrings outside: create nested containers
(only a member can), and make request_key() calls from members, possibly
after unsharing some namespaces, without blocking the test (the test
itself serves what they ask).  An Agent is a member (the container's
init if it is the first fork) that takes JSON commands over a
SOCK_SEQPACKET socketpair and answers with JSON plus file descriptors.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from containers import ns_inodes
from fail_nth import nth_failure

from kcont.container import Container, create_raw, unshare
from kcont.keys import Key, Keyring, request_key
from kcont.supervise import start_daemon

MSG_MAX = 65536


def _send(sock: socket.socket, msg: dict[str, Any], fds: Iterable[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(msg).encode()], list(fds))


def _recv(sock: socket.socket, timeout: float | None = 120.0) -> tuple[dict[str, Any], list[int]]:
    if timeout is not None and not select.select([sock], [], [], timeout)[0]:
        raise TimeoutError("agent did not answer")
    data, fds, _, _ = socket.recv_fds(sock, MSG_MAX, 8)
    if not data:
        raise EOFError("agent is gone")
    return json.loads(data), fds


def _request_one(key_type: str, desc: str, callout: str | None,
                 fail_nth: int = 0) -> dict[str, Any]:
    """One request_key(); with ``fail_nth``, its Nth fault-injection point
    fails, and "fault_reached" says if it got that far."""
    start = time.monotonic()
    result: dict[str, Any] = {"desc": desc, "tid": threading.get_native_id()}
    if fail_nth:
        reached, outcome = nth_failure(fail_nth, lambda: request_key(key_type, desc, callout))
        result["fault_reached"] = reached
    else:
        try:
            outcome = request_key(key_type, desc, callout)
        except OSError as err:
            outcome = err
    result["elapsed"] = time.monotonic() - start
    if isinstance(outcome, OSError):
        result["errno"] = outcome.errno
        return result
    assert isinstance(outcome, Key)
    result["serial"] = outcome.serial
    try:
        payload = outcome.read()
        result["payload"] = payload.decode(errors="replace")
        result["payload_hex"] = payload.hex()
    except OSError as err:
        result["read_errno"] = err.errno
    return result


def _requester(wfd: int, msg: dict[str, Any]) -> None:
    """In a fresh child of the agent: unshare, say where we are, then request."""
    out = os.fdopen(wfd, "w", buffering=1)
    if msg.get("unshare"):
        unshare(msg["unshare"])
    # A session keyring of its own, as keyutils' tests use, unless the test
    # wants the keyrings the agent has (to see what containers share).
    session = Keyring.join_session().serial if msg.get("own_session", True) else 0
    for key_type, desc, payload in msg.get("keys", []):
        Keyring(session).add(key_type, desc, payload)
    out.write(json.dumps({"ns": ns_inodes(), "pid": os.getpid(), "session": session}) + "\n")
    descs = msg["descs"]
    lock = threading.Lock()

    def one(desc: str) -> None:
        line = json.dumps(_request_one(msg["type"], desc, msg.get("callout"),
                                       msg.get("fail_nth", 0))) + "\n"
        with lock:
            out.write(line)

    threads = [threading.Thread(target=one, args=(d,)) for d in descs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.close()


def _handle(sock: socket.socket, msg: dict[str, Any]) -> bool:
    op = msg["op"]
    if op == "ns":
        _send(sock, {"ns": ns_inodes(), "pid": os.getpid()})
    elif op == "create":
        try:
            fd = create_raw(msg["name"], msg["flags"])
        except OSError as err:
            _send(sock, {"errno": err.errno})
        else:
            _send(sock, {"ok": True}, [fd])
            os.close(fd)
    elif op == "request":
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            try:
                _requester(wfd, msg)
            finally:
                os._exit(0)
        os.close(wfd)
        _send(sock, {"pid": pid}, [rfd])
        os.close(rfd)
    elif op == "call":
        # A keyctl call made here, for permission and namespace tests; "FD0"
        # in the arguments is the first fd the test passed along.
        from kcont import upcalls
        args = [msg["fds"][0] if arg == "FD0" else arg for arg in msg["args"]]
        try:
            result = getattr(upcalls, msg["name"])(*args)
        except OSError as err:
            _send(sock, {"errno": err.errno})
        else:
            if hasattr(result, "__dict__"):
                result = dict(result.__dict__)
            _send(sock, {"ok": result})
    elif op == "possess":
        # A session keyring of the agent's own with the keyring linked in:
        # the agent possesses it and what it holds, as a daemon possesses
        # its queue.
        try:
            Keyring(msg["keyring"]).link(Keyring.join_session())
        except OSError as err:
            _send(sock, {"errno": err.errno})
        else:
            _send(sock, {"ok": True})
    elif op == "sh":
        done = subprocess.run(msg["argv"], capture_output=True, text=True, check=False)
        _send(sock, {"rc": done.returncode, "out": done.stdout, "err": done.stderr})
    elif op == "daemon":
        _send(sock, _start_daemon(msg["fd"], msg["args"]))
    elif op == "signal":
        _send(sock, _signal_and_reap(msg["pid"], msg["sig"], msg["grace"]))
    elif op == "exit":
        return False
    return True


def _start_daemon(container_fd: int, args: list[str]) -> dict[str, Any]:
    """request-key-daemon in this container, as kcont run --daemon starts it."""
    log = open(f"/tmp/rkd-{os.getpid()}-{container_fd}.log", "w")  # noqa: SIM115
    proc, ready = start_daemon(container_fd, args, stderr=log)
    return {"pid": proc.pid, "ready": ready, "log": log.name}


def _signal_and_reap(pid: int, sig: int, grace: float) -> dict[str, Any]:
    """Signal a child and reap it; one that outlives ``grace`` seconds is
    SIGKILLed, so that the test learns it ignored the signal instead of
    waiting on the agent for ever."""
    os.kill(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"status": status, "killed": False}
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return {"status": os.waitpid(pid, 0)[1], "killed": True}


def _serve(sock: socket.socket) -> None:
    while True:
        try:
            msg, fds = _recv(sock, None)
        except EOFError:
            return
        msg["fds"] = fds
        try:
            if not _handle(sock, msg):
                return
        finally:
            for fd in fds:
                os.close(fd)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


class IgnoredSignal(AssertionError):
    """A child of the agent outlived the signal sent to stop it."""


@dataclass
class Pending:
    """Requests in flight from one requester process; read their outcomes."""

    fd: int
    pid: int
    count: int
    ns: dict[str, int] | None = None
    session: int = 0
    buffer: bytes = b""

    def namespaces(self, timeout: float = 120.0) -> dict[str, int]:
        if self.ns is None:
            first = json.loads(self._line(timeout))
            self.ns, self.session = first["ns"], first["session"]
        return self.ns

    def _line(self, timeout: float) -> str:
        # Our own buffer: select() on a buffered file would miss lines.
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError("requester did not report")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("requester died")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def results(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """All outcomes, in completion order (waits up to ``timeout`` in all)."""
        self.namespaces(timeout)
        deadline = time.monotonic() + timeout
        out = [json.loads(self._line(max(0.0, deadline - time.monotonic())))
               for _ in range(self.count)]
        os.close(self.fd)
        return out

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        (only,) = self.results(timeout)
        return only


class Agent:
    """A member of ``container`` (or of the caller's container, with
    ``fork=os.fork``) acting on the test's commands."""

    def __init__(self, container: Container | None = None,
                 fork: Callable[[], int] | None = None) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        forker = fork or (container.fork if container else os.fork)
        pid = forker()
        if pid == 0:
            ours.close()
            try:
                _serve(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.sock, self.pid, self.container = ours, pid, container
        self.reaped = False
        reply, _ = self._call({"op": "ns"})
        self.namespaces: dict[str, int] = reply["ns"]

    def _call(self, msg: dict[str, Any], fds: Iterable[int] = ()) -> tuple[dict[str, Any],
                                                                           list[int]]:
        _send(self.sock, msg, fds)
        return _recv(self.sock)

    def create(self, name: str, flags: int) -> Container:
        """container_create() by this member: a child of its container."""
        reply, fds = self._call({"op": "create", "name": name, "flags": flags})
        if "errno" in reply:
            raise OSError(reply["errno"], os.strerror(reply["errno"]), "container_create")
        return Container.from_fd(fds[0])

    def request(self, key_type: str, descs: str | list[str], callout: str | None = "x",
                unshare: Iterable[str] = (), fail_nth: int = 0,
                keys: Iterable[tuple[str, str, str]] = (),
                own_session: bool = True) -> Pending:
        """Start request_key() calls (one thread each) in a new child of this
        agent; ``fail_nth`` fails that fault point of each call; ``keys``
        (type, description, payload) are added to the child's new session
        keyring first (without ``own_session``, the child keeps the agent's
        keyrings and adds none).  A description may hold surrogate-escaped bytes
        (``"\\udcff"`` is the byte 0xff): it is requested as those bytes."""
        names = [descs] if isinstance(descs, str) else list(descs)
        reply, fds = self._call({"op": "request", "type": key_type, "descs": names,
                                 "callout": callout, "unshare": sorted(unshare),
                                 "fail_nth": fail_nth, "keys": [list(k) for k in keys],
                                 "own_session": own_session})
        return Pending(fds[0], reply["pid"], len(names))

    def call(self, name: str, *args: Any, fd: int | None = None) -> Any:
        """Call kcont.upcalls.<name>(*args) in the agent; OSError comes back.
        ``fd`` is passed along, and an argument "FD0" stands for the agent's copy."""
        reply, _ = self._call({"op": "call", "name": name, "args": list(args)},
                              () if fd is None else (fd,))
        if "errno" in reply:
            raise OSError(reply["errno"], os.strerror(reply["errno"]), name)
        return reply["ok"]

    def possess(self, keyring: int) -> None:
        """Join a new session keyring and link ``keyring`` into it."""
        reply, _ = self._call({"op": "possess", "keyring": keyring})
        if "errno" in reply:
            raise OSError(reply["errno"], os.strerror(reply["errno"]), "possess")

    def sh(self, *argv: str) -> dict[str, Any]:
        """Run a command in the agent's container (and mount namespace)."""
        reply, _ = self._call({"op": "sh", "argv": list(argv)})
        return reply

    def start_daemon(self, container_fd: int, *args: str) -> dict[str, Any]:
        """Start request-key-daemon here for ``container_fd``; waits until ready."""
        reply, _ = self._call({"op": "daemon", "fd": container_fd, "args": list(args)})
        return reply

    def kill(self, pid: int, sig: int, grace: float = 60.0) -> int:
        """Signal a child of the agent (the daemon) and reap it; its wait status.

        A child still alive ``grace`` seconds later is SIGKILLed and
        ``IgnoredSignal`` raised, well inside the agent's answer timeout.
        """
        reply, _ = self._call({"op": "signal", "pid": pid, "sig": sig, "grace": grace})
        if reply["killed"]:
            raise IgnoredSignal(f"pid {pid} was still alive {grace:g}s after signal {sig}; "
                                "SIGKILLed")
        return reply["status"]

    def stop(self) -> None:
        """Exit (as init, this kills the container) and reap."""
        self.tell_exit()
        self.reap()

    def tell_exit(self) -> None:
        """Ask the agent to exit (it may be dead already); do not wait.

        An init of a PID namespace does not finish exiting until every task
        in it is reaped; the members forked by the test are the test's to
        reap, so it must reap them before it can reap that init.
        """
        if self.sock.fileno() < 0:
            return
        try:
            _send(self.sock, {"op": "exit"})
        except OSError as err:
            if err.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
        self.sock.close()

    def reap(self, block: bool = True) -> bool:
        """Wait for the agent's exit status (once); False if not yet, with
        ``block=False``."""
        if not self.reaped:
            pid, _ = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            self.reaped = pid == self.pid
        return self.reaped


def request_in(container: Container | None, key_type: str, desc: str,
               callout: str | None = "x") -> dict[str, Any]:
    """One request_key() from a new member of ``container`` (None: the
    caller's container), with an agent that lives just for it."""
    agent = Agent(container)
    try:
        return agent.request(key_type, desc, callout=callout).result()
    finally:
        agent.stop()


@contextmanager
def requester_below(outer: Container, name: str) -> Iterator[tuple[Agent, Agent]]:
    """``outer``'s init and a requester in a child container that init makes.

    A record of ``outer`` then intercepts the requester's requests, and
    ``outer`` can die (its init's ``stop()``) while the requester lives on
    to report how its requests ended.  Yields (outer's init, requester);
    both are stopped and the child's fd closed afterwards.
    """
    outer_agent = Agent(outer)
    inner = outer_agent.create(name, 0)
    try:
        requester = Agent(inner)
        try:
            yield outer_agent, requester
        finally:
            requester.stop()
    finally:
        outer_agent.stop()
        inner.close()
