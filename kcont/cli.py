"""The ``kcont`` command: run a command as a container's init, list containers.

  kcont run [--name N] [--ns user,pid,mnt,net,uts,ipc,cgroup]
            [--trusted|--untrusted] [--daemon [--daemon-config DIR]] -- CMD...
  kcont ls [--json]
  kcont model [NAME] [--boundary on|off]
  kcont userns-intercept --userns PATH (--type T --queue SERIAL [--ns KINDS] | --remove [--type T])

Every error is one line on stderr.  ``run`` exits as env(1) does
(kcont.exit_codes): 125 if kcont itself failed, 126 if CMD cannot be
executed, 127 if it is not found, else CMD's status (128+N if signal N
killed it); usage errors exit 2.  Nothing here imports the compiled
binding at module level, so the parser (and the man page built from it)
needs no kernel headers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from kcont.exit_codes import EXIT_CANCELED, EXIT_USAGE, exec_failure, wait_status
from kcont.forward_signals import forwarding
from kcont.one_line_parser import OneLineParser

if TYPE_CHECKING:
    from kcont.proc import ContainerInfo

# `kcont ls` failing (no /proc/containers, say) is a plain failure, as lsns's.
EXIT_LS_FAILED = 1

__all__ = ["EXIT_CANCELED", "EXIT_LS_FAILED", "EXIT_USAGE", "main", "make_parser"]

EPILOG = """\
examples:
  kcont run --ns pid,mnt,uts -- hostname
  kcont run --name web --untrusted -- sh -c 'cat /proc/containers'
  kcont ls --json
  kcont model userns-walk --boundary on
  kcont userns-intercept --userns /proc/1234/ns/user --type user --queue 123456789

exit status of run: CMD's status (128+N if signal N killed it); 125 if kcont
run itself failed (container refused, admission denied, daemon not ready);
126 if CMD cannot be executed; 127 if CMD is not found; 2 for a usage error.
"""


def make_parser() -> OneLineParser:
    parser = OneLineParser(prog="kcont", description="Containers as kernel objects.",
                           epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="create a container, run CMD in it as init, wait",
                         description="Create a container, fork CMD into it as its init, "
                                     "wait, and exit with CMD's status.")
    run.set_defaults(usage_error=run.error)
    run.add_argument("--name", default="kcont-run", help="container name (default %(default)s)")
    run.add_argument("--ns", default="", type=parse_ns_list,
                     help="comma-separated new namespaces: user,pid,mnt,net,uts,ipc,cgroup")
    trust = run.add_mutually_exclusive_group()
    trust.add_argument("--trusted", dest="trusted", action="store_const", const=True,
                       help="make the container trusted (CAP_SYS_ADMIN in the init user "
                            "namespace)")
    trust.add_argument("--untrusted", dest="trusted", action="store_const", const=False,
                       help="make the container untrusted (default: as the sysctl "
                            "kernel.keys.container_default_trust says; never trusted "
                            "inside an untrusted container)")
    run.add_argument("--daemon", action="store_true",
                     help="start request-key-daemon in the container first, stop it after CMD")
    run.add_argument("--daemon-config", metavar="DIR",
                     help="the daemon's --config-dir (default: /etc as the container sees it)")
    run.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the daemon (repeat), e.g. --daemon-arg=--pin=uts")
    from kcont.admission_args import add_webhook_arguments

    add_webhook_arguments(run.add_argument_group(
        "admission review of the container's creation (an AdmissionReview to a webhook)"))
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                     help="the command to run as the container's init")
    ls = sub.add_parser("ls", help="list /proc/containers",
                        description="List the caller's container and its descendants, "
                                    "from /proc/containers.")
    ls.add_argument("-J", "--json", action="store_true",
                    help="a JSON array of objects with the fields name, id, use, flags, "
                         "trusted, owner, group, current")
    add_model_parsers(sub)
    return parser


def add_model_parsers(sub: argparse._SubParsersAction[OneLineParser]) -> None:
    """``model`` and ``userns-intercept``: the routing models' switch and
    the user-namespace models' registration."""
    from kcont.upcall_models import MODELS

    model = sub.add_parser("model", help="show or select the upcall routing model",
                           description="Show the routing model in force "
                                       "(kernel.keys.upcall_model), or select one; the "
                                       "kernel refuses a change while registrations of "
                                       "the current one exist.")
    model.set_defaults(usage_error=model.error)
    model.add_argument("name", nargs="?", choices=MODELS, metavar="NAME",
                       help="one of: " + ", ".join(MODELS))
    model.add_argument("--boundary", choices=("on", "off"),
                       help="userns models: refuse (on) rather than hand to the host's "
                            "helper a request from outside the init namespaces")
    reg = sub.add_parser("userns-intercept",
                         help="register a queue keyring for a user namespace's upcalls",
                         description="Add (or with --remove, remove) a registration of the "
                                     "userns-walk or userns-intercept model "
                                     "(KEYCTL_USERNS_INTERCEPT).")
    reg.set_defaults(usage_error=reg.error)
    reg.add_argument("--userns", required=True, metavar="PATH",
                     help="the user namespace, e.g. /proc/PID/ns/user")
    reg.add_argument("--type", dest="key_type", metavar="TYPE",
                     help='key type, or "*" for every type')
    reg.add_argument("--ns", default="", type=parse_ns_list,
                     help="userns-intercept: comma-separated kinds of this process's "
                          "namespaces the requester must share")
    reg.add_argument("--queue", type=int, default=0, metavar="SERIAL",
                     help="the queue keyring (Write permission needed)")
    reg.add_argument("--remove", action="store_true",
                     help="remove the registrations with this type and --ns (all without "
                          "--type)")


