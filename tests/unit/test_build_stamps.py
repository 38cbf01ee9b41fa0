"""A build is stamped with the key of the series it was built from.

The key is taken before the source is prepared; a series edited while
make runs (an export from the developer's tree, say) would otherwise be
stamped with a key it was not built from, and its stale kernel, headers
or kselftests reused by every later check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kcont_vm import build
from kcont_vm.errors import BuildError
from kcont_vm.paths import Cache


def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kernel_keys: list[str],
               header_keys: list[str]) -> list[str]:
    """build.build() with make and the source stubbed out; the keys are
    handed out in order, as successive reads of the repository would.
    Returns the header keys install_headers() was given."""
    kernel, headers = iter(kernel_keys), iter(header_keys)
    installed: list[str] = []
    monkeypatch.setattr(build, "current_key", lambda cache, profile: (next(kernel), []))
    monkeypatch.setattr(build, "headers_key", lambda: next(headers))
    monkeypatch.setattr(build, "profile_stacks", lambda root, profile: [])
    monkeypatch.setattr(build, "prepare_src", lambda cache, stacks, log: tmp_path / "src")
    monkeypatch.setattr(build, "configure", lambda *args: None)
    monkeypatch.setattr(build, "run_make", lambda *args: 10)
    monkeypatch.setattr(build, "install_headers",
                        lambda src, build_dir, cache, log, key: installed.append(key))
    return installed


def test_a_series_edited_during_the_build_is_not_stamped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = fake_build(monkeypatch, tmp_path, ["k-before", "k-after"], ["h1", "h1"])
    cache = Cache(tmp_path)
    with pytest.raises(BuildError, match="changed while it was being built"):
        build.build("debug", cache=cache, log=lambda *args: None)
    assert not (cache.build("debug") / build.STAMP).exists()
    assert installed == []


def test_headers_edited_during_the_build_are_not_stamped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = fake_build(monkeypatch, tmp_path, ["k1", "k1"], ["h-before", "h-after"])
    with pytest.raises(BuildError, match="changed while it was being built"):
        build.build("debug", cache=Cache(tmp_path), log=lambda *args: None)
    assert installed == []


def test_an_unchanged_series_is_stamped_with_the_keys_it_was_built_from(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = fake_build(monkeypatch, tmp_path, ["k1", "k1"], ["h1", "h1"])
    cache = Cache(tmp_path)
    build.build("debug", cache=cache, log=lambda *args: None)
    assert '"key": "k1"' in (cache.build("debug") / build.STAMP).read_text()
    assert installed == ["h1"]
