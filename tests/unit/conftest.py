"""Host tests: pure parts of kcont and the harness, needing no patched
kernel and nothing the build compiles (the CFFI binding, rk-exec): tests
that do are in tests/binding.  They run from a fresh clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import binding_block
import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]
# tests/: what host and guest tests share (the admission webhook).
sys.path.insert(0, str(ROOT / "tests"))
binding_block.block()
# The interpreters the tests start (python -m request_key_daemon.cli, say)
# find the source tree as this one does ([tool.pytest.ini_options]
# pythonpath): on a fresh clone nothing is installed yet.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), str(ROOT / "userspace"), str(ROOT / "vm"),
     *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


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
