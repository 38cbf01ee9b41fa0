"""Thin wrapper over git for the kernel trees: argument lists, fixed identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

AUTHOR = ("kcont developers", "kcont@localhost")


def git_env() -> dict[str, str]:
    """Commits made by kcont-vm (the base, applied patches) carry the project identity."""
    env = dict(os.environ)
    env.setdefault("GIT_AUTHOR_NAME", AUTHOR[0])
    env.setdefault("GIT_AUTHOR_EMAIL", AUTHOR[1])
    env["GIT_COMMITTER_NAME"] = AUTHOR[0]
    env["GIT_COMMITTER_EMAIL"] = AUTHOR[1]
    return env


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git in ``repo``, capturing output; raise CalledProcessError if check."""
    return subprocess.run(["git", "-C", str(repo), *args], env=git_env(), text=True,
                          capture_output=True, check=check)


def rev(repo: Path, ref: str = "HEAD") -> str | None:
    result = git(repo, "rev-parse", "--verify", "-q", ref, check=False)
    return result.stdout.strip() or None
