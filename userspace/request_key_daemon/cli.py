"""``request-key-daemon``: the command line.

Started by a container's init (``kcont run --daemon``) with the
container's fd; or by hand for tests.  ``--check-policy`` replays a
policy-debug log against a policy file and exits.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from kcont.admission_args import add_webhook_arguments, webhook_from
from kcont.one_line_parser import OneLineParser
from request_key_daemon.launch import READY_BYTE
from request_key_daemon.request_log import FORMAT, RequestLog

EXAMPLES = """examples:
  request-key-daemon --container-fd 3              serve container fd 3, /etc config
  request-key-daemon --container-fd 3 --config-dir /tmp/rk --type dns_resolver --pin uts,net
  request-key-daemon --check-policy policy.toml decisions.jsonl
  request-key-daemon --explain create dns_resolver example.com ''    which line, argv, policy
"""


def make_parser() -> OneLineParser:
    """The daemon's options; usage errors are one line and exit 2."""
    # No abbreviations: a launcher refuses the options it sets itself by
    # their full names (request_key_daemon.launch.RESERVED).
    parser = OneLineParser(
        prog="request-key-daemon", epilog=EXAMPLES, allow_abbrev=False,
        description="Serve a container's request_key upcalls inside the container.")
    parser.add_argument("--container-fd", type=int, metavar="FD",
                        help="fd of the container to serve")
    parser.add_argument("--config-dir", type=Path, default=Path("/etc"), metavar="DIR",
                        help="where request-key.conf and request-key.d/ are (default /etc)")
    parser.add_argument("--policy", type=Path, metavar="FILE",
                        help="policy file (TOML, or Rego if it ends in .rego); default: allow all")
    parser.add_argument("--policy-debug", type=Path, metavar="FILE",
                        help="append each decision's inputs as JSON lines here")
    parser.add_argument("--type", action="append", dest="types", metavar="TYPE",
                        help="key type to intercept (repeat; default: *)")
    parser.add_argument("--pin", default="", metavar="KINDS",
                        help="namespace kinds to pin, comma-separated (uts,net,...)")
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help="threads that serve requests at once (default 4)")
    parser.add_argument("--deadline", type=float, default=20.0, metavar="SECONDS",
                        help="seconds a handler may take (default 20, below the kernel's 30)")
    parser.add_argument("--ready-fd", type=int, metavar="FD",
                        help="write one byte here once serving (readiness for the launcher)")
    parser.add_argument("--syslog", nargs="?", const="/dev/log", metavar="SOCKET",
                        help="log to syslog (default socket /dev/log), not stderr")
    parser.add_argument("--control", type=Path, metavar="SOCKET",
                        help="control socket (default /run/request-key-daemon-<id>.sock)")
    parser.add_argument("--ctl", nargs="+", metavar=("SOCKET", "CMD"),
                        help="client: send CMD (status, stats, reload, set-policy PATH) "
                             "to the daemon at SOCKET and print the answer")
    parser.add_argument("--check-policy", nargs=2, metavar=("POLICY", "INPUTS"),
                        help="replay a --policy-debug log against POLICY and exit")
    parser.add_argument("--explain", nargs=4, metavar=("OP", "TYPE", "DESC", "CALLOUT"),
                        help="print which file and line would serve this request, its "
                             "wildness, argv and the policy's decision; serve nothing")
    parser.add_argument("--uid", type=int, default=os.getuid(),
                        help="with --explain: the requester's uid (%%u, the policy)")
    parser.add_argument("--gid", type=int, default=os.getgid(),
                        help="with --explain: the requester's gid (%%g)")
    parser.add_argument("--comm", default="", help="with --explain: the requester's comm")
    webhook = parser.add_argument_group("admission review of each upcall (after the policy)")
    add_webhook_arguments(webhook)
    return parser


def setup_logging(syslog: str | None) -> RequestLog:
    """One line per request on stderr, or to the syslog socket ``syslog``
    (the daemon facility: it is a system service's log).  Returns where
    the per-request lines go (see request_log.py)."""
    handler: logging.Handler = logging.handlers.SysLogHandler(
        address=syslog, facility=logging.handlers.SysLogHandler.LOG_DAEMON) \
        if syslog else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    # The line shows the message only: skip what every record would
    # otherwise collect for nothing (the logging HOWTO's "Optimization":
    # the caller's frame, thread, process and multiprocessing names).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger("request-key-daemon")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    return RequestLog(root) if syslog else RequestLog.on_stream(sys.stderr, root)


