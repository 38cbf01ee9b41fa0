"""The control socket: one SOCK_SEQPACKET message per request and response.

A request is a JSON object ``{"cmd": "status" | "stats" | "reload" |
"set-policy", ...}``; the response is a JSON object with ``"ok": true``
and the answer, or ``"ok": false`` and ``"error"``.  Messages are at most
MAX_MESSAGE bytes: the daemon receives into a buffer one byte larger and
refuses a truncated message (MSG_TRUNC) instead of parsing part of it, so
no client can make it read a message into a smaller buffer than the one
it sent.  ``set-policy`` is checked against the current policy, with the
caller's uid and comm from SO_PEERCRED, before the new one is loaded.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAX_MESSAGE = 64 * 1024
COMMANDS = ("status", "stats", "reload", "set-policy")


class ProtocolError(ValueError):
    """A message that is not one well-formed request."""


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, sort_keys=True).encode()
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes, more than {MAX_MESSAGE}")
    return data


def decode_request(data: bytes, truncated: bool) -> dict[str, Any]:
    """Parse one request datagram; ProtocolError says what is wrong with it."""
    if truncated or len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message longer than {MAX_MESSAGE} bytes")
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"not JSON: {err}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a request is a JSON object")
    if message.get("cmd") not in COMMANDS:
        raise ProtocolError(f"unknown cmd {message.get('cmd')!r} (known: {', '.join(COMMANDS)})")
    if message["cmd"] == "set-policy" and not isinstance(message.get("path"), str):
        raise ProtocolError("set-policy needs a \"path\" string")
    return message


def peer(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the other end, from SO_PEERCRED."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


Handler = Callable[[dict[str, Any], tuple[int, int, int]], dict[str, Any]]


class ControlServer:
    """A listening socket; ``handle_ready()`` serves one connection's messages."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.listen(8)

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle_ready(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(5.0)
            who = peer(conn)
            while True:
                try:
                    data, _, flags, _ = conn.recvmsg(MAX_MESSAGE + 1)
                except (TimeoutError, OSError):
                    return
                if not data and not flags:
                    return
                try:
                    request = decode_request(data, bool(flags & socket.MSG_TRUNC))
                    reply = {"ok": True, **self.handler(request, who)}
                except ProtocolError as err:
                    reply = {"ok": False, "error": str(err)}
                except Exception as err:   # one bad command must not stop the daemon
                    reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
                conn.sendall(encode(reply))

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def request(path: Path, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the daemon at ``path`` and return its response."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(encode(message))
        data = sock.recv(MAX_MESSAGE + 1)
    response: dict[str, Any] = json.loads(data)   # the daemon only sends objects (encode)
    return response
