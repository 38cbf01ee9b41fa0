"""Rego policies in the daemon's process: the input document, the decision,
errors, replay of the decision log with the same engine."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from request_key_daemon.policy import Inputs, Policy, PolicyError, load_policy, replay
from request_key_daemon.rego_policy import RegoPolicy

REGO = """package kcont.request_key

import rego.v1

default allow := false

allow if input.key.type == "dns_resolver"

allow if {
    input.key.type == "user"
    input.requester.uid == 0
    input.line.where != ""
}

reason := "names resolve in the container" if input.key.type == "dns_resolver"

reason := sprintf("uid %d may not make %s keys", [input.requester.uid, input.key.type]) if {
    not allow
}

allow if {
    input.operation == "policy-update"
    input.requester.comm == "admin"
}
"""


# The same, but names no longer resolve.
STRICTER = """package kcont.request_key

import rego.v1

allow if {
    input.key.type == "user"
    input.requester.uid == 0
    input.line.where != ""
}
"""


def inputs(**over: object) -> Inputs:
    base: dict[str, object] = dict(op="create", type="user", description="token", uid=0,
                                   comm="sh", container_id=3, container_name="web",
                                   gid=0, line="/etc/request-key.conf:2",
                                   command="|/bin/cat")
    base.update(over)
    return Inputs(**base)  # type: ignore[arg-type]


@pytest.fixture
def rego(tmp_path: Path) -> RegoPolicy:
    path = tmp_path / "policy.rego"
    path.write_text(REGO)
    policy = load_policy(path)
    assert isinstance(policy, RegoPolicy)
    return policy


def test_decisions_and_reasons(rego: RegoPolicy) -> None:
    dns = rego.decide(inputs(type="dns_resolver", uid=1000))
    assert dns.allowed and dns.reason == "names resolve in the container"
    assert rego.decide(inputs()).allowed
    denied = rego.decide(inputs(uid=1000))
    assert not denied.allowed and denied.reason == "uid 1000 may not make user keys"
    # no line would serve it: the document says so (null), and the rule needs one
    assert not rego.decide(inputs(line="", command="")).allowed


def test_the_input_document_carries_the_exact_bytes() -> None:
    raw = b"caf\xc3\xa9 \xff\n\\"
    doc = inputs(description=raw.decode("utf-8", "surrogateescape")).document()
    assert doc["key"]["description"] == "café \\xff\\x0a\\\\"
    assert base64.b64decode(doc["key"]["description_base64"]) == raw
    assert doc["requester"] == {"uid": 0, "gid": 0, "comm": "sh"}
    assert doc["container"] == {"id": 3, "name": "web"}
    assert doc["line"] == {"where": "/etc/request-key.conf:2", "command": "|/bin/cat"}
    assert Inputs.from_document(json.loads(json.dumps(doc))) == inputs(
        description=raw.decode("utf-8", "surrogateescape"))


def test_policy_updates_are_decided_by_the_current_policy(rego: RegoPolicy) -> None:
    assert rego.check_update("/etc/new.rego", 0, "admin", 3, "web").allowed
    assert not rego.check_update("/etc/new.rego", 0, "sh", 3, "web").allowed


@pytest.mark.parametrize(("text", "message"), [
    ("package kcont.request_key\nallow if {", "does not compile"),
    ("package somewhere.else\nallow := true\n", "want `package kcont.request_key`"),
])
def test_bad_policies_are_refused_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.rego"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


@pytest.mark.parametrize(("text", "message"), [
    ('package kcont.request_key\nallow := "yes"\n', "not a boolean"),
    ("package kcont.request_key\nimport rego.v1\nreason := input.requester.comm if true\n"
     'reason := "other" if true\n', "evaluation failed"),
])
def test_a_policy_that_cannot_decide_raises(text: str, message: str) -> None:
    """A non-boolean allow, or a runtime conflict, is not a decision:
    PolicyError, which the daemon's request boundary turns into a negated
    request and a log line."""
    policy = RegoPolicy.from_text(text, "t.rego")
    with pytest.raises(PolicyError, match=message):
        policy.decide(inputs(comm="x"))


def test_decision_log_replays_with_the_same_engine(rego: RegoPolicy, tmp_path: Path) -> None:
    """A log line's ``input`` is the document ``opa eval -I`` reads; replay
    against the same policy changes nothing, against a stricter one it
    reports the change."""
    cases = [inputs(type="dns_resolver", uid=1000), inputs(), inputs(uid=1000)]
    lines = [rego.decide(case).to_json(case, rego.engine) for case in cases]
    assert all(json.loads(line)["engine"] == "rego" for line in lines)
    assert all(before == now for _, before, now in replay(rego, lines))
    stricter = RegoPolicy.from_text(STRICTER, "stricter.rego")
    changed = [inp for inp, before, now in replay(stricter, lines)
               if before.allowed != now.allowed]
    assert changed == [cases[0]]


def test_toml_replays_rego_logs_and_old_logs(rego: RegoPolicy) -> None:
    """One log format for both engines; the older ``inputs`` records read too."""
    case = inputs()
    toml = Policy.from_dict({"default": "deny"}, "t")
    ((got, _, now),) = replay(toml, [rego.decide(case).to_json(case, "rego")])
    assert got == case and not now.allowed
    old = json.dumps({"inputs": {"op": "create", "type": "user", "description": "x",
                                 "uid": 0, "comm": "", "container_id": 1,
                                 "container_name": ""},
                      "decision": {"allowed": True, "rule": None, "reason": "r"}})
    ((got, before, _),) = replay(toml, [old])
    assert got.description == "x" and before.allowed


def test_the_documented_examples_decide_as_the_docs_say() -> None:
    """docs/policy.md's Rego modules compile, and its rendering of the TOML
    worked example decides as that example's table says."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    modules = [block.split("```", 1)[0] for block in docs.split("```rego\n")[1:]]
    complete = [RegoPolicy.from_text(text, f"docs/policy.md #{i}")
                for i, text in enumerate(modules) if text.startswith("package ")]
    assert len(complete) == 1
    (worked,) = complete
    table = [(dict(type="dns_resolver", uid=1000, comm="curl"), False),
             (dict(type="dns_resolver", uid=1000, comm="ping"), True),
             (dict(type="user", uid=1000, comm="sh"), False),
             (dict(type="user", uid=0, comm="sh"), True)]
    for over, allowed in table:
        assert worked.decide(inputs(**over)).allowed is allowed, over
    assert worked.check_update("/etc/new.rego", 0, "request-key-dae", 3, "web").allowed
