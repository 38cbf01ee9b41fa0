"""Admission policy: which upcalls the daemon may serve at all.

The idea is Kata Containers' agent policy (its genpolicy and
agent-policy docs): the process that acts on a container's behalf
checks every request against a policy before any handler runs, so a
compromised or careless config file cannot make it serve what the
operator never meant to allow.  Here the requests are
upcalls, and the inputs are what the kernel tells the daemon about one:
op, key type, description, the requester's uid, the requester's comm and
its container.

A policy is a TOML file::

    default = "deny"            # or "allow"; what no rule decides

    [[rule]]
    action = "allow"            # or "deny"
    op = "create"               # each field optional; shell-style patterns
    type = "dns_resolver"
    description = "*.example.com"
    uid = [0, 1000]             # a list of uids, or one
    comm = "curl*"
    container = "web"           # a container name pattern, or its id
    reason = "the web tier resolves its own names"

Rules are tried in order; the first whose every given field matches
decides.  Changing the policy is itself checked: the current policy must
allow op ``policy-update``, type ``kcont-policy``, description the new
file's path, for the uid asking.

Every decision can be written as a JSON line with its full inputs, so
that ``request-key-daemon --check-policy FILE INPUTS`` replays it.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

ACTIONS = ("allow", "deny")
FIELDS = ("op", "type", "description", "uid", "comm", "container")
POLICY_UPDATE_OP = "policy-update"
POLICY_UPDATE_TYPE = "kcont-policy"


class PolicyError(ValueError):
    """The policy file is malformed; the message names the file and the rule."""


@dataclass(frozen=True)
class Inputs:
    """Everything a decision depends on, and nothing else (so it replays).

    ``description`` is the key's description decoded as UTF-8 with
    surrogate escapes (a byte that is not UTF-8, 0xff, is ``"\\udcff"``),
    so that it round-trips to the kernel's bytes.  ``line`` and ``command``
    are the request-key.conf line that would serve the request
    (``file:number``) and its command text, empty if none does.
    """

    op: str
    type: str
    description: str
    uid: int
    comm: str
    container_id: int
    container_name: str
    gid: int = 0
    line: str = ""
    command: str = ""

    def document(self) -> dict[str, Any]:
        """The input document of a decision: what a Rego policy sees as
        ``input``, what the decision log records, what ``opa eval -I``
        reads.  The description is given twice: escaped as text
        (``\\xNN`` for bytes that are not UTF-8, a backslash doubled),
        and exactly, in base64."""
        raw = self.description.encode("utf-8", "surrogateescape")
        return {
            "operation": self.op,
            "key": {"type": self.type, "description": _escaped(raw),
                    "description_base64": base64.b64encode(raw).decode()},
            "requester": {"uid": self.uid, "gid": self.gid, "comm": self.comm},
            "container": {"id": self.container_id, "name": self.container_name},
            "line": {"where": self.line, "command": self.command} if self.line else None,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Inputs:
        """The inverse of ``document()`` (the exact description, from base64)."""
        raw = base64.b64decode(doc["key"]["description_base64"])
        line = doc.get("line") or {}
        return cls(doc["operation"], doc["key"]["type"],
                   raw.decode("utf-8", "surrogateescape"), int(doc["requester"]["uid"]),
                   doc["requester"]["comm"], int(doc["container"]["id"]),
                   doc["container"]["name"], int(doc["requester"].get("gid", 0)),
                   line.get("where", ""), line.get("command", ""))


def _escaped(raw: bytes) -> str:
    from request_key_daemon.conf import printable

    return printable(raw)


@dataclass(frozen=True)
class Rule:
    action: str
    reason: str
    op: str | None = None
    type: str | None = None
    description: str | None = None
    uid: tuple[int, ...] | None = None
    comm: str | None = None
    container: str | None = None

    def matches(self, inputs: Inputs) -> bool:
        def glob(pattern: str | None, value: str) -> bool:
            return pattern is None or fnmatch.fnmatchcase(value, pattern)

        if self.uid is not None and inputs.uid not in self.uid:
            return False
        container_ok = self.container is None or self.container == str(inputs.container_id) \
            or fnmatch.fnmatchcase(inputs.container_name, self.container)
        return (container_ok and glob(self.op, inputs.op) and glob(self.type, inputs.type)
                and glob(self.description, inputs.description)
                and glob(self.comm, inputs.comm))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: int | None  # index in the file, None for the default (TOML only)
    reason: str

    def to_json(self, inputs: Inputs, engine: str = "toml") -> str:
        """One decision-log line: the input document, the decision, the engine."""
        return json.dumps({"input": inputs.document(), "decision": asdict(self),
                           "engine": engine}, sort_keys=True)


class PolicyEngine(Protocol):
    """What the daemon asks of a policy, whatever its language.

    ``source`` and ``engine`` are read-only here: the TOML policy is a
    frozen dataclass, and the daemon only ever reads them.
    """

    @property
    def source(self) -> str:
        """Where the policy came from (a path, or a name for a built-in one)."""
        ...

    @property
    def engine(self) -> str:
        """The policy language: ``toml`` or ``rego``."""
        ...

    def decide(self, inputs: Inputs) -> Decision: ...

    def check_update(self, new_source: str, uid: int, comm: str, container_id: int,
                     container_name: str, gid: int = 0) -> Decision: ...


@dataclass(frozen=True)
class Policy:
    """A TOML policy: rules tried in order, then the default."""

    default_allow: bool
    rules: tuple[Rule, ...]
    source: str = "<built-in>"
    engine = "toml"

    @classmethod
    def allow_all(cls) -> Policy:
        """What the daemon does without --policy: keyutils' behaviour."""
        return cls(True, (), "<no policy: allow all>")

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise PolicyError(f"{path}: {err}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> Policy:
        unknown = set(data) - {"default", "rule"}
        if unknown:
            raise PolicyError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
        default = data.get("default", "deny")
        if default not in ACTIONS:
            raise PolicyError(f"{source}: default must be allow or deny, not {default!r}")
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            raise PolicyError(f"{source}: rule must be an array of tables ([[rule]])")
        rules = tuple(_rule(raw, f"{source}: rule {i + 1}") for i, raw in enumerate(raw_rules))
        return cls(default == "allow", rules, source)

    def decide(self, inputs: Inputs) -> Decision:
        for index, rule in enumerate(self.rules):
            if rule.matches(inputs):
                return Decision(rule.action == "allow", index, rule.reason)
        word = "allow" if self.default_allow else "deny"
        return Decision(self.default_allow, None, f"no rule matched: default {word}")

    def check_update(self, new_source: str, uid: int, comm: str, container_id: int,
                     container_name: str, gid: int = 0) -> Decision:
        """May ``uid`` replace this policy with the one at ``new_source``?"""
        return self.decide(Inputs(POLICY_UPDATE_OP, POLICY_UPDATE_TYPE, new_source, uid,
                                  comm, container_id, container_name, gid))


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a table")
    unknown = set(raw) - {"action", "reason", *FIELDS}
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise PolicyError(f"{where}: action must be allow or deny, not {action!r}")
    uid = raw.get("uid")
    if uid is not None:
        uids = uid if isinstance(uid, list) else [uid]
        if not all(isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in uids):
            raise PolicyError(f"{where}: uid must be a uid or a list of uids")
        uid = tuple(uids)
    strings = {}
    for name in ("op", "type", "description", "comm", "container"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str | int):
            raise PolicyError(f"{where}: {name} must be a string")
        strings[name] = None if value is None else str(value)
    reason = raw.get("reason") or f"{where.rsplit(': ', 1)[-1]} ({action})"
    return Rule(action=action, reason=str(reason), uid=uid, **strings)


def load_policy(path: Path) -> PolicyEngine:
    """The policy at ``path``: Rego for a ``.rego`` file, TOML otherwise."""
    if path.suffix == ".rego":
        from request_key_daemon.rego_policy import RegoPolicy

        return RegoPolicy.load(path)
    return Policy.load(path)


def replay(policy: PolicyEngine, lines: list[str]) -> list[tuple[Inputs, Decision, Decision]]:
    """(inputs, recorded decision, decision now) for each decision-log line
    (``input`` documents; the older ``inputs`` records are read too)."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        inputs = Inputs.from_document(record["input"]) if "input" in record \
            else Inputs(**record["inputs"])
        out.append((inputs, Decision(**record["decision"]), policy.decide(inputs)))
    return out
