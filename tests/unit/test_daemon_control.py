"""The daemon's control protocol: framing, bounds and a live socket."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from request_key_daemon.control import (
    MAX_MESSAGE,
    ControlServer,
    ProtocolError,
    decode_request,
    encode,
    request,
)


@pytest.mark.parametrize("data,truncated,message", [
    (b'{"cmd": "status"}', True, "longer than"),
    (b"x" * (MAX_MESSAGE + 1), False, "longer than"),
    (b"\xff\xfe", False, "not JSON"),
    (b"[1, 2]", False, "JSON object"),
    (b'{"cmd": "shutdown"}', False, "unknown cmd"),
    (b'{"cmd": "set-policy"}', False, 'needs a "path"'),
])
def test_bad_requests_are_refused_with_a_reason(data: bytes, truncated: bool,
                                                message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_request(data, truncated)


@given(st.sampled_from(["status", "stats", "reload"]),
       st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "cmd"),
                       st.integers(), max_size=4))
def test_round_trip(cmd: str, extra: dict[str, int]) -> None:
    message = {"cmd": cmd, **extra}
    assert decode_request(encode(message), False) == message


def test_encode_refuses_what_the_daemon_would_refuse() -> None:
    with pytest.raises(ProtocolError):
        encode({"cmd": "status", "pad": "x" * MAX_MESSAGE})


def test_live_socket_answers_and_survives_a_truncated_message(tmp_path: Path) -> None:
    seen = []

    def handler(req: dict, who: tuple[int, int, int]) -> dict:
        seen.append((req["cmd"], who[1]))
        return {"echo": req["cmd"]}

    server = ControlServer(tmp_path / "ctl.sock", handler)
    thread = threading.Thread(target=lambda: [server.handle_ready() for _ in range(2)])
    thread.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.connect(str(tmp_path / "ctl.sock"))
            sock.sendall(b" " * (MAX_MESSAGE + 100))      # one message, too long
            assert b"longer than" in sock.recv(MAX_MESSAGE + 1)
            sock.sendall(b"\x00\xffgarbage{")               # not JSON
            assert b"not JSON" in sock.recv(MAX_MESSAGE + 1)
            sock.sendall(encode({"cmd": "status"}))         # the next one still works
            assert b'"echo": "status"' in sock.recv(MAX_MESSAGE + 1)
        assert request(tmp_path / "ctl.sock", {"cmd": "stats"}) == {"ok": True, "echo": "stats"}
    finally:
        thread.join(10)
        server.close()
    assert seen[0][0] == "status" and seen[1][0] == "stats"
