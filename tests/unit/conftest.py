"""Host tests: pure parts of kcont and the harness, no patched kernel and no
compiled binding needed (tests that need the binding are in tests/binding)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import binding_block
import pytest

DATA = Path(__file__).parent / "data"
# tests/: what host and guest tests share (the admission webhook).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
binding_block.block()


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A tiny git repo with one file, tagged kcont-base like the kernel base."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keys.c").write_text("".join(f"line {i}\n" for i in range(1, 21)))
    env_cmds = [["init", "-q", "-b", "base"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
                ["tag", "kcont-base"]]
    for args in env_cmds:
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    return repo
