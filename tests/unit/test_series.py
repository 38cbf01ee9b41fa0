"""The series file: order, comments, missing and duplicate patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm.errors import BuildError
from kcont_vm.series import all_patches, load_series, parse_series, profile_stacks


def test_parse_keeps_order_and_drops_comments() -> None:
    text = "# header\n\n0001-a.patch\n0002-b.patch  # trailing\n   \n0003-c.patch\n"
    assert parse_series(text) == ["0001-a.patch", "0002-b.patch", "0003-c.patch"]


def test_missing_series_file_is_empty(tmp_path: Path) -> None:
    assert load_series(tmp_path).names == ()


def test_missing_patch_is_named(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-here.patch\n0002-gone.patch\n")
    (tmp_path / "0001-here.patch").write_text("x")
    with pytest.raises(BuildError, match=r"0002-gone\.patch does not exist"):
        load_series(tmp_path)


def test_duplicate_patch_is_named(tmp_path: Path) -> None:
    (tmp_path / "series").write_text("0001-a.patch\n0001-a.patch\n")
    (tmp_path / "0001-a.patch").write_text("x")
    with pytest.raises(BuildError, match="listed twice"):
        load_series(tmp_path)


def test_patches_are_paths_in_order(tmp_path: Path) -> None:
    for name in ("0002-b.patch", "0001-a.patch"):
        (tmp_path / name).write_text(name)
    (tmp_path / "series").write_text("0002-b.patch\n0001-a.patch\n")
    assert [p.name for p in load_series(tmp_path).patches] == ["0002-b.patch", "0001-a.patch"]


def test_repository_series_is_loadable() -> None:
    root = Path(__file__).resolve().parents[2]
    series = load_series(root / "kernel" / "patches")
    assert all(p.is_file() for p in series.patches)


def test_the_perf_profile_builds_the_series_alone_and_debug_adds_the_harness(
        tmp_path: Path) -> None:
    for stack in ("patches", "harness"):
        (tmp_path / stack).mkdir()
        (tmp_path / stack / "0001-a.patch").write_text(stack)
        (tmp_path / stack / "series").write_text("0001-a.patch\n")
    debug = profile_stacks(tmp_path, "debug")
    assert [s.directory.name for s in debug] == ["patches", "harness"]
    assert [p.read_text() for p in all_patches(debug)] == ["patches", "harness"]
    assert [s.directory.name for s in profile_stacks(tmp_path, "perf")] == ["patches"]
    assert [s.directory.name for s in profile_stacks(tmp_path, "other")] == ["patches"]


def test_the_repository_harness_stack_is_loadable_and_apart() -> None:
    kernel = Path(__file__).resolve().parents[2] / "kernel"
    harness = load_series(kernel / "harness")
    series = load_series(kernel / "patches")
    assert harness.names and not set(harness.names) & set(series.names)
    text = "".join(p.read_text() for p in series.patches)
    for test_only in ("FAIL_KEY_INTERCEPT", "KEYS_KERNEL_REQUESTER", "unprivileged_userns_clone"):
        assert f"+config {test_only}" not in text and f"{test_only} " not in text
