"""Every kcont command line reports a usage error as one line on stderr
and exits 2 (kcont.one_line_parser), run as the user runs it: a fresh
interpreter, the real entry module, a bad option."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kcont.one_line_parser import EXIT_USAGE, OneLineParser

ROOT = Path(__file__).resolve().parents[2]


# (program name, module run with -m, argv that is wrong)
TOOLS = [
    ("kcont", "kcont.cli", ["--frobnicate"]),
    ("kcont run", "kcont.cli", ["run", "--frobnicate", "--", "true"]),
    ("kcont ls", "kcont.cli", ["ls", "--frobnicate"]),
    ("kcont run", "kcont.cli", ["run", "--ns", "pid,bogus", "--", "true"]),
    ("kcont run", "kcont.cli", ["run"]),
    ("request-key-daemon", "request_key_daemon.cli", ["--frobnicate"]),
    ("request-key-daemon", "request_key_daemon.cli", []),
    ("request-key-daemon", "request_key_daemon.cli", ["--ctl", "/run/x.sock"]),
    ("request-key-daemon", "request_key_daemon.cli", ["--ctl", "/run/x.sock", "set-policy"]),
    ("kcont-vm", "kcont_vm", ["--frobnicate"]),
    ("kcont-vm run", "kcont_vm", ["run", "--frobnicate"]),
    ("kcont-upcallsnoop", "kcont.probes.upcallsnoop", ["--frobnicate"]),
    # a hostile argument echoed back in the message adds no line
    ("kcont ls", "kcont.cli", ["ls", "--bogus\nkcont: forged line"]),
    ("kcont run", "kcont.cli", ["run", "--da=x\nforged", "--", "true"]),
    ("kcont run", "kcont.cli", ["run", "--daemon", "--daemon-arg=--ready-fd=1", "--", "true"]),
    ("request-key-daemon", "request_key_daemon.cli", ["--bogus\x1b[2J\nforged"]),
]


def run_module(module: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    # the source tree, as pytest's pythonpath has it: these run before any install
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        str(path) for path in (ROOT, ROOT / "userspace", ROOT / "vm")))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("prog,module,args", TOOLS)
def test_a_usage_error_is_one_line_and_exit_2(prog: str, module: str, args: list[str]) -> None:
    result = run_module(module, args)
    assert result.returncode == EXIT_USAGE, result
    assert result.stdout == ""
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{prog}: ")
    assert result.stderr.rstrip().endswith(f"(see {prog} --help)")


def test_help_is_not_an_error() -> None:
    for module in ("kcont.cli", "request_key_daemon.cli", "kcont_vm"):
        result = run_module(module, ["--help"])
        assert result.returncode == 0 and result.stderr == "", (module, result)
        assert result.stdout.startswith("usage: ")


def test_kcont_vm_and_the_shared_parser_agree_on_the_usage_code() -> None:
    from kcont_vm.errors import EXIT_USAGE as VM_USAGE

    assert VM_USAGE == EXIT_USAGE == 2


def _make_variable(name: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{name} := (.*)$", text, re.MULTILINE)
    assert match, f"Makefile has no {name}"
    return match.group(1).replace("$(CURDIR)", str(ROOT)).replace("$(VENV)", ".venv")


def test_make_setup_bootstraps_on_the_system_python() -> None:
    """``make setup`` runs kcont-vm on Debian's interpreter, before the venv
    or the project exist: the Makefile's PYTHONPATH must reach both
    kcont_vm and the kcont.one_line_parser it imports.  The project runs
    on Debian 12, whose /usr/bin/python3 `make setup` needs anyway: its
    absence is a failure here, not a skip."""
    words = _make_variable("BOOTSTRAP").split()
    env_words = [w for w in words if "=" in w and not w.startswith("-")]
    argv = words[len(env_words):]
    env = {"PATH": "/usr/bin:/bin", **dict(w.split("=", 1) for w in env_words)}
    result = subprocess.run([*argv, "--frobnicate"], cwd="/", env=env, capture_output=True,
                            text=True, check=False, timeout=60)
    assert argv[0] == "/usr/bin/python3"
    assert result.returncode == EXIT_USAGE, result.stderr
    assert result.stderr.startswith("kcont-vm: ") and result.stderr.count("\n") == 1


def test_every_tool_uses_the_shared_parser() -> None:
    from kcont.cli import make_parser as kcont_parser
    from kcont.probes.upcallsnoop import make_parser as snoop_parser
    from kcont_vm.cli import make_parser as vm_parser
    from request_key_daemon.cli import make_parser as daemon_parser

    for make in (kcont_parser, snoop_parser, vm_parser, daemon_parser):
        assert isinstance(make(), OneLineParser), make.__module__


def test_the_daemon_launcher_refuses_the_options_it_sets() -> None:
    """``--daemon-arg=--ready-fd=1`` would send the readiness byte to
    stdout; ``--ctl`` would turn the daemon into a client.  The daemon's
    parser takes no abbreviations, so no other spelling gets through."""
    from request_key_daemon import launch
    from request_key_daemon.cli import make_parser as daemon_parser

    for bad in (["--ready-fd=1"], ["--container-fd", "9"], ["--ctl", "s", "status"],
                ["--explain", "a", "b", "c", "d"], ["--check-policy=x"]):
        with pytest.raises(ValueError, match="set by the launcher"):
            launch.argv(3, 4, bad)
    argv = launch.argv(3, 4, ["--workers", "2"])
    assert argv[-4:] == ["--container-fd", "3", "--ready-fd", "4"]
    assert daemon_parser().allow_abbrev is False