def parse_ns_list(text: str) -> list[str]:
    """``--ns``: names as /proc/PID/ns/ spells them (``fs`` for ``mnt`` too),
    checked here without the binding so that a typo is a usage error."""
    from kcont.namespaces import kinds_mask

    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        kinds_mask("mnt" if name == "fs" else name for name in names)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return names


def fail(message: str) -> int:
    """``kcont run`` could not run CMD: one line, 125."""
    print(f"kcont run: {message}", file=sys.stderr)
    return EXIT_CANCELED


def describe(err: OSError) -> str:
    """``call: strerror``, naming the syscall (kcont._binding.oserror) or file."""
    what = getattr(err, "call", None) or err.filename
    return f"{what}: {err.strerror}" if what else str(err.strerror or err)


def cmd_run(opts: argparse.Namespace, cmd: list[str]) -> int:
    """Create the container and run CMD in it; the exit code (kcont.exit_codes)."""
    try:
        denied = admission_denied(opts, cmd)
    except (OSError, ValueError) as err:
        return fail(f"admission review: {err}")
    if denied:
        return fail(denied)
    try:
        from kcont.container import Container

        container = Container(opts.name, ns=opts.ns, trusted=opts.trusted)
    except ImportError as err:
        return fail(f"the compiled binding is missing ({err}); install the project")
    except OSError as err:
        return fail(describe(err))
    except ValueError as err:
        return fail(str(err))
    with container:
        if opts.daemon:
            from kcont.supervise import run_with_daemon

            daemon_argv = list(opts.daemon_arg)
            if opts.daemon_config:
                daemon_argv += ["--config-dir", opts.daemon_config]
            return run_with_daemon(container, cmd, daemon_argv)
        # The signal rules hold from before the fork: no moment in which a
        # Ctrl-C ends kcont while CMD runs on (kcont.forward_signals).
        with forwarding() as forwarder:
            try:
                pid = container.spawn(cmd)
            except OSError as err:
                if not str(getattr(err, "call", "")).startswith("exec "):
                    raise  # fork_into_container failed: kcont's failure, not CMD's
                print(f"kcont run: {cmd[0]}: {err.strerror}", file=sys.stderr)
                return exec_failure(err.errno)
            forwarder.target(pid)
            return wait_status(container.wait(pid))


def admission_denied(opts: argparse.Namespace, cmd: list[str]) -> str | None:
    """Ask the admission webhook, if one is given, about creating this
    container; the reason it is refused, or None.  The review carries the
    container as a kcont.dev/v1 Container object."""
    from kcont.admission_args import webhook_from

    webhook = webhook_from(opts)
    if webhook is None:
        return None
    trust = {True: "trusted", False: "untrusted", None: "inherited"}[opts.trusted]
    spec = {"namespaces": sorted(opts.ns), "trust": trust, "command": cmd,
            "requestKeyDaemon": bool(opts.daemon)}
    verdict = webhook.review("Container", "containers", "CREATE", opts.name, {"spec": spec},
                             os.getuid(), os.getgid())
    print(f"kcont run: admission review: {verdict.line()}", file=sys.stderr)
    return None if verdict.allowed else f"admission webhook refused the container: " \
        f"{verdict.message}"


