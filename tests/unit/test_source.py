"""Applying and exporting the series on a small git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kcont_vm import source
from kcont_vm.errors import BuildError, KcontVmError
from kcont_vm.series import Series


def _commit_change(repo: Path, old: str, new: str, subject: str) -> None:
    text = (repo / "keys.c").read_text().replace(old, new)
    (repo / "keys.c").write_text(text)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=kcont developers",
                    "-c", "user.email=kcont@localhost", "commit", "-qam",
                    f"{subject}\n\nWhy: a test."], check=True)


def _patch_from(repo: Path, out: Path) -> list[Path]:
    subprocess.run(["git", "-C", str(repo), "format-patch", "-q", "-o", str(out),
                    "kcont-base..HEAD"], check=True)
    return sorted(out.glob("*.patch"))


def test_apply_series_in_order(git_repo: Path, tmp_path: Path) -> None:
    _commit_change(git_repo, "line 3\n", "line three\n", "keys: three")
    _commit_change(git_repo, "line 15\n", "line fifteen\n", "keys: fifteen")
    patches = _patch_from(git_repo, tmp_path / "p")
    subprocess.run(["git", "-C", str(git_repo), "reset", "-q", "--hard", "kcont-base"],
                   check=True)
    source.apply_series(git_repo, Series(tmp_path / "p", tuple(p.name for p in patches)))
    text = (git_repo / "keys.c").read_text()
    assert "line three" in text and "line fifteen" in text


def test_patch_that_does_not_apply_names_patch_and_file(git_repo: Path,
                                                        tmp_path: Path) -> None:
    _commit_change(git_repo, "line 3\n", "line three\n", "keys: three")
    (patch,) = _patch_from(git_repo, tmp_path / "p")
    subprocess.run(["git", "-C", str(git_repo), "reset", "-q", "--hard", "kcont-base"],
                   check=True)
    _commit_change(git_repo, "line 3\n", "line 3 changed upstream\n", "upstream")
    with pytest.raises(BuildError) as err:
        source.apply_series(git_repo, Series(tmp_path / "p", (patch.name,)))
    message = str(err.value)
    assert patch.name in message and "keys.c" in message
    assert "\n" not in message
    # the failed am was aborted: the tree is usable again
    status = subprocess.run(["git", "-C", str(git_repo), "status"], capture_output=True,
                            text=True, check=True).stdout
    assert "am session" not in status


def test_export_writes_patches_cover_and_series(git_repo: Path, tmp_path: Path) -> None:
    _commit_change(git_repo, "line 3\n", "line three\n", "keys: three")
    _commit_change(git_repo, "line 9\n", "line nine\n", "keys: nine")
    subprocess.run(["git", "-C", str(git_repo), "checkout", "-q", "-b", "kcont"], check=True)
    subprocess.run(["git", "-C", str(git_repo), "config", "branch.kcont.description",
                    "kcont: a title\n\nThe body of the cover letter.\n"], check=True)
    out = tmp_path / "patches"
    out.mkdir()
    (out / "9999-stale.patch").write_text("old")
    written = source.export_series(git_repo, out)
    names = [p.name for p in written]
    assert names[0] == source.COVER_NAME and len(names) == 3
    assert not (out / "9999-stale.patch").exists()
    series = (out / "series").read_text().splitlines()
    assert [s for s in series if not s.startswith("#")] == names[1:]
    title, body = source.read_cover(out / source.COVER_NAME)
    assert title == "kcont: a title"
    assert body.strip() == "The body of the cover letter."


def test_read_cover_without_file(tmp_path: Path) -> None:
    title, _ = source.read_cover(tmp_path / "none.patch")
    assert title


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True)


def test_export_stacks_writes_the_series_versioned_and_the_harness_apart(
        git_repo: Path, tmp_path: Path) -> None:
    """Branch kcont is the postable series (versioned, Cc'd to what
    get_maintainer.pl names), kcont-harness on top of it goes to
    kernel/harness/ with no cover letter."""
    scripts = git_repo / "scripts"
    scripts.mkdir()
    (scripts / "get_maintainer.pl").write_text(
        'print "Keys Maintainer <keys\\@example.org>\\nkeyrings\\@example.org\\n";\n')
    _git(git_repo, "add", "scripts")
    _git(git_repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tools")
    _git(git_repo, "tag", "-f", "kcont-base")
    _git(git_repo, "checkout", "-q", "-b", source.DEV_BRANCH)
    _commit_change(git_repo, "line 3\n", "line three\n", "keys: three")
    _commit_change(git_repo, "line 9\n", "line nine\n", "keys: nine")
    _git(git_repo, "checkout", "-q", "-b", source.HARNESS_BRANCH)
    _commit_change(git_repo, "line 15\n", "line fifteen\n", "keys: a fault switch")
    kernel = tmp_path / "kernel"
    (kernel / "patches").mkdir(parents=True)
    source.export_stacks(git_repo, kernel, version=2)
    series = sorted((kernel / "patches").glob("*.patch"))
    assert [p.name[:4] for p in series] == ["0000", "0001", "0002"]
    cover = series[0].read_text()
    assert "[RFC PATCH v2 0/2]" in cover
    assert "Keys Maintainer <keys@example.org>" in cover and "keyrings@example.org" in cover
    assert source.series_version(series[0]) == 2
    assert all("a fault switch" not in p.read_text() for p in series)
    harness = sorted((kernel / "harness").glob("*.patch"))
    assert len(harness) == 1 and "a fault switch" in harness[0].read_text()
    assert "harness stack" in (kernel / "harness" / "series").read_text()


def test_export_stacks_refuses_a_harness_not_on_top_of_the_series(
        git_repo: Path, tmp_path: Path) -> None:
    _git(git_repo, "checkout", "-q", "-b", source.HARNESS_BRANCH)
    _commit_change(git_repo, "line 15\n", "line fifteen\n", "keys: a fault switch")
    _git(git_repo, "checkout", "-q", "-b", source.DEV_BRANCH, "kcont-base")
    _commit_change(git_repo, "line 3\n", "line three\n", "keys: three")
    scripts = git_repo / "scripts"
    scripts.mkdir()
    (scripts / "get_maintainer.pl").write_text('print "k\\@example.org\\n";\n')
    (tmp_path / "kernel" / "patches").mkdir(parents=True)
    with pytest.raises(KcontVmError, match="not on top of"):
        source.export_stacks(git_repo, tmp_path / "kernel")


def test_series_version_reads_the_cover_subject(tmp_path: Path) -> None:
    cover = tmp_path / source.COVER_NAME
    assert source.series_version(cover) == 1
    cover.write_text("From x\nSubject: [RFC PATCH v3 00/31] kcont: a title\n\nbody\n")
    assert source.series_version(cover) == 3
    cover.write_text("Subject: [RFC PATCH 00/31] kcont: a title\n")
    assert source.series_version(cover) == 1


def test_read_cover_unfolds_a_long_subject(tmp_path: Path) -> None:
    """format-patch folds a long Subject: header; the title is all of it."""
    cover = tmp_path / source.COVER_NAME
    cover.write_text("From 0 Mon Sep 17 00:00:00 2001\nFrom: k <k@l>\n"
                     "Subject: [RFC PATCH v2 00/33] kcont: containers as kernel objects, for\n"
                     " namespace-aware upcalls\n\nThe body.\n")
    title, body = source.read_cover(cover)
    assert title == "kcont: containers as kernel objects, for namespace-aware upcalls"
    assert body.strip() == "The body."


def test_each_set_of_stacks_has_its_own_source_tree(tmp_path: Path) -> None:
    from kcont_vm.paths import Cache

    cache = Cache(tmp_path)
    assert cache.src_for(("patches", "harness")) == cache.src
    assert cache.src_for(("patches",)) == tmp_path / "src-patches"
    assert len({cache.src_for(("patches",)), cache.src_for(("patches", "harness"))}) == 2
