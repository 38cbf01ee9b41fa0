"""The kcont-vm command line: one-line errors and distinct exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kcont_vm import cli, runner, testrun
from kcont_vm.cli import KEYUTILS_MODES, make_parser
from kcont_vm.errors import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


def kcont_vm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kcont_vm", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(ROOT / "vm"), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("args", [["bogus"], ["run", "--frob"], ["build", "--profile", "x"],
                                  []])
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = kcont_vm(*args)
    assert result.returncode == EXIT_USAGE
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("kcont-vm")


def test_command_not_found_fails_before_booting() -> None:
    result = kcont_vm("run", "--", "definitely-not-a-command-kcont")
    assert result.returncode == 127
    assert result.stderr.strip() == ("kcont-vm: definitely-not-a-command-kcont: command not "
                                     "found (the guest shares this machine's root filesystem)")


def test_run_without_command() -> None:
    result = kcont_vm("run")
    assert result.returncode == EXIT_USAGE
    assert "no command given" in result.stderr


def test_help_has_examples() -> None:
    text = cli.make_parser().format_help()
    assert "examples:" in text and "exit codes" in text


def test_vng_argv_tcg(tmp_path: Path) -> None:
    spec = runner.RunSpec(bzimage=tmp_path / "bzImage", cmd=["true"])
    argv = runner.vng_argv(spec, "tcg", tmp_path / "r", ["true"])
    assert "--disable-kvm" in argv and "--force-9p" in argv
    assert argv[argv.index("--rwdir") + 1] == str(tmp_path / "r")
    assert argv[argv.index("--exec") + 1] == "true"


def test_vng_argv_kvm_and_shell(tmp_path: Path) -> None:
    spec = runner.RunSpec(bzimage=tmp_path / "bzImage", cmd=[])
    argv = runner.vng_argv(spec, "kvm", None, None)
    assert "--disable-kvm" not in argv and "--exec" not in argv and "--verbose" not in argv


def test_guest_command_wraps_cmd(tmp_path: Path) -> None:
    spec = runner.RunSpec(bzimage=tmp_path / "b", cmd=["keyctl", "show"], kmemleak=False)
    argv = runner.guest_command(spec, tmp_path)
    assert argv[0] == "env" and argv[-2:] == ["keyctl", "show"]
    assert "--no-kmemleak" in argv and f"KCONT_RESULTS={tmp_path}" in argv
    assert runner.GUEST_WRAPPER.exists()


@pytest.mark.parametrize(("args", "mode"), [([], "include"), (["--keyutils", "only"], "only"),
                                            (["--keyutils", "skip"], "skip")])
def test_keyutils_modes(args: list[str], mode: str) -> None:
    """make check includes keyutils' suite by default; only/skip are explicit."""
    assert make_parser().parse_args(["test", *args]).keyutils == mode
    assert set(testrun.KEYUTILS_MARKERS) == set(KEYUTILS_MODES)


@pytest.mark.parametrize(("mode", "kprofile", "expected"), [
    ("include", "perf", [("guest", "debug", "not keyutils and not perf_boot"),
                         ("keyutils", "perf", "keyutils or kselftest or perf_boot")]),
    ("include", "debug", [("guest", "debug", None)]),
    ("only", "perf", [("keyutils", "perf", "keyutils or kselftest")]),
    ("skip", "perf", [("guest", "debug", "not keyutils")]),
])
def test_guest_stages(mode: str, kprofile: str, expected: list) -> None:
    """One boot per kernel profile; keyutils' suite is never dropped silently,
    the kselftests run on the perf kernel (the series alone) as well, and a
    perf_boot test runs in the perf boot when there are two, in the only
    boot otherwise (``--keyutils only`` asks for keyutils' suite alone)."""
    stages = testrun.guest_stages("debug", mode, kprofile)
    got = [(s.name, s.profile, s.markers[1] if s.markers else None) for s in stages]
    assert got == expected
    assert any(s.report_keyutils for s in stages) == (mode != "skip")


def test_perf_boot_tests_follow_the_perf_kernel() -> None:
    """Profiles swapped: the perf_boot tests stay on the perf kernel's
    boot, which is then the main one."""
    main, side = testrun.split_markers("perf", "debug")
    assert main == ["-m", "not keyutils"] and side == ["-m", "keyutils or kselftest"]
    main, side = testrun.split_markers("debug", "perf")
    assert "not perf_boot" in main[1] and "or perf_boot" in side[1]
