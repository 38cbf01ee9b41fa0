"""The ``kcont`` command: run a command as a container's init, list containers.

  kcont run [--name N] [--ns user,pid,mnt,net,uts,ipc,cgroup]
            [--trusted|--untrusted] [--daemon [--daemon-config DIR]] -- CMD...
  kcont ls

Every error is one line on stderr and a non-zero exit; ``run`` exits with
CMD's status (128+N if a signal N killed it), as a shell does.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE = 2
EXIT_FAILED = 1


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="kcont", description="Containers as kernel objects.",
                           epilog="examples:\n  kcont run --ns pid,mnt,uts -- hostname\n"
                                  "  kcont run --name web --untrusted -- sh -c 'cat /proc/"
                                  "containers'\n  kcont ls",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run = sub.add_parser("run", help="create a container, run CMD in it as init, wait")
    run.add_argument("--name", default="kcont-run", help="container name (default %(default)s)")
    run.add_argument("--ns", default="", type=parse_ns_list,
                     help="comma-separated new namespaces: user,pid,mnt,net,uts,ipc,cgroup")
    trust = run.add_mutually_exclusive_group()
    trust.add_argument("--trusted", dest="trusted", action="store_const", const=True)
    trust.add_argument("--untrusted", dest="trusted", action="store_const", const=False)
    run.add_argument("--daemon", action="store_true",
                     help="start request-key-daemon in the container first, stop it after CMD")
    run.add_argument("--daemon-config", metavar="DIR",
                     help="the daemon's --config-dir (default: /etc as the container sees it)")
    run.add_argument("--daemon-arg", action="append", default=[], metavar="ARG",
                     help="extra argument for the daemon (repeat), e.g. --daemon-arg=--pin=uts")
    from kcont.admission_args import add_webhook_arguments

    add_webhook_arguments(run.add_argument_group(
        "admission review of the container's creation (an AdmissionReview to a webhook)"))
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    sub.add_parser("ls", help="list /proc/containers")
    return parser


def parse_ns_list(text: str) -> list[str]:
    from kcont.container import namespace_flags

    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        namespace_flags(names)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return names


def exit_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def cmd_run(opts: argparse.Namespace) -> int:
    from kcont.container import Container

    cmd = opts.cmd[1:] if opts.cmd[:1] == ["--"] else opts.cmd
    if not cmd:
        print("kcont run: no command given: kcont run [OPTIONS] -- CMD...", file=sys.stderr)
        return EXIT_USAGE
    denied = admission_denied(opts, cmd)
    if denied:
        print(f"kcont run: {denied}", file=sys.stderr)
        return EXIT_FAILED
    with Container(opts.name, ns=opts.ns, trusted=opts.trusted) as container:
        if opts.daemon:
            from kcont.supervise import run_with_daemon

            daemon_argv = list(opts.daemon_arg)
            if opts.daemon_config:
                daemon_argv += ["--config-dir", opts.daemon_config]
            return run_with_daemon(container, cmd, daemon_argv)
        container.spawn(cmd)
        return exit_status(container.wait())


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


def format_table(rows: list) -> str:
    header = f"{'NAME':16} {'ID':>6} {'USE':>4} {'FL':4} {'TRUST':9} {'OWNER':>5} {'GROUP':>5}"
    lines = [header]
    for r in rows:
        lines.append(f"{r.name:16} {r.id:>6} {r.use:>4} {r.flags:4} "
                     f"{'trusted' if r.trusted else 'untrusted':9} {r.owner:>5} {r.group:>5}"
                     f"{'  <current>' if r.current else ''}")
    return "\n".join(lines)


def cmd_ls(opts: argparse.Namespace) -> int:
    from kcont import proc

    print(format_table(proc.read()))
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = make_parser().parse_args(argv)
    try:
        return cmd_run(opts) if opts.command == "run" else cmd_ls(opts)
    except OSError as err:
        what = getattr(err, "call", None) or err.filename or "kcont"
        print(f"kcont {opts.command}: {what}: {err.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as err:
        print(f"kcont {opts.command}: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
