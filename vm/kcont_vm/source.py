"""The kernel source as git trees: the pristine base, the build tree, a developer's tree.

``base`` is Debian's linux-source-6.1 committed once and tagged
``kcont-base``.  Builds use ``src``, a detached work tree of it with the
profile's stacks applied by ``git am`` (so a patch that needs fuzz fails,
as it would for a maintainer).  ``kcont-vm tree`` makes a separate work
tree for editing: branch ``kcont`` holds the series, branch
``kcont-harness`` the harness stack on top of it; ``kcont-vm export``
turns their commits back into kernel/patches/ and kernel/harness/.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from kcont_vm.errors import BuildError, KcontVmError
from kcont_vm.gitutil import git, rev
from kcont_vm.paths import SOURCE_PACKAGE, SOURCE_TARBALL, Cache
from kcont_vm.series import Series

BASE_TAG = "kcont-base"
DEV_BRANCH = "kcont"
HARNESS_BRANCH = "kcont-harness"
COVER_NAME = "0000-cover-letter.patch"


def source_id() -> str:
    """Identify the base source: Debian package version and tarball size."""
    if not SOURCE_TARBALL.exists():
        raise KcontVmError(f"{SOURCE_TARBALL} missing: run `kcont-vm setup` "
                           f"(package {SOURCE_PACKAGE})")
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", SOURCE_PACKAGE],
                             capture_output=True, text=True, check=False).stdout.strip()
    return f"{SOURCE_PACKAGE} {version or 'unknown'} {SOURCE_TARBALL.stat().st_size}"


def kernel_version(tree: Path) -> str:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` from a tree's top Makefile."""
    fields = {}
    for line in (tree / "Makefile").read_text().splitlines()[:10]:
        if m := re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL) = (\d+)", line):
            fields[m.group(1)] = m.group(2)
    return "{VERSION}.{PATCHLEVEL}.{SUBLEVEL}".format(**fields)


def ensure_base(cache: Cache, log=print) -> None:
    """Extract the tarball into a git repository once per source version."""
    ident = source_id()
    stamp = cache.base / ".git" / "kcont-source-id"
    if stamp.exists() and stamp.read_text() == ident and rev(cache.base, BASE_TAG):
        return
    log(f"extracting {SOURCE_TARBALL} into {cache.base}")
    for stale in (cache.src, cache.src_for(("patches",)), cache.base):
        shutil.rmtree(stale, ignore_errors=True)
    cache.base.mkdir(parents=True)
    subprocess.run(["tar", "-xJf", str(SOURCE_TARBALL), "-C", str(cache.base),
                    "--strip-components=1"], check=True)
    version = kernel_version(cache.base)
    log(f"committing Linux {version} as {BASE_TAG}")
    git(cache.base, "init", "-q", "-b", "base")
    # Debian's tarball .gitignore ignores every top-level path: add with -f.
    git(cache.base, "add", "-f", "-A")
    git(cache.base, "commit", "-q", "-m", f"Linux {version} ({ident})")
    git(cache.base, "tag", BASE_TAG)
    stamp.write_text(ident)


def series_digest(stacks: list[Series]) -> str:
    h = hashlib.sha256()
    for stack in stacks:
        h.update(b"stack\0" + stack.directory.name.encode() + b"\0")
        for patch in stack.patches:
            h.update(patch.name.encode() + b"\0" + patch.read_bytes())
    return h.hexdigest()


def _am_failure(patch: Path, output: str) -> str:
    """One line naming the patch and the file it failed on."""
    m = re.search(r"patch failed: (\S+)", output) or \
        re.search(r"error: (\S+): does not exist", output)
    where = f" at {m.group(1)}" if m else ""
    first = next((ln for ln in output.splitlines() if ln.startswith("error:")), "")
    detail = f" ({first.removeprefix('error: ')})" if first and not m else ""
    return f"{patch.name} does not apply{where}{detail}"


def apply_series(tree: Path, series: Series) -> None:
    """``git am`` each patch in order, failing with the patch and file named."""
    for patch in series.patches:
        result = git(tree, "am", "-q", str(patch), check=False)
        if result.returncode != 0:
            git(tree, "am", "--abort", check=False)
            raise BuildError(_am_failure(patch, result.stdout + result.stderr))


