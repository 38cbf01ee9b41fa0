"""The guest runs the kernel kcont-vm built, with the config it asked for."""

from __future__ import annotations

import gzip
import os
import platform
from pathlib import Path

from kcont_vm import kconfig
from kcont_vm.paths import Cache

ROOT = Path(__file__).resolve().parents[2]


def running_config() -> dict[str, str]:
    return kconfig.parse_config(gzip.decompress(Path("/proc/config.gz").read_bytes()).decode())


def test_release_carries_kcont_localversion() -> None:
    assert platform.release().endswith("-kcont"), platform.release()
    assert platform.release().startswith("6.1.")


def test_running_config_honours_every_fragment() -> None:
    profile = os.environ["KCONT_PROFILE"]
    requests = kconfig.merged_requests(kconfig.fragments(ROOT / "kernel" / "config", profile))
    defined = kconfig.defined_in(Cache.default().src)
    assert kconfig.unmet(requests, running_config(), defined) == []


def test_guest_environment() -> None:
    """What the harness promises the suite: root, writable /tmp, debugfs, the repo."""
    assert os.geteuid() == 0
    probe = Path("/tmp/kcont-writable")
    probe.write_text("x")
    probe.unlink()
    assert Path("/sys/kernel/debug/tracing").exists() or Path("/sys/kernel/tracing/events").exists()
    assert (ROOT / "pyproject.toml").exists()
    assert Path(os.environ["KCONT_RESULTS"]).is_dir()


def test_debug_profile_has_its_detectors() -> None:
    if os.environ["KCONT_PROFILE"] != "debug":
        # The perf profile must not carry the sanitizers: check that instead.
        assert not Path("/sys/kernel/debug/kmemleak").exists()
        return
    assert Path("/sys/kernel/debug/kmemleak").exists()
    assert running_config().get("CONFIG_KASAN") == "y"
    assert Path("/proc/lockdep").exists()
