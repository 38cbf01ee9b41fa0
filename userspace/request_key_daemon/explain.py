"""``request-key-daemon --explain``: what the daemon would do with a request,
without serving anything, as keyutils' ``request-key -d -v`` shows it.

It answers the questions a container owner asks of a config: which file
and line serves this request, with what wildness, what argv the program
gets, what happens if that program fails (the ``negate`` line), and what
the policy decides.  It reads the same files with the same code as the
serving path (conf.resolve), so what it prints is what the daemon does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from request_key_daemon import conf
from request_key_daemon.policy import Inputs, PolicyEngine

FIELDS = ("op", "type", "description", "callout")


@dataclass(frozen=True)
class ExplainArgs:
    """The request and its context, as the command line gives them."""

    op: bytes
    key_type: bytes
    description: bytes
    callout: bytes
    config_dir: Path
    policy: PolicyEngine
    key: int = 0
    uid: int = 0
    gid: int = 0
    comm: str = ""
    container: str = ""


def _own_keyrings(key_type: bytes, description: bytes) -> bytes:
    """``%{type:desc}`` outside serving: the caller's own keyrings stand in
    for the requester's (needs the compiled binding, as serving does)."""
    from kcont.keys import request_key

    return request_key(key_type, description, None).read()


def _describe(action: conf.Action | None, label: str, out: Callable[[str], None]) -> None:
    if action is None:
        out(f"{label}: no line matches: the request is negated")
        return
    kind = "built-in" if action.builtin else "pipe" if action.pipe else "exec"
    out(f"{label}: {action.where}")
    out("  wildness: " + " ".join(f"{name}={count}"
                                  for name, count in zip(FIELDS, action.wildness, strict=True)))
    out(f"  program: {conf.printable(action.program)} ({kind})")
    for index, arg in enumerate(action.argv):
        out(f"  argv[{index}] = '{conf.printable(arg)}'")


def explain(args: ExplainArgs, out: Callable[[str], None] = print,
            keysub: conf.KeySub = _own_keyrings) -> int:
    """Print the explanation; 0 if a line would serve the request, 1 if
    the request would be negated or rejected (no line, a config error, the
    policy)."""
    request = conf.Request(args.op, args.key_type, args.description, args.callout,
                           str(args.key), str(args.uid), str(args.gid))
    out(f"request: op={conf.printable(args.op)} type={conf.printable(args.key_type)} "
        f"description='{conf.printable(args.description)}' "
        f"callout='{conf.printable(args.callout)}'")
    try:
        files = [path for path in conf.conf_files(args.config_dir) if os.path.exists(path)]
        out("files: " + (", ".join(files) or "none"))
        found = conf.lookup(request, conf.conf_files(args.config_dir))
        action = None if found is None else \
            conf.Action(*conf.expand(request, found[0], found[1], keysub), found[0], found[2])
    except conf.ConfigError as err:
        out(f"line: config error: {err}: the request is negated")
        return 1
    inputs = Inputs(args.op.decode("utf-8", "surrogateescape"),
                    args.key_type.decode("utf-8", "surrogateescape"),
                    args.description.decode("utf-8", "surrogateescape"), args.uid, args.comm,
                    0, args.container, args.gid,
                    conf.printable(conf.to_bytes(found[0])) if found else "",
                    conf.printable(found[1]) if found else "")
    decision = args.policy.decide(inputs)
    out(f"policy ({args.policy.source}): {'allow' if decision.allowed else 'deny'}: "
        f"{decision.reason}")
    _describe(action, "line", out)
    if action is not None and (action.pipe or action.builtin):
        try:
            fallback = conf.resolve(conf.negate_request(request), args.config_dir,
                                    keysub=keysub)
        except conf.ConfigError as err:
            out(f"if it fails: config error: {err}: the request is negated")
        else:
            _describe(fallback, "if it fails (op negate)", out)
    if not decision.allowed:
        out("result: rejected by the policy (EKEYREJECTED); no program runs")
        return 1
    return 0 if action is not None else 1
