"""The series file: order, comments, missing and duplicate patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm.errors import BuildError
from kcont_vm.series import load_series, parse_series


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