_KERNEL_ESCAPED = frozenset(" \t\n\v\f\r\\")


def escape_name(name: str) -> str:
    """A name as the table shows it: whitespace, ``\\``, control and
    non-UTF-8 bytes as octal ``\\ooo``, as /proc/containers escapes them,
    so a hostile name can neither split a column nor forge a line."""
    out = []
    for char in name:
        if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\{ord(char) - 0xDC00:03o}")
        elif char in _KERNEL_ESCAPED or not char.isprintable():
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append(char)
    return "".join(out)


def format_table(rows: list[ContainerInfo]) -> str:
    header = f"{'NAME':16} {'ID':>6} {'USE':>4} {'FL':4} {'TRUST':9} {'OWNER':>5} {'GROUP':>5}"
    lines = [header]
    for r in rows:
        lines.append(f"{escape_name(r.name):16} {r.id:>6} {r.use:>4} {r.flags:4} "
                     f"{'trusted' if r.trusted else 'untrusted':9} {r.owner:>5} {r.group:>5}"
                     f"{'  <current>' if r.current else ''}")
    return "\n".join(lines)


def format_json(rows: list[ContainerInfo]) -> str:
    """``kcont ls --json``: one array, an object per container, the fields of
    /proc/containers by their lower-case names (as ``lsns -J`` and ``ip -j``
    give theirs).  Names are unescaped; a byte that is not UTF-8 appears as
    a ``\\udcXX`` escape (Python's surrogateescape), so no name is lost."""
    return json.dumps([dataclasses.asdict(r) for r in rows])


def cmd_ls(opts: argparse.Namespace) -> int:
    from kcont import proc

    rows = proc.read()  # names that are not UTF-8 kept byte for byte
    print(format_json(rows) if opts.json else format_table(rows))
    return 0


def restore_signals() -> None:
    """SIGPIPE and SIGXFSZ back to their defaults.

    Python ignores them, and an ignored signal survives exec: CMD (and the
    daemon path's init, and so CMD there) would see EPIPE where a shell's
    child dies quietly; ``kcont ls | head`` ends the same way.
    """
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def cmd_model(opts: argparse.Namespace) -> int:
    from kcont import upcall_models

    if opts.name is None and opts.boundary is None:
        boundary = "on" if upcall_models.boundary() else "off"
        print(f"{upcall_models.active()} boundary={boundary}")
        return 0
    name = opts.name or upcall_models.active()
    upcall_models.select(name, None if opts.boundary is None else opts.boundary == "on")
    return 0


def cmd_userns_intercept(opts: argparse.Namespace) -> int:
    from kcont import upcalls

    if not opts.remove and (opts.key_type is None or not opts.queue):
        opts.usage_error("a registration needs --type and --queue (or give --remove)")
    fd = os.open(opts.userns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if opts.remove:
            removed = upcalls.remove_userns_intercepts(fd, opts.key_type, opts.ns)
            print(f"removed {removed}")
        else:
            upcalls.userns_intercept(fd, opts.key_type, opts.ns, opts.queue)
    finally:
        os.close(fd)
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = make_parser().parse_args(argv)
    handlers = {"ls": cmd_ls, "model": cmd_model, "userns-intercept": cmd_userns_intercept}
    if opts.command in handlers:
        # One line on failure, and status 1, as lsns and sysctl do.
        restore_signals()
        try:
            return handlers[opts.command](opts)
        except OSError as err:
            print(f"kcont {opts.command}: {describe(err)}", file=sys.stderr)
        except ValueError as err:
            print(f"kcont {opts.command}: {err}", file=sys.stderr)
        return EXIT_LS_FAILED
    cmd = opts.cmd[1:] if opts.cmd[:1] == ["--"] else opts.cmd
    if not cmd:
        opts.usage_error("no command given: kcont run [OPTIONS] -- CMD...")
    if opts.daemon:
        from request_key_daemon.launch import check_extra

        try:
            check_extra(opts.daemon_arg)
        except ValueError as err:
            opts.usage_error(f"--daemon-arg: {err}")
    restore_signals()
    try:
        return cmd_run(opts, cmd)
    except OSError as err:
        return fail(describe(err))
    except ValueError as err:
        return fail(str(err))
    except KeyboardInterrupt:
        # Before CMD started (once it runs, kcont ignores SIGINT): one line,
        # and the status a shell gives a command that SIGINT ended.
        print("kcont run: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
