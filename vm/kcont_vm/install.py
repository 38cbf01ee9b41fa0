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
    # the series' kselftests are built as 32-bit programs too (the compat path)
    "gcc-multilib",
    # the kernel-client tests give a container DNS answers of its own
    # (SRV and A records for an AFS cell) with dnsmasq in its namespace
    "dnsmasq-base",
    # checkpatch.pl runs scripts/spdxcheck.py, which needs ply and GitPython
    "python3-ply", "python3-git",
    # the admission tests make a CA and a webhook certificate with openssl
    "openssl",
    # the host tests render the generated man pages with `man -l`
    "man-db",
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


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        if path.exists():
            h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def project_requirements(root: Path) -> list[str]:
    """Dependencies and every extra from pyproject.toml.

    The library's own dependencies are few (``pip install .`` must not pull
    in QEMU tooling), so the venv needs the extras too: ``vm`` (virtme-ng,
    rich), ``test`` (pytest, ruff, mypy), ``bench`` and ``rego``.  The
    project itself is installed later, by ``kcont-vm build``, once the
    kernel's headers exist.
    """
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *(req for name in sorted(extras) for req in extras[name])]


def build_requirements(root: Path) -> list[str]:
    """pyproject's [build-system] requires (setuptools, cffi, argparse-manpage
    for the man pages): ``install_project`` builds without isolation, so the
    venv must hold them; ``pip install .`` gets them from the same list."""
    import tomllib

    return list(tomllib.loads((root / "pyproject.toml").read_text())["build-system"]["requires"])


def _pip(python: Path, args: list[str], what: str) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", *args],
                            check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    if result.returncode != 0:
        tail = "\n".join(ln for ln in result.stdout.splitlines()[-15:]
                         if "Location" not in ln)
        raise KcontVmError(f"pip install {what} failed:\n{tail}", EXIT_SETUP)


def ensure_venv() -> Path:
    """A venv from Debian's python (for bcc), with the project's dependencies."""
    root = repo_root()
    venv = venv_dir()
    python = venv / "bin" / "python"
    if not python.exists():
        say(f"creating venv {venv} from {SYSTEM_PYTHON} --system-site-packages")
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)],
                       check=True)
    stamp = venv / "kcont-deps"
    digest = _digest([root / "pyproject.toml"])
    if stamp.exists() and stamp.read_text() == digest:
        say("venv: dependencies present")
        return venv
    requirements = [*build_requirements(root), *project_requirements(root)]
    say("pip install " + " ".join(requirements))
    _pip(python, requirements, "dependencies")
    stamp.write_text(digest)
    return venv


def install_project(headers: Path) -> None:
    """``pip install -e .``: compiles the CFFI binding against ``headers``.

    Done again only when the packaging, the binding's C sources or the
    series' uapi headers changed.
    """
    root = repo_root()
    python = venv_dir() / "bin" / "python"
    stamp = venv_dir() / "kcont-installed"
    sources = [root / "pyproject.toml", root / "setup.py",
               root / "userspace" / "request_key_daemon" / "rk_exec.c",
               *sorted((root / "kcont" / "_cffi_src").glob("*.py")),
               *sorted(headers.rglob("*.h"))]
    digest = _digest(sources)
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"pip install -e . (CFFI binding against {headers})")
    env_headers = {"KCONT_UAPI_HEADERS": str(headers)}
    old = {k: os.environ.get(k) for k in env_headers}
    os.environ.update(env_headers)
    try:
        _pip(python, ["--no-deps", "--no-build-isolation", "-e", str(root)], "the project")
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    stamp.write_text(digest)


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
