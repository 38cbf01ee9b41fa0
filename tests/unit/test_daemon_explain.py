"""``request-key-daemon --explain``: the line, wildness, argv and policy of a
request, from the same code that serves, without serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from request_key_daemon.cli import main

CONFIG = (b"create user k* * |/bin/cat %d\n"
          b"negate * * * /bin/keyctl negate %k 30 %S\n"
          b"create dns_resolver * * /sbin/key.dns_resolver %k\n")


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "request-key.conf").write_bytes(CONFIG)
    return tmp_path


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["--explain", *argv])
    return code, capsys.readouterr().out


def test_explains_the_line_its_argv_and_the_negate_line(
        config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = explain(capsys, "create", "user", "k\udcff1", "", "--config-dir",
                        str(config_dir), "--uid", "7")
    assert code == 0
    assert f"line: {config_dir}/request-key.conf:1" in out
    assert "wildness: op=0 type=0 description=2 callout=0" in out   # bytes, not characters
    assert "program: /bin/cat (pipe)" in out and "argv[1] = 'k\\xff1'" in out
    assert f"if it fails (op negate): {config_dir}/request-key.conf:2" in out
    assert "policy (<no policy: allow all>): allow" in out


def test_no_line_and_config_errors_exit_1(config_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out = explain(capsys, "create", "logon", "x", "", "--config-dir", str(config_dir))
    assert code == 1 and "no line matches: the request is negated" in out
    (config_dir / "request-key.d").write_text("not a directory")
    code, out = explain(capsys, "create", "user", "k", "", "--config-dir", str(config_dir))
    assert code == 1 and "config error" in out and "Cannot open" in out


def test_policy_denial_is_shown(config_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n[[rule]]\naction = "deny"\ntype = "user"\n'
                      'reason = "no user keys here"\n')
    code, out = explain(capsys, "create", "user", "k", "", "--config-dir", str(config_dir),
                        "--policy", str(policy))
    assert code == 1
    assert "deny: no user keys here" in out and "rejected by the policy" in out
