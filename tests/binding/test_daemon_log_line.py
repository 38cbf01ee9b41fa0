"""request-key-daemon's per-request log line (``serve.Outcome``): every
field present and escaped.  Here, not in tests/unit, because
``request_key_daemon.serve`` imports kcont.keys and so the compiled binding."""

from __future__ import annotations

from pathlib import Path

from request_key_daemon.serve import Outcome


def test_outcome_line_has_every_field() -> None:
    line = Outcome(42, b"user", b"a b", "7/python@3", "allow", "conf:1", "instantiated",
                   0.0123).line()
    for part in ("serial=42", "type=user", "desc='a b'", "requester=7/python@3",
                 "decision='allow'", "handler='conf:1'", "result='instantiated'",
                 "latency_ms=12.3"):
        assert part in line


def test_syslog_gets_one_line_per_request(tmp_path: Path) -> None:
    """--syslog SOCKET: the per-request line reaches a syslog socket as a
    daemon-facility, info-level message."""
    import logging
    import socket

    from request_key_daemon.cli import make_parser, setup_logging

    address = tmp_path / "log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(address))
        syslog.settimeout(5)
        opts = make_parser().parse_args(["--syslog", str(address)])
        request_log = setup_logging(opts.syslog)
        log = logging.getLogger("request-key-daemon")
        try:
            outcome = Outcome(77, b"user", b"db", "12/sh@3", "allow", "@static",
                              "instantiated", 0.0016)
            assert request_log.enabled and request_log.stream is None
            request_log.write(outcome.line())
            message = syslog.recv(4096).decode()
        finally:
            for handler in log.handlers[:]:
                log.removeHandler(handler)
                handler.close()
    assert message.startswith("<30>request-key-daemon: serial=77 type=user desc='db' "
                              "requester=12/sh@3 decision='allow' handler='@static' "
                              "result='instantiated' latency_ms=1.6"), message
    assert make_parser().parse_args(["--syslog"]).syslog == "/dev/log"


def test_outcome_line_escapes_every_field() -> None:
    """No field can end the line or forge another: a quote, a newline or a
    control character in any of them is escaped."""
    line = Outcome(1, b"user", b"x' result='forged\nserial=2", "7/a\nb@3",
                   "deny (it's\x1b[2J)", "/etc/rk.d/a'b.conf:1", "negated (bad\nthing)",
                   0.001).line()
    assert "\n" not in line and "\x1b" not in line
    assert line.count("'") == 8      # the four quoted fields' own quotes, nothing else
