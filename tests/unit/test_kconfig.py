"""Config fragments: parsing, merge order, verification of the final .config."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm import kconfig
from kcont_vm.errors import BuildError

ROOT = Path(__file__).resolve().parents[2]


def test_parse_set_and_unset() -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S="x y"\n# comment\nCONFIG_N=16000\n'
    assert kconfig.parse_config(text) == {"CONFIG_A": "y", "CONFIG_B": "n",
                                          "CONFIG_S": '"x y"', "CONFIG_N": "16000"}


def test_unset_request_is_met_by_absence() -> None:
    assert kconfig.unmet({"CONFIG_DRM": "n"}, {}) == []


def test_dropped_request_is_reported() -> None:
    problems = kconfig.unmet({"CONFIG_BPF_JIT": "y", "CONFIG_KEYS": "y"},
                             {"CONFIG_KEYS": "y"})
    assert problems == ["CONFIG_BPF_JIT: wanted y, got n"]


def test_option_the_tree_does_not_define_is_skipped() -> None:
    requests = {"CONFIG_CONTAINERS": "y", "CONFIG_KEYS": "y"}
    final = {"CONFIG_KEYS": "n"}
    problems = kconfig.unmet(requests, final, lambda name: name != "CONFIG_CONTAINERS")
    assert problems == ["CONFIG_KEYS: wanted y, got n"]


def test_defined_in_reads_kconfig(git_repo: Path) -> None:
    (git_repo / "Kconfig").write_text("config FOO\n\tbool\nmenuconfig BAR\n\tbool\n")
    defined = kconfig.defined_in(git_repo)
    import subprocess

    subprocess.run(["git", "-C", str(git_repo), "add", "Kconfig"], check=True)
    assert defined("CONFIG_FOO") and defined("CONFIG_BAR")
    assert not defined("CONFIG_FO") and not defined("CONFIG_BAZ")


def test_modules_left() -> None:
    assert kconfig.modules_left({"CONFIG_A": "m", "CONFIG_B": "y"}) == ["CONFIG_A"]


def test_fragment_order_common_then_profile() -> None:
    names = [p.name for p in kconfig.fragments(ROOT / "kernel" / "config", "debug")]
    assert names[-1] == "debug.config"
    assert names[:-1] == sorted(names[:-1])


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="no config profile 'nope'"):
        kconfig.fragments(tmp_path, "nope")


def test_later_fragment_wins(tmp_path: Path) -> None:
    a, b = tmp_path / "a.config", tmp_path / "b.config"
    a.write_text("CONFIG_X=y\n")
    b.write_text("# CONFIG_X is not set\n")
    assert kconfig.merged_requests([a, b]) == {"CONFIG_X": "n"}


REQUIRED_BY_ISSUE_2 = (
    "KEYS", "KEY_NOTIFICATIONS", "WATCH_QUEUE", "KEYS_REQUEST_CACHE", "DNS_RESOLVER",
    "USER_NS", "PID_NS", "NET_NS", "UTS_NS", "IPC_NS", "CGROUPS", "BPF_SYSCALL", "BPF_JIT",
    "BPF_EVENTS", "KPROBES", "KPROBE_EVENTS", "FTRACE_SYSCALLS", "IKHEADERS", "IKCONFIG_PROC",
    "OVERLAY_FS", "9P_FS", "VIRTIO_CONSOLE",
)
DEBUG_SET = ["KASAN", "KASAN_GENERIC", "PROVE_LOCKING", "DEBUG_ATOMIC_SLEEP", "DEBUG_KMEMLEAK"]


@pytest.mark.parametrize("profile", ["debug", "perf"])
def test_profiles_request_what_the_suite_needs(profile: str) -> None:
    requests = kconfig.merged_requests(kconfig.fragments(ROOT / "kernel" / "config", profile))
    for name in REQUIRED_BY_ISSUE_2:
        assert requests.get(f"CONFIG_{name}") == "y", name
    for name in DEBUG_SET:
        want = "y" if profile == "debug" else "n"
        assert requests.get(f"CONFIG_{name}", "n") == want, name
