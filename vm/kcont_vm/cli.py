"""The ``kcont-vm`` command line: setup, build, run, shell, test, demo, tree, export.

Standard library only at import time (``setup`` runs before the venv
exists); each command imports what it needs.  Every failure the user can
act on is one line on stderr and a distinct exit code (errors.EXIT_*).
The parser is kcont's shared one (kcont.one_line_parser, standard library
only too), so the Makefile puts the checkout itself on PYTHONPATH beside
``vm`` for the runs before the project is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kcont_vm.errors import KcontVmError
from kcont_vm.paths import DEFAULT_PROFILE, PROFILES, repo_root

try:
    from kcont.one_line_parser import OneLineParser
except ModuleNotFoundError as missing:
    # ``PYTHONPATH=vm python3 -m kcont_vm`` from a checkout where nothing is
    # installed yet: kcont is the checkout's own, beside vm/.
    if missing.name != "kcont":
        raise
    sys.path.append(str(repo_root()))
    from kcont.one_line_parser import OneLineParser

KEYUTILS_MODES = ("include", "only", "skip")

EPILOG = """\
examples:
  kcont-vm setup                    install packages, venv, keyutils source
  kcont-vm build --profile perf     build (or reuse) the perf kernel
  kcont-vm run -- uname -r          boot the debug kernel, run one command
  kcont-vm run -- keyctl show @s
  kcont-vm shell                    interactive shell in the guest
  kcont-vm test -k keyring          host tests, then guest tests in one boot
  kcont-vm tree && cd ~/.cache/kcont/tree   edit the series as commits
  kcont-vm export                   write it back to kernel/patches/
  kcont-vm bisect-build --profile perf   build the series one patch at a time
  kcont-vm mainline                 build it with Debian's patches to its files reverted

exit codes: 0 ok, 1 tests failed, 2 usage, 3 setup, 4 build,
            121 kernel report on the console, 255 guest died;
            `run` otherwise returns the command's own exit code.
