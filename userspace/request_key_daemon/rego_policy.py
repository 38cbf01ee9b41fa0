"""Rego policies, evaluated in the daemon's process (regopy, no OPA server).

A container platform that already writes its policies in Rego (as Kata
Containers' agent policy is written) can give the daemon a ``.rego`` file
instead of the TOML one.  The policy is a package ``kcont.request_key``;
the daemon evaluates ``data.kcont.request_key`` with the request's input
document (``Inputs.document()``: operation, key type, description escaped
and in base64, requester uid/gid/comm, container id and name, the
request-key.conf line that would serve it) and reads two rules:

- ``allow``: true to serve; undefined or anything but true denies;
- ``reason``: a string for the log line (optional).

Changing the policy over the control socket is decided by the current
policy as any request is: op ``policy-update``, type ``kcont-policy``,
description the new file's path.  A policy that fails to compile is
refused when loaded; one that fails to evaluate (a runtime error, a
non-boolean ``allow``) raises PolicyError, which the daemon's request
boundary turns into a negated request and a log line.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from request_key_daemon.policy import (
    POLICY_UPDATE_OP,
    POLICY_UPDATE_TYPE,
    Decision,
    Inputs,
    PolicyError,
)

PACKAGE = "kcont.request_key"
QUERY = f"data.{PACKAGE}"
# Compiled once into a bundle (four times faster per decision than a query
# of the module); the result is bound to DECISION.
DECISION = "decision"
BUNDLE_QUERY = f"{DECISION} = {QUERY}"


@dataclass
class RegoPolicy:
    """One compiled Rego module; evaluations are serialised (one interpreter)."""

    text: str
    source: str
    engine: str = "rego"
    _interpreter: Any = field(default=None, repr=False)
    _bundle: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path) -> RegoPolicy:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyError(f"{path}: {err}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str) -> RegoPolicy:
        try:
            import regopy
        except ImportError:
            raise PolicyError(f"{source}: Rego policies need regopy "
                              "(pip install 'kcont[rego]')") from None
        if not re.search(rf"^[ \t]*package[ \t]+{re.escape(PACKAGE)}[ \t]*(#.*)?$", text,
                         re.MULTILINE):
            raise PolicyError(f"{source}: want `package {PACKAGE}`")
        compiler = regopy.Interpreter()
        try:
            compiler.add_module(source, text)
            bundle = compiler.build(BUNDLE_QUERY)
        except regopy.RegoError as err:
            first = str(err).strip().splitlines()[:3]
            raise PolicyError(f"{source}: does not compile: {' '.join(first)}") from None
        return cls(text, source, _interpreter=regopy.Interpreter(), _bundle=bundle)

    def evaluate(self, document: dict[str, Any]) -> dict[str, Any]:
        """``data.kcont.request_key`` for this input document."""
        import regopy

        with self._lock:
            try:
                self._interpreter.set_input_term(json.dumps(document))
                output = str(self._interpreter.query_bundle(self._bundle))
            except regopy.RegoError as err:
                raise PolicyError(f"{self.source}: evaluation failed: {err}") from None
        try:
            value = json.loads(output)["bindings"][DECISION]
        except (ValueError, KeyError, TypeError):
            raise PolicyError(f"{self.source}: evaluation failed (a runtime error in the "
                              "policy, such as two values for one complete rule)") from None
        if not isinstance(value, dict):
            raise PolicyError(f"{self.source}: {QUERY} is not an object")
        return value

    def decide(self, inputs: Inputs) -> Decision:
        value = self.evaluate(inputs.document())
        allow = value.get("allow", False)
        if not isinstance(allow, bool):
            raise PolicyError(f"{self.source}: allow is {type(allow).__name__}, not a boolean")
        reason = value.get("reason")
        if not isinstance(reason, str) or not reason:
            reason = "rego: allow" if allow else "rego: no allow rule held"
        return Decision(allow, None, reason)

    def check_update(self, new_source: str, uid: int, comm: str, container_id: int,
                     container_name: str, gid: int = 0) -> Decision:
        """May ``uid`` replace this policy with the one at ``new_source``?"""
        return self.decide(Inputs(POLICY_UPDATE_OP, POLICY_UPDATE_TYPE, new_source, uid,
                                  comm, container_id, container_name, gid))
