"""Reverting Debian's patches to the series' files on a small git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kcont_vm import mainline
from kcont_vm.errors import BuildError


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def _debian_patch(repo: Path, out: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A patch (Debian's a/ b/ style) that makes ``edits``, committed in ``repo``."""
    for name, (old, new) in edits.items():
        path = repo / name
        path.write_text(path.read_text().replace(old, new))
    diff = _git(repo, "diff")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "debian")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(diff)
    return out


@pytest.fixture
def debian_tree(git_repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    (git_repo / "fork.c").write_text("".join(f"fork {i}\n" for i in range(1, 21)))
    (git_repo / "driver.c").write_text("".join(f"drv {i}\n" for i in range(1, 21)))
    _git(git_repo, "add", "-A")
    _git(git_repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "upstream")
    patches = tmp_path / "patches"
    _debian_patch(git_repo, patches / "debian" / "userns.patch",
                  {"fork.c": ("fork 5\n", "fork 5\nif (!unprivileged_userns_clone)\n")})
    _debian_patch(git_repo, patches / "features" / "drv.patch",
                  {"keys.c": ("line 18\n", "line 18 debian\n"),
                   "driver.c": ("drv 3\n", "drv 3 debian\n")})
    _debian_patch(git_repo, patches / "bugfix" / "other.patch",
                  {"driver.c": ("drv 10\n", "drv 10 fixed\n")})
    (patches / "series").write_text("debian/userns.patch\n# comment\nfeatures/drv.patch\n"
                                    "bugfix/other.patch\n")
    return git_repo, patches


def test_patches_on_the_series_files_are_reverted_whole(debian_tree: tuple[Path, Path]) -> None:
    repo, patches = debian_tree
    done = mainline.revert_debian(repo, patches, {"fork.c", "keys.c"})
    assert [(d.patch, d.files, d.whole) for d in done] == [
        ("features/drv.patch", ["keys.c"], True), ("debian/userns.patch", ["fork.c"], True)]
    assert "unprivileged_userns_clone" not in (repo / "fork.c").read_text()
    assert "debian" not in (repo / "keys.c").read_text() + (repo / "driver.c").read_text()
    assert "drv 10 fixed" in (repo / "driver.c").read_text(), "an unrelated patch stays"


def test_a_patch_that_no_longer_reverses_loses_only_its_hunks_on_the_series_files(
        debian_tree: tuple[Path, Path]) -> None:
    repo, patches = debian_tree
    # A later stable update rewrote the driver line the Debian patch changed.
    (repo / "driver.c").write_text((repo / "driver.c").read_text().replace(
        "drv 3 debian\n", "drv 3 stable\n"))
    done = mainline.revert_debian(repo, patches, {"keys.c"})
    assert [(d.patch, d.whole) for d in done] == [("features/drv.patch", False)]
    assert "line 18 debian" not in (repo / "keys.c").read_text()
    assert "drv 3 stable" in (repo / "driver.c").read_text()


def test_a_hunk_on_a_series_file_that_cannot_reverse_is_an_error(
        debian_tree: tuple[Path, Path]) -> None:
    repo, patches = debian_tree
    (repo / "fork.c").write_text("rewritten\n")
    with pytest.raises(BuildError, match=r"userns\.patch does not reverse on fork\.c"):
        mainline.revert_debian(repo, patches, {"fork.c"})


def test_the_series_files_come_from_its_patches(tmp_path: Path) -> None:
    patch = tmp_path / "0001-x.patch"
    patch.write_text("--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1 +1 @@\n-a\n+b\n"
                     "--- /dev/null\n+++ b/kernel/container.c\n")
    assert mainline.files_touched([patch]) == {"kernel/fork.c", "kernel/container.c"}
    assert mainline.patch_files("+++ linux-6.1/kernel/fork.c\n") == {"kernel/fork.c"}
