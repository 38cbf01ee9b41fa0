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
    it and each of ``settings`` (file name to value) written in order."""
    root = Path("/sys/fs/cgroup")
    mounted = False
    if not (root / "cgroup.controllers").exists():
        root = Path("/tmp/kcont-cgroup2")
        root.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup2", "none", str(root)], check=True)
        mounted = True
    group = root / name
    try:
        (root / "cgroup.subtree_control").write_text(f"+{controller}")
        group.mkdir()
        for file, value in settings.items():
            (group / file).write_text(value)
        yield group
    finally:
        if group.exists():
            group.rmdir()
        if mounted:
            subprocess.run(["umount", str(root)], check=True)
