"""``kcont-vm mainline``: the series on Debian's tree with Debian's own
patches to the files it touches reverted, built with the perf profile.

The series targets Linux 6.1 and is built on Debian's linux-source-6.1,
which carries Debian's patches.  A series that leans on one of them (a
Debian-only symbol, a changed context line) would not apply or build on
a mainline 6.1.y tree.  This takes Debian's patch set from its source
package, finds the patches that touch a file the series touches, and
reverts them on a separate work tree of the base, newest first: the
whole patch where it reverses cleanly, else only its hunks on those
files (stable updates since that patch can make the rest not reverse).
Then it applies the series there with ``git am`` and builds it.

Debian's archive may hold a newer or older patch set than the installed
source: the report names the version used and how each patch reverted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from kcont_vm import kconfig
from kcont_vm.build import configure, run_make
from kcont_vm.errors import BuildError
from kcont_vm.gitutil import git
from kcont_vm.paths import Cache, repo_root
from kcont_vm.series import SERIES_STACK, Series, all_patches, load_series
from kcont_vm.source import BASE_TAG, apply_series, ensure_base

REVERTED_TAG = "kcont-base-reverted"
PROFILE = "perf"


@dataclass
class Reverted:
    patch: str
    files: list[str]
    whole: bool


def files_touched(patches: list[Path]) -> set[str]:
    """The paths a set of patches changes (their ``+++ b/`` lines)."""
    touched: set[str] = set()
    for patch in patches:
        for line in patch.read_text(errors="replace").splitlines():
            if m := re.match(r"^\+\+\+ b/(\S+)", line):
                touched.add(m.group(1))
    return touched


def patch_files(text: str) -> set[str]:
    """Paths a Debian patch changes, whatever its a/ b/ prefixes."""
    return {m.group(1) for m in re.finditer(r"^\+\+\+ [^/\s]+/(\S+)", text, re.M)}


def debian_patches(cache: Cache, log=print) -> tuple[str, Path]:
    """Debian's patch directory from the linux source package (its
    debian.tar.xz only), unpacked once; (version, patches directory)."""
    where = cache.root / "debian-linux"
    done = where / "patches" / "series"
    if not done.exists():
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        log("fetching Debian's kernel patch set (apt-get source --diff-only linux)")
        result = subprocess.run(["apt-get", "source", "--download-only", "--diff-only",
                                 "linux"], cwd=where, capture_output=True, text=True,
                                check=False)
        tarballs = sorted(where.glob("linux_*.debian.tar.xz"))
        if result.returncode != 0 or not tarballs:
            raise BuildError("apt-get source --diff-only linux failed (is a deb-src line "
                             "for Debian's main archive configured? kcont-vm setup adds "
                             "one): " + (result.stderr.strip().splitlines() or ["?"])[-1])
        with tarfile.open(tarballs[-1]) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("debian/patches/")]
            try:
                tar.extractall(where, members=members, filter="data")
            except TypeError:  # a Python without extraction filters
                tar.extractall(where, members=members)
        (where / "debian" / "patches").rename(where / "patches")
        (where / "version").write_text(tarballs[-1].name.split("_")[1].removesuffix(
            ".debian.tar.xz"))
    return (where / "version").read_text().strip(), where / "patches"


def applied_order(patches_dir: Path) -> list[Path]:
    return [patches_dir / name.split()[0]
            for name in (patches_dir / "series").read_text().splitlines()
            if name.strip() and not name.startswith("#")]


def revert_debian(tree: Path, patches_dir: Path, touched: set[str]) -> list[Reverted]:
    """Revert, newest first, each Debian patch that changes a file in
    ``touched``; the whole patch if it reverses, else its hunks on those files."""
    done: list[Reverted] = []
    for patch in reversed(applied_order(patches_dir)):
        if not patch.exists():
            continue
        ours = sorted(patch_files(patch.read_text(errors="replace")) & touched)
        if not ours:
            continue
        whole = git(tree, "apply", "-R", "--check", "-p1", str(patch), check=False)
        if whole.returncode == 0:
            git(tree, "apply", "-R", "-p1", str(patch))
            done.append(Reverted(patch.relative_to(patches_dir).as_posix(), ours, True))
            continue
        include = [f"--include={path}" for path in ours]
        part = git(tree, "apply", "-R", "-p1", *include, str(patch), check=False)
        if part.returncode != 0:
            raise BuildError(f"Debian's {patch.name} does not reverse on "
                             f"{', '.join(ours)}: {part.stderr.strip()[-300:]}")
        done.append(Reverted(patch.relative_to(patches_dir).as_posix(), ours, False))
    return done


def run_mainline(cache: Cache | None = None, log=print) -> int:
    cache = cache or Cache.default()
    ensure_base(cache, log)
    series: Series = load_series(repo_root() / "kernel" / SERIES_STACK)
    touched = files_touched(all_patches([series]))
    version, patches_dir = debian_patches(cache, log)
    src = cache.root / "src-reverted"
    if src.exists():
        git(cache.base, "worktree", "remove", "--force", str(src), check=False)
        shutil.rmtree(src, ignore_errors=True)
    git(cache.base, "worktree", "prune")
    git(cache.base, "worktree", "add", "-q", "--detach", str(src), BASE_TAG)
    reverted = revert_debian(src, patches_dir, touched)
    git(src, "add", "-A", "-f")
    git(src, "-c", "user.name=kcont developers", "-c", "user.email=kcont@localhost",
        "commit", "-q", "-m", f"Revert Debian {version}'s patches to the files the series "
        "touches")
    git(src, "tag", "-f", REVERTED_TAG)
    log(f"reverted {len(reverted)} of Debian {version}'s patches on the series' files:")
    for item in reverted:
        how = "whole" if item.whole else "its hunks on"
        log(f"  {item.patch} ({how} {', '.join(item.files)})")
    apply_series(src, series)
    log(f"series: {len(series.names)} patches applied with git am on the reverted tree")
    build_dir = cache.build(f"{PROFILE}-reverted")
    build_dir.mkdir(parents=True, exist_ok=True)
    frags = kconfig.fragments(repo_root() / "kernel" / "config", PROFILE)
    start = time.monotonic()
    configure(src, build_dir, frags, log)
    objects = run_make(src, build_dir, cache, f"{PROFILE} (Debian patches reverted)", 2300)
    log(f"built in {time.monotonic() - start:.0f}s ({objects} objects compiled): "
        f"{build_dir / 'arch/x86/boot/bzImage'}")
    return 0
