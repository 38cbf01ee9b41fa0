"""A copy of virtme-ng's guest tools whose init is kcont-vm's lean-init.c.

virtme-ng boots ``<guest tools>/bin/virtme-ng-init`` and offers no option
to skip its udev coldplug and systemd-tmpfiles steps, which cost ~40 s of
every TCG boot (see lean-init.c).  So kcont-vm gives virtme a guest-tools
directory of its own: symlinks to the real files, except that
``bin/virtme-ng-init`` is lean-init.c, compiled here, which execs the
real one (``bin/virtme-ng-init.real``) after trimming the boot.  The
guest sees the host's root over 9p, so the symlinks resolve there too.

``bin/virtme-run`` (this package's shim, first on vng's PATH) points
virtme at the directory; the hook it replaces,
``virtme.resources.find_guest_tools``, is checked by a host test against
the pinned virtme-ng.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

LEAN_INIT = Path(__file__).with_name("lean-init.c")
INIT_NAME = "virtme-ng-init"
SKIP = {"__pycache__", "__init__.py"}


def stock_guest_tools() -> Path:
    """virtme-ng's own guest-tools directory (what virtme-run would use)."""
    from virtme import resources

    found = resources.find_guest_tools()
    if found is None:
        raise RuntimeError("virtme-ng's guest tools are missing: reinstall virtme-ng")
    return Path(found)


def _link(target: Path, link: Path) -> None:
    """Point ``link`` at ``target`` atomically.

    The debug and the perf boot start together and both mirror the tools:
    an unlink-then-symlink lets one boot's symlink() meet the other's new
    link (EEXIST).  A link made under a name of this process's own and
    renamed over the old one is never missing and never half made.
    """
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def lean_guest_tools(cache_root: Path, stock: Path | None = None) -> Path:
    """Create (idempotently) and return the lean guest-tools directory."""
    stock = stock or stock_guest_tools()
    out = cache_root / "guest-tools"
    (out / "bin").mkdir(parents=True, exist_ok=True)
    for entry in stock.iterdir():
        if entry.name in SKIP or entry.name == "bin":
            continue
        _link(entry, out / entry.name)
    for entry in (stock / "bin").iterdir():
        name = f"{INIT_NAME}.real" if entry.name == INIT_NAME else entry.name
        _link(entry, out / "bin" / name)
    _compile(LEAN_INIT, out / "bin" / INIT_NAME)
    return out


def _compile(source: Path, binary: Path) -> None:
    """Static, so that the guest's PID 1 needs no dynamic loader over 9p.

    Keyed by the source's digest, not its mtime: checkouts of different
    versions share one cache.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stamp = binary.with_name(binary.name + ".sha256")
    if binary.is_symlink():
        binary.unlink()
    if binary.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    tmp = binary.with_name(f".{binary.name}.{os.getpid()}")  # both boots may compile
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", str(tmp), str(source)],
                   check=True)
    tmp.replace(binary)
    stamp.write_text(digest)