def check_policy(policy_file: Path, inputs_file: Path) -> int:
    from request_key_daemon.conf import printable
    from request_key_daemon.policy import PolicyError, load_policy, replay

    try:
        policy = load_policy(policy_file)
        lines = inputs_file.read_text().splitlines()
        results = replay(policy, lines)
    except (OSError, PolicyError, ValueError, KeyError) as err:
        print(f"request-key-daemon: {err}", file=sys.stderr)
        return 2
    changed = 0
    for inputs, before, now in results:
        verdict = "allow" if now.allowed else "deny"
        mark = "" if now.allowed == before.allowed else "  (was " + \
            ("allow" if before.allowed else "deny") + ")"
        changed += bool(mark)
        fields = (inputs.op, inputs.type, inputs.description, inputs.comm, now.reason)
        op, key_type, desc, comm, reason = (printable(field.encode("utf-8", "surrogateescape"))
                                            for field in fields)
        print(f"{verdict:5s} {op} {key_type}:{desc} uid={inputs.uid} comm={comm} "
              f"container={inputs.container_id}: {reason}{mark}")
    print(f"{len(results)} decisions replayed, {changed} differ")
    return 1 if changed else 0


def explain(opts: argparse.Namespace) -> int:
    from request_key_daemon.explain import ExplainArgs
    from request_key_daemon.explain import explain as run_explain
    from request_key_daemon.policy import Policy, PolicyError, load_policy

    try:
        policy = load_policy(opts.policy) if opts.policy else Policy.allow_all()
    except PolicyError as err:
        print(f"request-key-daemon: {err}", file=sys.stderr)
        return 2
    op, key_type, desc, callout = (os.fsencode(arg) for arg in opts.explain)
    return run_explain(ExplainArgs(op, key_type, desc, callout, opts.config_dir, policy,
                                   uid=opts.uid, gid=opts.gid, comm=opts.comm))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    opts = parser.parse_args(argv)
    if opts.ctl:
        check_ctl_args(parser, opts.ctl)
    elif not (opts.check_policy or opts.explain) and opts.container_fd is None:
        parser.error("--container-fd is required to serve (or give --explain, "
                     "--check-policy or --ctl)")
    if opts.check_policy:
        return check_policy(Path(opts.check_policy[0]), Path(opts.check_policy[1]))
    if opts.explain:
        return explain(opts)
    if opts.ctl:
        return ctl(opts.ctl)
    request_log = setup_logging(opts.syslog)
    from kcont import upcalls
    from request_key_daemon.daemon import Daemon
    from request_key_daemon.policy import Policy, PolicyError, load_policy
    from request_key_daemon.serve import Server

    try:
        policy = load_policy(opts.policy) if opts.policy else Policy.allow_all()
        mask = upcalls.ns_mask([k for k in opts.pin.split(",") if k])
        server = Server(opts.config_dir, policy, opts.deadline, decisions=opts.policy_debug,
                        webhook=webhook_from(opts))
        daemon = Daemon(opts.container_fd, server, types=opts.types or ["*"], ns_mask=mask,
                        workers=opts.workers, policy_path=opts.policy,
                        request_log=request_log)
        # The container's name, for policies that name it (TOML container =,
        # Rego input.container.name).
        from kcont.container import fdinfo
        from kcont.proc import unescape

        server.container_name = unescape(fdinfo(opts.container_fd).get("name", ""))
    except (OSError, PolicyError, ValueError) as err:
        print(f"request-key-daemon: {err}", file=sys.stderr)
        return 1
    from request_key_daemon.control import ControlServer

    path = opts.control or Path(f"/run/request-key-daemon-{daemon.container_id}.sock")
    try:
        control = ControlServer(path, daemon.control)
    except OSError as err:
        print(f"request-key-daemon: control socket {path}: {err.strerror}", file=sys.stderr)
        return 1
    daemon.install_signals()
    if opts.ready_fd is not None:
        os.write(opts.ready_fd, READY_BYTE)
        os.close(opts.ready_fd)
    try:
        daemon.run({control.fileno(): control.handle_ready})
    finally:
        control.close()
    return 0


def check_ctl_args(parser: argparse.ArgumentParser, args: list[str]) -> None:
    """``--ctl SOCKET CMD [PATH]``: a wrong count is a usage error (exit 2)."""
    if len(args) < 2:
        parser.error("--ctl needs SOCKET and CMD: --ctl SOCKET CMD [PATH]")
    if args[1] == "set-policy" and len(args) != 3:
        parser.error("--ctl SOCKET set-policy needs a PATH")
    if args[1] != "set-policy" and len(args) != 2:
        parser.error(f"--ctl SOCKET {args[1]} takes no PATH")


def ctl(args: list[str]) -> int:
    import json

    from request_key_daemon.control import ProtocolError, request

    message: dict[str, str] = {"cmd": args[1]}
    if args[1] == "set-policy":
        message["path"] = str(Path(args[2]).resolve())
    try:
        answer = request(Path(args[0]), message)
    except (OSError, ProtocolError) as err:
        print(f"request-key-daemon: {args[0]}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=1, sort_keys=True))
    return 0 if answer.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
