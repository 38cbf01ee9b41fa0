"""The build key: stable for the same inputs, different for any change."""

from __future__ import annotations

from pathlib import Path

from kcont_vm.fingerprint import build_key


def _files(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    p = tmp_path / "0001-x.patch"
    p.write_text("patch\n")
    c = tmp_path / "a.config"
    c.write_text("CONFIG_X=y\n")
    return [p], [c]


def test_stable(tmp_path: Path) -> None:
    patches, configs = _files(tmp_path)
    assert build_key("src 1", patches, configs, "debug") == \
        build_key("src 1", patches, configs, "debug")


def test_every_input_matters(tmp_path: Path) -> None:
    patches, configs = _files(tmp_path)
    base = build_key("src 1", patches, configs, "debug", "gcc 12")
    assert build_key("src 2", patches, configs, "debug", "gcc 12") != base
    assert build_key("src 1", patches, configs, "perf", "gcc 12") != base
    assert build_key("src 1", patches, configs, "debug", "gcc 13") != base
    assert build_key("src 1", [], configs, "debug", "gcc 12") != base
    patches[0].write_text("patch changed\n")
    assert build_key("src 1", patches, configs, "debug", "gcc 12") != base
    patches[0].write_text("patch\n")
    configs[0].write_text("CONFIG_X=n\n")
    assert build_key("src 1", patches, configs, "debug", "gcc 12") != base


def test_patch_order_matters(tmp_path: Path) -> None:
    a, b = tmp_path / "a.patch", tmp_path / "b.patch"
    a.write_text("a")
    b.write_text("b")
    assert build_key("s", [a, b], [], "debug") != build_key("s", [b, a], [], "debug")