def prepare_src(cache: Cache, stacks: list[Series], log=print) -> Path:
    """Make the stacks' work tree hold exactly base + stacks; touch nothing
    if it already does.

    Resetting only rewrites files that differ, so make's timestamps keep an
    incremental build incremental when the series changes.
    """
    ensure_base(cache, log)
    digest = series_digest(stacks)
    src = cache.src_for(tuple(stack.directory.name for stack in stacks))
    stamp = src.parent / f"{src.name}-series"
    if not (src / ".git").exists():
        shutil.rmtree(src, ignore_errors=True)
        git(cache.base, "worktree", "prune")
        git(cache.base, "worktree", "add", "-q", "--detach", str(src), BASE_TAG)
    elif stamp.exists():
        want_digest, _, want_head = stamp.read_text().partition(" ")
        clean = not git(src, "status", "--porcelain", "-uno").stdout.strip()
        if want_digest == digest and want_head == rev(src) and clean:
            return src
    log("applying " + ", ".join(f"{len(st.names)} patches from {st.directory}" for st in stacks)
        + f" in {src}")
    stamp.unlink(missing_ok=True)
    git(src, "am", "--abort", check=False)
    git(src, "checkout", "-q", "--detach", BASE_TAG)
    git(src, "reset", "-q", "--hard", BASE_TAG)
    for stack in stacks:
        apply_series(src, stack)
    stamp.write_text(f"{digest} {rev(src)}")
    return src


def read_cover(path: Path) -> tuple[str, str]:
    """Title and body of a cover letter written by ``git format-patch``."""
    if not path.exists():
        return "kcont: containers as kernel objects", ""
    title, body, in_body, in_subject = "", [], False, False
    for line in path.read_text().splitlines():
        if not in_body:
            if line.startswith("Subject: "):
                title = re.sub(r"^Subject: (\[[^]]*\] )?", "", line)
                in_subject = True
            elif in_subject and line.startswith((" ", "\t")):
                title += " " + line.strip()  # a folded header line
            elif line == "" and title:
                in_body = True
            else:
                in_subject = False
            continue
        if re.match(r"^\S.* \(\d+\):$", line):
            break
        body.append(line)
    return title, "\n".join(body).strip() + "\n"


