"""request-key-daemon's command line without a kernel: usage errors and
``--check-policy``, which replays a policy-debug log against a policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from request_key_daemon.cli import main
from request_key_daemon.policy import Inputs, Policy

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
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("request-key-daemon: --container-fd is required") and \
        err.count("\n") == 1, err
