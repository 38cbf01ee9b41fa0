"""A cgroup v2 group for one test, with one controller enabled.

The guest may boot without cgroup2 mounted; the group is then made on a
private mount that goes away with it.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def cgroup2_group(name: str, controller: str, settings: dict[str, str]) -> Iterator[Path]:
    """The group ``name`` under the cgroup2 root, ``controller`` enabled for
    it and each of ``settings`` (file name to value) written in order;
    afterwards the root's controllers are as they were."""
    root = Path("/sys/fs/cgroup")
    mounted = False
    if not (root / "cgroup.controllers").exists():
        root = Path("/tmp/kcont-cgroup2")
        root.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup2", "none", str(root)], check=True)
        mounted = True
    group = root / name
    enabled = controller in (root / "cgroup.subtree_control").read_text().split()
    created = False
    try:
        (root / "cgroup.subtree_control").write_text(f"+{controller}")
        group.mkdir()
        created = True
        for file, value in settings.items():
            (group / file).write_text(value)
        yield group
    finally:
        if created:
            group.rmdir()
        if not enabled:
            # EBUSY while a removed group is still dying: enabled is harmless.
            with contextlib.suppress(OSError):
                (root / "cgroup.subtree_control").write_text(f"-{controller}")
        if mounted:
            subprocess.run(["umount", str(root)], check=True)
