"""request-key-daemon's command line without a kernel: usage errors and
``--check-policy``, which replays a policy-debug log against a policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from request_key_daemon.cli import main
from request_key_daemon.policy import Inputs, Policy
from request_key_daemon.serve import Outcome

POLICY = """
default = "deny"
[[rule]]
action = "allow"
type = "dns_resolver"
reason = "names are public"
"""


def _log(tmp_path: Path, policy_text: str, inputs: list[Inputs]) -> Path:
    policy = Policy.from_dict(__import__("tomllib").loads(policy_text), "recorded")
    log = tmp_path / "decisions.jsonl"
    log.write_text("".join(policy.decide(i).to_json(i) + "\n" for i in inputs))
    return log


def _inputs(key_type: str) -> Inputs:
    return Inputs("create", key_type, "db.internal", 0, "python", 7, "web")


def test_replay_with_the_same_policy_changes_nothing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    log = _log(tmp_path, POLICY, [_inputs("dns_resolver"), _inputs("user")])
    assert main(["--check-policy", str(policy), str(log)]) == 0
    out = capsys.readouterr().out
    assert "allow create dns_resolver:db.internal" in out and "deny  create user:" in out
    assert "2 decisions replayed, 0 differ" in out


def test_replay_shows_what_a_new_policy_would_change(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    log = _log(tmp_path, POLICY, [_inputs("dns_resolver"), _inputs("user")])
    stricter = tmp_path / "strict.toml"
    stricter.write_text('default = "deny"\n')
    assert main(["--check-policy", str(stricter), str(log)]) == 1
    out = capsys.readouterr().out
    assert "(was allow)" in out and "1 differ" in out


def test_bad_policy_is_one_line_and_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('default = "maybe"\n')
    log = _log(tmp_path, POLICY, [_inputs("user")])
    assert main(["--check-policy", str(bad), str(log)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "default must be allow or deny" in err[0]


def test_serving_needs_a_container_fd(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 2
    assert "--container-fd is required" in capsys.readouterr().err


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
        setup_logging(opts.syslog)
        log = logging.getLogger("request-key-daemon")
        try:
            outcome = Outcome(77, b"user", b"db", "12/sh@3", "allow", "@static",
                              "instantiated", 0.0016)
            log.info("%s", outcome.line())
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
