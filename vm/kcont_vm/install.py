"""``kcont-vm setup``: install what a fresh Debian 12 machine lacks.

Runs on the system interpreter before the venv exists, so standard library
only.  Idempotent: it asks dpkg what is installed and pip only when the
project's packaging changed, and says what it installs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from kcont_vm.errors import EXIT_SETUP, KcontVmError
from kcont_vm.paths import repo_root

APT_PACKAGES = (
    # QEMU and virtme-ng's needs (udev: its virtio-serial ports)
    "qemu-system-x86", "udev",
    # kernel source and build dependencies
    "linux-source-6.1", "build-essential", "flex", "bison", "bc", "libelf-dev",
    "libssl-dev", "dwarves", "cpio", "kmod", "ccache", "git", "rsync", "xz-utils",
    # bcc from Debian: importable only from /usr/bin/python3
    "python3-bpfcc", "bpfcc-tools",
    # keyutils, its library, and its source package's tools
    "keyutils", "libkeyutils-dev", "dpkg-dev", "lsb-release", "file",
    # the venv and the CFFI build
    "python3-venv", "python3-dev", "libffi-dev",
)
DEB_SRC_FILE = Path("/etc/apt/sources.list.d/kcont-deb-src.sources")
DEB_SRC = """\
# Added by kcont-vm setup: keyutils' source package holds its test suite.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
SYSTEM_PYTHON = "/usr/bin/python3"


def say(message: str) -> None:
    print(f"kcont-vm setup: {message}", flush=True)


def missing_apt_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    """Packages dpkg does not report as installed."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *packages],
        capture_output=True, text=True, check=False,
    ).stdout
    installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
    return [p for p in packages if p not in installed]


def _apt(args: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(["apt-get", *args], env=env, check=False,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-15:])
        raise KcontVmError(f"apt-get {' '.join(args)} failed:\n{tail}", EXIT_SETUP)


def ensure_apt() -> None:
    """Install the missing Debian packages, and add a deb-src line once."""
    if os.geteuid() != 0:
        missing = missing_apt_packages()
        if missing:
            raise KcontVmError("not root: cannot install " + " ".join(missing))
        return
    need_update = False
    if not DEB_SRC_FILE.exists():
        say(f"adding deb-src entries in {DEB_SRC_FILE}")
        DEB_SRC_FILE.write_text(DEB_SRC)
        need_update = True
    missing = missing_apt_packages()
    if missing:
        need_update = True
    if need_update:
        say("apt-get update")
        _apt(["update", "-qq"])
    if missing:
        say("apt-get install " + " ".join(missing))
        _apt(["install", "-y", "-qq", "--no-install-recommends", *missing])
    else:
        say("Debian packages: all present")


def venv_dir() -> Path:
    return repo_root() / ".venv"


def _packaging_digest(root: Path) -> str:
    """What a reinstall depends on: packaging metadata and the CFFI sources."""
    h = hashlib.sha256()
    files = [root / "pyproject.toml"]
    files += sorted((root / "kcont" / "_cffi_src").glob("*.py"))
    for path in files:
        if path.exists():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def ensure_venv() -> Path:
    """A venv from Debian's python (for bcc), with the project and test extras."""
    root = repo_root()
    venv = venv_dir()
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating venv {venv} from {SYSTEM_PYTHON} --system-site-packages")
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)
    stamp = venv / "kcont-installed"
    digest = _packaging_digest(root)
    if stamp.exists() and stamp.read_text() == digest:
        say("venv: project already installed")
        return venv
    say("pip install -e .[test] (virtme-ng, cffi, pytest, hypothesis, ...)")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-e", f"{root}[test]"],
        check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-15:])
        raise KcontVmError(f"pip install failed:\n{tail}", EXIT_SETUP)
    stamp.write_text(digest)
    return venv


def ensure_keyutils_source() -> None:
    """keyutils' source package (its tests/ is the regression guard) in the cache."""
    from kcont_vm.paths import Cache

    target = Cache.default().keyutils
    if list(target.glob("keyutils-*/tests/runtest.sh")):
        say("keyutils source: present")
        return
    target.mkdir(parents=True, exist_ok=True)
    say(f"apt-get source keyutils (into {target})")
    result = subprocess.run(["apt-get", "source", "-qq", "keyutils"], cwd=target, check=False,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-10:])
        raise KcontVmError(f"apt-get source keyutils failed:\n{tail}", EXIT_SETUP)


def setup() -> int:
    if not Path(SYSTEM_PYTHON).exists():
        raise KcontVmError(f"{SYSTEM_PYTHON} not found: kcont needs Debian 12's python3")
    ensure_apt()
    ensure_venv()
    ensure_keyutils_source()
    for tool in ("qemu-system-x86_64", "ccache", "keyctl"):
        if shutil.which(tool) is None:
            raise KcontVmError(f"{tool} still missing after setup")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(setup())
