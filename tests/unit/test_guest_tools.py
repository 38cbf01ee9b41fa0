"""The lean guest init: virtme's hook still exists, the mirror is complete."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kcont_vm import guest_tools, runner


def test_virtme_hook_the_shim_replaces_exists() -> None:
    """The shim patches virtme.resources.find_guest_tools; a virtme-ng
    upgrade that renames it must fail here, not as a slow boot."""
    from virtme import resources
    from virtme.commands import run

    stock = Path(resources.find_guest_tools())
    assert (stock / "bin" / guest_tools.INIT_NAME).is_file()
    assert "resources.find_guest_tools()" in Path(run.__file__).read_text()


def test_mirror_links_everything_and_compiles_init(tmp_path: Path) -> None:
    stock = guest_tools.stock_guest_tools()
    out = guest_tools.lean_guest_tools(tmp_path)
    wanted = {p.name for p in stock.iterdir()} - guest_tools.SKIP - {"bin"}
    assert wanted <= {p.name for p in out.iterdir()}
    real = out / "bin" / f"{guest_tools.INIT_NAME}.real"
    assert real.resolve() == (stock / "bin" / guest_tools.INIT_NAME).resolve()
    init = out / "bin" / guest_tools.INIT_NAME
    assert not init.is_symlink() and os.access(init, os.X_OK)
    assert "statically linked" in subprocess.run(["file", "-L", str(init)], check=True,
                                                 capture_output=True, text=True).stdout
    mtime = init.stat().st_mtime_ns
    guest_tools.lean_guest_tools(tmp_path)
    assert init.stat().st_mtime_ns == mtime, "an unchanged init must not be recompiled"


@pytest.mark.parametrize(("value", "lean"), [("", True), ("0", True), ("1", False)])
def test_full_init_switch(monkeypatch: pytest.MonkeyPatch, value: str, lean: bool) -> None:
    monkeypatch.setenv("KCONT_FULL_INIT", value)
    path = runner.vng_env()["PATH"].split(":")
    assert (str(runner.SHIM_DIR) in path) is lean
    assert (runner.SHIM_DIR / "virtme-run").is_file()


def test_guest_boots_with_4_level_paging() -> None:
    """no5lvl: the LA57 early-IRQ KASAN false report (runner.py) cannot recur."""
    assert "no5lvl" in runner.GUEST_APPEND


def test_init_is_rebuilt_when_its_source_changes(tmp_path: Path) -> None:
    source = tmp_path / "init.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = tmp_path / "init"
    guest_tools._compile(source, binary)
    first = binary.read_bytes()
    os.utime(source, (0, 0))  # older than the binary: mtime alone would skip it
    source.write_text("int main(void) { return 1; }\n")
    os.utime(source, (0, 0))
    guest_tools._compile(source, binary)
    assert binary.read_bytes() != first


def _relink_many(out: str, target: str, rounds: int) -> None:
    for _ in range(rounds):
        for i in range(20):
            guest_tools._link(Path(target) / f"e{i}", Path(out) / f"e{i}")


def test_two_boots_mirroring_at_once_both_succeed(tmp_path: Path) -> None:
    """The debug and the perf boot start together, and each mirrors the
    guest tools.  When the links point at another checkout's virtme (a
    fresh clone beside an old one), both replace them at once: neither may
    fail with EEXIST or ENOENT, and every link must end up whole."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    out = tmp_path / "mirror"
    out.mkdir()
    procs = [ctx.Process(target=_relink_many, args=(str(out), str(tmp_path / name), 150))
             for name in ("a", "b")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    for i in range(20):
        assert os.readlink(out / f"e{i}") in {str(tmp_path / n / f"e{i}") for n in "ab"}