def make_tree(cache: Cache, series: Series, path: Path, force: bool, log=print,
              harness: Series | None = None) -> Path:
    """A work tree on branch ``kcont``: base plus the series as commits, to
    edit; with ``harness``, branch ``kcont-harness`` adds its commits on top
    and is what is checked out."""
    ensure_base(cache, log)
    if path.exists():
        if not force:
            raise KcontVmError(f"{path} exists and may hold your work; pass --force to replace it")
        git(cache.base, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
    git(cache.base, "worktree", "prune")
    git(cache.base, "worktree", "add", "-q", "-B", DEV_BRANCH, str(path), BASE_TAG)
    apply_series(path, series)
    title, body = read_cover(series.directory / COVER_NAME)
    git(path, "config", f"branch.{DEV_BRANCH}.description", f"{title}\n\n{body}")
    if harness is not None:
        git(path, "checkout", "-q", "-B", HARNESS_BRANCH, DEV_BRANCH)
        apply_series(path, harness)
    return path


def series_version(cover: Path) -> int:
    """The version in a cover letter's subject ("[RFC PATCH v3 00/31]"): 1 if none."""
    if cover.exists():
        for line in cover.read_text().splitlines():
            if line.startswith("Subject: "):
                m = re.search(r"\[[^]]*\bv(\d+) \d+/\d+\]", line)
                return int(m.group(1)) if m else 1
    return 1


def maintainers(tree: Path, since: str, head: str) -> list[str]:
    """``get_maintainer.pl`` on the whole diff: the Cc list of a series."""
    with tempfile.NamedTemporaryFile("w", suffix=".patch") as diff:
        diff.write(git(tree, "diff", f"{since}..{head}").stdout)
        diff.flush()
        result = subprocess.run(
            ["perl", "scripts/get_maintainer.pl", "--no-rolestats", "--no-git",
             "--no-git-fallback", diff.name],
            cwd=tree, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KcontVmError("get_maintainer.pl failed: "
                           + (result.stderr.strip().splitlines() or ["no output"])[-1])
    return [line.strip() for line in result.stdout.splitlines() if "@" in line]


def export_stacks(tree: Path, kernel_dir: Path, version: int | None = None) -> list[Path]:
    """Write branch ``kcont`` to kernel/patches/ and, where the tree has
    it, ``kcont-harness`` (on top of ``kcont``) to kernel/harness/.

    The series is versioned (``--version``, else the current cover
    letter's) and Cc'd to what ``get_maintainer.pl`` names for its diff.
    """
    patches = kernel_dir / "patches"
    version = version or series_version(patches / COVER_NAME)
    prefix = "RFC PATCH" if version == 1 else f"RFC PATCH v{version}"
    if rev(tree, DEV_BRANCH) is None:
        return export_series(tree, patches, prefix=prefix)
    written = export_series(tree, patches, DEV_BRANCH, prefix=prefix,
                            cc=maintainers(tree, BASE_TAG, DEV_BRANCH))
    if rev(tree, HARNESS_BRANCH) is not None:
        base = git(tree, "merge-base", DEV_BRANCH, HARNESS_BRANCH).stdout.strip()
        if base != rev(tree, DEV_BRANCH):
            raise KcontVmError(f"{HARNESS_BRANCH} is not on top of {DEV_BRANCH}: rebase it "
                               f"(git rebase {DEV_BRANCH} {HARNESS_BRANCH})")
        (kernel_dir / "harness").mkdir(exist_ok=True)
        written += export_series(tree, kernel_dir / "harness", HARNESS_BRANCH,
                                 since=DEV_BRANCH, prefix="PATCH kcont-harness",
                                 cover=False)
    return written


def export_series(tree: Path, patches_dir: Path, head: str = "HEAD", since: str = BASE_TAG,
                  prefix: str = "RFC PATCH", cover: bool = True,
                  cc: list[str] | None = None) -> list[Path]:
    """Write since..head of ``tree`` as patches, a cover letter and a series file."""
    if rev(tree, BASE_TAG) is None:
        raise KcontVmError(f"{tree} is not a kcont tree (no {BASE_TAG} tag)")
    count = int(git(tree, "rev-list", "--count", f"{since}..{head}").stdout)
    for old in patches_dir.glob("*.patch"):
        old.unlink()
    written: list[Path] = []
    if count:
        args = ["format-patch", "-q", "-o", str(patches_dir), "--zero-commit",
                "--no-signature", f"--subject-prefix={prefix}",
                *(["--cover-letter", "--cover-from-description=subject"] if cover else []),
                *(f"--cc={who}" for who in cc or []), f"{since}..{head}"]
        git(tree, *args)
        written = sorted(patches_dir.glob("*.patch"))
    names = [p.name for p in written if p.name != COVER_NAME]
    what = "patch series" if cover else "harness stack (test kernels only, after the series)"
    (patches_dir / "series").write_text(
        f"# kcont {what}, applied in order with `git am` (kcont-vm build)\n"
        + "".join(f"{name}\n" for name in names))
    return written


def checkpatch(tree: Path, patches: list[Path]) -> tuple[bool, str]:
    """Run ``checkpatch.pl --strict`` on the series; (clean, its output)."""
    targets = [str(p) for p in patches if p.name != COVER_NAME]
    if not targets:
        return True, "no patches to check\n"
    # checkpatch runs scripts/spdxcheck.py with the first python3 on PATH;
    # Debian's has python3-ply, a pyenv one may not.
    env = dict(os.environ, PATH=f"/usr/bin:/bin:{os.environ.get('PATH', '')}")
    result = subprocess.run(
        ["perl", str(tree / "scripts" / "checkpatch.pl"), "--strict", "--terse",
         "--show-types", *targets],
        cwd=tree, env=env, capture_output=True, text=True, check=False)
    return result.returncode == 0, result.stdout + result.stderr
