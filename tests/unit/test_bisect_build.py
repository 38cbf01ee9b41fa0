"""``kcont-vm bisect-build`` resumes only over what it built: the digest a
step is recorded with covers the config fragments and the patches up to it."""

from __future__ import annotations

from pathlib import Path

from kcont_vm.bisect_build import prefix_digest


def _files(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    patches = []
    for n in range(3):
        patch = tmp_path / f"000{n + 1}-p.patch"
        patch.write_text(f"patch {n}\n")
        patches.append(patch)
    frag = tmp_path / "10-kcont.config"
    frag.write_text("CONFIG_KEYS=y\n")
    return patches, [frag]


def test_the_digest_changes_with_a_patch_up_to_the_step_only(tmp_path: Path) -> None:
    patches, frags = _files(tmp_path)
    first, second = prefix_digest(patches[:1], frags), prefix_digest(patches[:2], frags)
    patches[1].write_text("patch 1, reworked\n")
    assert prefix_digest(patches[:1], frags) == first
    assert prefix_digest(patches[:2], frags) != second


def test_a_changed_config_fragment_builds_every_patch_again(tmp_path: Path) -> None:
    patches, frags = _files(tmp_path)
    before = [prefix_digest(patches[:n], frags) for n in (1, 2, 3)]
    frags[0].write_text("CONFIG_KEYS=y\nCONFIG_AFS_FS=y\n")
    after = [prefix_digest(patches[:n], frags) for n in (1, 2, 3)]
    assert all(b != a for b, a in zip(before, after, strict=True))


def test_content_is_not_confused_across_file_boundaries(tmp_path: Path) -> None:
    patches, frags = _files(tmp_path)
    frags[0].write_text("CONFIG_KEYS=y\n0001-p.patch")
    patches[0].write_text("")
    moved = prefix_digest(patches[:1], frags)
    frags[0].write_text("CONFIG_KEYS=y\n")
    patches[0].write_text("0001-p.patch")
    assert prefix_digest(patches[:1], frags) != moved
