"""The cache key of a kernel build.

An unchanged kernel must never be rebuilt, and a changed one always: the
key covers the base source (package version and tarball size), every
patch in series order, every config fragment of the profile, and the
version of the recipe in this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

# Bump when the way a kernel is configured or built changes.
RECIPE_VERSION = "1"


def build_key(source_id: str, patches: Iterable[Path], config_files: Iterable[Path],
              profile: str, toolchain: str = "") -> str:
    """A short hex digest identifying one kernel build."""
    h = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        h.update(label.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    feed("recipe", RECIPE_VERSION.encode())
    feed("source", source_id.encode())
    feed("profile", profile.encode())
    feed("toolchain", toolchain.encode())
    for patch in patches:
        feed("patch:" + patch.name, patch.read_bytes())
    for config in config_files:
        feed("config:" + config.name, config.read_bytes())
    return h.hexdigest()[:16]
