"""The daemon's admission policy: first matching rule, default, replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from request_key_daemon.policy import Decision, Inputs, Policy, PolicyError, replay

POLICY = """
default = "deny"

[[rule]]
action = "deny"
type = "user"
description = "secret:*"
reason = "secrets are never served by the daemon"

[[rule]]
action = "allow"
op = "create"
type = "dns_resolver"
uid = [0, 1000]
container = "web*"

[[rule]]
action = "allow"
op = "policy-update"
type = "kcont-policy"
uid = 0
"""


def inputs(**over: object) -> Inputs:
    base = dict(op="create", type="dns_resolver", description="a.example.com", uid=1000,
                comm="curl", container_id=7, container_name="web-1")
    base.update(over)
    return Inputs(**base)  # type: ignore[arg-type]


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return Policy.load(path)


def test_first_matching_rule_decides(policy: Policy) -> None:
    assert policy.decide(inputs()) == Decision(True, 1, "rule 2 (allow)")
    denied = policy.decide(inputs(type="user", description="secret:db"))
    assert denied == Decision(False, 0, "secrets are never served by the daemon")


@pytest.mark.parametrize("over", [{"uid": 5}, {"container_name": "db"}, {"op": "update"}])
def test_default_deny(policy: Policy, over: dict) -> None:
    decision = policy.decide(inputs(**over))
    assert not decision.allowed and decision.rule is None


def test_container_by_id(policy: Policy) -> None:
    p = Policy.from_dict({"default": "deny", "rule": [{"action": "allow", "container": 7}]},
                         "t")
    assert p.decide(inputs(container_name="x")).allowed
    assert not p.decide(inputs(container_id=8, container_name="x")).allowed


def test_policy_update_is_itself_checked(policy: Policy) -> None:
    assert policy.check_update("/etc/new.toml", 0, "sh", 7, "web-1").allowed
    assert not policy.check_update("/etc/new.toml", 1000, "sh", 7, "web-1").allowed


def test_no_policy_allows_everything() -> None:
    assert Policy.allow_all().decide(inputs(type="anything")).allowed


@pytest.mark.parametrize(("text", "message"), [
    ('default = "maybe"', "default must be allow or deny"),
    ('[[rule]]\naction = "permit"', "rule 1: action must be allow or deny"),
    ('[[rule]]\naction = "allow"\nuid = "root"', "rule 1: uid must be"),
    ('[[rule]]\naction = "allow"\nkind = "x"', "rule 1: unknown field(s) kind"),
    ('colour = "blue"', "unknown key(s) colour"),
    ("[[rule]\n", "policy.toml"),
])
def test_bad_policy_names_file_and_rule(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Policy.load(path)


@given(st.builds(Inputs, op=st.text(max_size=8), type=st.text(max_size=8),
                 description=st.text(max_size=16), uid=st.integers(0, 2**32 - 1),
                 comm=st.text(max_size=15), container_id=st.integers(1, 2**63),
                 container_name=st.text(max_size=63)))
def test_decisions_replay_from_their_json(inputs_: Inputs) -> None:
    policy = Policy.from_dict({"default": "allow", "rule": [
        {"action": "deny", "comm": "*a*"}, {"action": "deny", "uid": [0]}]}, "t")
    decision = policy.decide(inputs_)
    [(again, recorded, now)] = replay(policy, [decision.to_json(inputs_)])
    assert again == inputs_ and recorded == now == decision