"""


def make_parser() -> OneLineParser:
    parser = OneLineParser(prog="kcont-vm", description="Build the kcont kernel series and "
                           "run commands and the test suite in QEMU.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    def profile_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE,
                       help="kernel profile (default: %(default)s)")

    sub.add_parser("setup", help="install what is missing (apt, venv, keyutils source)")

    p = sub.add_parser("build", help="build the kernel for a profile, unless cached")
    profile_opt(p)
    p.add_argument("--force", action="store_true", help="rebuild from scratch")

    p = sub.add_parser("run", help="boot the kernel and run CMD in the guest")
    profile_opt(p)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument("--memory", default="2G")
    p.add_argument("--console", action="store_true", help="echo the kernel console too")
    p.add_argument("--no-kmemleak", action="store_true", help="skip the final kmemleak scan")
    p.add_argument("--dry-run", action="store_true", help="print the vng command, do not boot")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")

    p = sub.add_parser("shell", help="interactive shell in the guest")
    profile_opt(p)

    p = sub.add_parser("test", help="host tests, then all guest tests in one boot")
    profile_opt(p)
    p.add_argument("--host-only", action="store_true")
    p.add_argument("--guest-only", action="store_true")
    p.add_argument("--keyutils", choices=KEYUTILS_MODES, default="include",
                   help="keyutils' own suite in the same boot: include (default, what "
                        "`make check` runs), only (`make keyutils`), or skip (a quicker "
                        "edit-test loop; the summary says it was skipped)")
    p.add_argument("--keyutils-profile", choices=PROFILES, default="perf",
                   help="kernel for keyutils' suite (default %(default)s: under TCG it "
                        "takes over an hour on the debug kernel, minutes on perf)")
    p.add_argument("--serial", action="store_true",
                   help="boot the perf stage after the debug one instead of beside it "
                        "(for a machine with one core)")
    p.add_argument("--ktap", type=Path, metavar="FILE",
                   help="also write the run's KTAP document here (it is always written "
                        "to test-results/results.ktap, beside the JUnit XML)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")

    p = sub.add_parser("soak", help="the reliability suites for HOURS in one debug boot; "
                                    "writes soak-results/report.md")
    p.add_argument("--hours", type=float, default=1.0, help="how long (default 1)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="examples per round, as a multiple of make check's budget")
    profile_opt(p)

    p = sub.add_parser("bisect-build", help="build the series one patch at a time (resumes "
                                            "where a stopped run left off)")
    p.add_argument("--profile", choices=PROFILES, default="perf",
                   help="kernel profile (default: %(default)s)")

    sub.add_parser("mainline", help="apply and build the series (perf profile) on the base "
                                    "with Debian's own patches to its files reverted")

    p = sub.add_parser("demo", help="build, boot, show the kernel and a classic upcall")
    profile_opt(p)

    p = sub.add_parser("tree", help="git tree of the base with the series as commits")
    p.add_argument("--path", type=Path, help="where (default: $KCONT_CACHE/tree)")
    p.add_argument("--force", action="store_true", help="replace an existing tree")

    p = sub.add_parser("export", help="write the tree's commits to kernel/patches/ "
                                      "and kernel/harness/")
    p.add_argument("--path", type=Path, help="the tree (default: $KCONT_CACHE/tree)")
    p.add_argument("--version", type=int, metavar="N",
                   help="the series' version, as in [RFC PATCH vN] (default: the "
                        "current cover letter's)")
    return parser


def _strip_dashes(args: list[str]) -> list[str]:
    return args[1:] if args[:1] == ["--"] else args


def dispatch(opts: argparse.Namespace) -> int:
    if opts.command == "setup":
        from kcont_vm.install import setup

        return setup()

    from kcont_vm.paths import Cache, repo_root

    cache = Cache.default()
    if opts.command == "build":
        from kcont_vm.build import build

        build(opts.profile, force=opts.force)
        return 0
    if opts.command == "run":
        from kcont_vm.build import build
        from kcont_vm.runner import RunSpec, boot, check_command

        cmd = _strip_dashes(opts.cmd)
        check_command(cmd)
        image = build(opts.profile).bzimage
        spec = RunSpec(bzimage=image, cmd=cmd, profile=opts.profile,
                       timeout=opts.timeout, memory=opts.memory,
                       echo_console=opts.console, kmemleak=not opts.no_kmemleak)
        return boot(spec, cache, dry_run=opts.dry_run).exit_code
    if opts.command == "shell":
        from kcont_vm.build import build
        from kcont_vm.runner import shell

        return shell(build(opts.profile).bzimage, cache)
    if opts.command == "test":
        from kcont_vm.testrun import run_tests

        return run_tests(opts.profile, _strip_dashes(opts.pytest_args),
                         host_only=opts.host_only, guest_only=opts.guest_only,
                         keyutils=opts.keyutils, keyutils_profile=opts.keyutils_profile,
                         ktap=opts.ktap, parallel=not opts.serial)
    if opts.command == "soak":
        from kcont_vm.soak import run_soak

        return run_soak(opts.hours, opts.profile, opts.scale)
    if opts.command == "bisect-build":
        from kcont_vm.bisect_build import run_bisect_build

        return run_bisect_build(opts.profile, cache)
    if opts.command == "mainline":
        from kcont_vm.mainline import run_mainline

        return run_mainline(cache)
    if opts.command == "demo":
        from kcont_vm.build import build
        from kcont_vm.runner import RunSpec, boot

        image = build(opts.profile).bzimage
        script = repo_root() / "vm" / "demo.sh"
        spec = RunSpec(bzimage=image, cmd=["bash", str(script)], profile=opts.profile)
        return boot(spec, cache).exit_code
    if opts.command in ("tree", "export"):
        from kcont_vm import source
        from kcont_vm.series import load_series

        kernel = repo_root() / "kernel"
        patches = kernel / "patches"
        path = (opts.path or cache.tree).resolve()
        if opts.command == "tree":
            source.make_tree(cache, load_series(patches), path, opts.force,
                             harness=load_series(kernel / "harness"))
            print(f"kcont-vm: tree ready at {path}: branch {source.DEV_BRANCH} is the series, "
                  f"{source.HARNESS_BRANCH} (checked out) adds the harness stack; commit your "
                  f"changes (new files need `git add -f`: Debian's .gitignore), then "
                  f"`kcont-vm export`; edit the cover letter with "
                  f"`git branch --edit-description {source.DEV_BRANCH}`")
            return 0
        written = source.export_stacks(path, kernel, opts.version)
        print(f"kcont-vm: wrote {len(written)} files to {patches} and {kernel / 'harness'}")
        clean, report = source.checkpatch(path, written)
        print(report, end="")
        return 0 if clean else 1
    raise AssertionError(opts.command)


def main(argv: list[str] | None = None) -> int:
    opts = make_parser().parse_args(argv)
    try:
        return dispatch(opts)
    except KcontVmError as err:
        print(f"kcont-vm: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("kcont-vm: interrupted", file=sys.stderr)
        return 130
