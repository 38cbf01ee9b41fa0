"""Decide between KVM and TCG with a bounded probe, not by /dev/kvm's presence.

On these machines /dev/kvm exists but a KVM guest spins at 100% system
time and never boots, so the probe boots the real bzImage under KVM with
no root filesystem and waits (bounded) for the kernel's own "VFS: Unable
to mount root fs" panic.  The verdict is cached per host kernel and QEMU
version; ``KCONT_ACCEL=kvm|tcg`` overrides it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from kcont_vm.errors import KcontVmError

PROBE_TIMEOUT = 20.0
PANIC_MARK = "Kernel panic"


def _qemu_version() -> str:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                         check=False).stdout
    return out.splitlines()[0] if out else "?"


def probe_kvm(bzimage: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if a KVM guest reaches the kernel's no-root panic within ``timeout``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    argv = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "512",
            "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
            "-kernel", str(bzimage), "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             check=False).stdout
    except subprocess.TimeoutExpired:
        return False
    return PANIC_MARK in out


def choose_accel(bzimage: Path, cache_file: Path) -> str:
    """``kvm`` or ``tcg``: the override, else the cached probe, else a new probe."""
    forced = os.environ.get("KCONT_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    if forced:
        raise KcontVmError(f"KCONT_ACCEL={forced!r}: expected kvm or tcg")
    ident = f"{platform.release()} {_qemu_version()}"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("ident") == ident:
            return cached["accel"]
    except (OSError, ValueError, KeyError):
        pass
    accel = "kvm" if probe_kvm(bzimage) else "tcg"
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps({"ident": ident, "accel": accel}))
    return accel
