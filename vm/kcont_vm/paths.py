"""Where kcont-vm keeps things: the repository and the cache outside it.

The cache holds everything expensive (the extracted source as a git repo,
the patched work tree, one build directory per profile, ccache) so that
an unchanged kernel is never rebuilt and a fresh clone of the repository
reuses what an earlier one built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SOURCE_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
SOURCE_PACKAGE = "linux-source-6.1"
PROFILES = ("debug", "perf")
DEFAULT_PROFILE = "debug"


def repo_root() -> Path:
    """The kcont checkout this module belongs to (vm/kcont_vm/ is two down)."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Cache:
    """Layout of the cache directory (``KCONT_CACHE``, default ~/.cache/kcont)."""

    root: Path

    @classmethod
    def default(cls) -> Cache:
        env = os.environ.get("KCONT_CACHE")
        root = Path(env) if env else Path.home() / ".cache" / "kcont"
        return cls(root.expanduser().resolve())

    @property
    def base(self) -> Path:
        """Pristine source as a git repository, tagged ``kcont-base``."""
        return self.root / "base"

    @property
    def src(self) -> Path:
        """Detached work tree of ``base`` with the series and the harness
        stack applied; debug builds use it."""
        return self.root / "src"

    def src_for(self, stack_names: tuple[str, ...]) -> Path:
        """The work tree of one set of stacks: ``src`` for the series with
        the harness stack, ``src-patches`` for the series alone.  Each set
        has its own tree, so building one profile never rewrites the
        files another profile's build directory was made from."""
        if stack_names == ("patches", "harness"):
            return self.src
        return self.root / ("src-" + "-".join(stack_names))

    @property
    def tree(self) -> Path:
        """A developer's tree (``kcont-vm tree``): never touched by builds."""
        return self.root / "tree"

    @property
    def ccache(self) -> Path:
        return self.root / "ccache"

    @property
    def runs(self) -> Path:
        """Console logs and results of guest runs, one directory per run."""
        return self.root / "runs"

    @property
    def keyutils(self) -> Path:
        """keyutils' source package, for its test suite."""
        return self.root / "keyutils"

    def build(self, profile: str) -> Path:
        return self.root / "build" / profile

    def bzimage(self, profile: str) -> Path:
        return self.build(profile) / "arch" / "x86" / "boot" / "bzImage"
