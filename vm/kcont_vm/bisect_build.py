"""``kcont-vm bisect-build``: build the series one patch at a time.

Upstream asks that every patch of a series build on its own, so that
``git bisect`` never lands on a tree that does not compile.  This applies
the series to a separate work tree of the base one patch at a time and
builds bzImage (perf profile by default) after each, in one build
directory, so that each step recompiles only what that patch changed.
A patch that touches a widely included header (sched.h, cred.h, key.h,
security.h) costs a near-full rebuild; the rest take a minute or two.

Progress is kept in ``$KCONT_CACHE/bisect-build-<profile>.json``: a run
that was stopped resumes after the last patch that built, as long as the
series up to it and the profile's config fragments are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from kcont_vm import kconfig
from kcont_vm.build import configure, run_make
from kcont_vm.errors import BuildError
from kcont_vm.gitutil import git
from kcont_vm.paths import Cache, repo_root
from kcont_vm.series import SERIES_STACK, load_series
from kcont_vm.source import BASE_TAG, ensure_base


def prefix_digest(patches: list[Path], frags: list[Path]) -> str:
    """What a step was built from: the config fragments and the patches up
    to it.  A step is reused only if this is unchanged, so that a new
    option in a fragment (a driver turned on) builds every patch again."""
    h = hashlib.sha256()
    for path in [*frags, *patches]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run_bisect_build(profile: str = "perf", cache: Cache | None = None, log=print) -> int:
    cache = cache or Cache.default()
    ensure_base(cache, log)
    series = load_series(repo_root() / "kernel" / SERIES_STACK)
    patches = series.patches
    record_path = cache.root / f"bisect-build-{profile}.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    steps: list[dict] = record.get("steps", [])
    frags = kconfig.fragments(repo_root() / "kernel" / "config", profile)
    # Resume only over an unchanged configuration and prefix of the series.
    while steps and (steps[-1].get("prefix") != prefix_digest(patches[:len(steps)], frags)
                     or "commit" not in steps[-1]):
        steps.pop()
    src = cache.root / f"src-bisect-{profile}"
    build_dir = cache.build(f"{profile}-bisect")
    if not steps or not (src / ".git").exists():
        steps = []
        if src.exists():
            git(cache.base, "worktree", "remove", "--force", str(src), check=False)
            shutil.rmtree(src, ignore_errors=True)
        git(cache.base, "worktree", "prune")
        git(cache.base, "worktree", "add", "-q", "--detach", str(src), BASE_TAG)
        build_dir.mkdir(parents=True, exist_ok=True)
        configure(src, build_dir, frags, log)
    else:
        # Back to the last patch that built: a failed or stopped step left
        # its patch applied, or an am half done.
        git(src, "am", "--abort", check=False)
        git(src, "reset", "-q", "--hard", steps[-1]["commit"])
        log(f"resuming after patch {len(steps)} of {len(patches)}")
    for number in range(len(steps) + 1, len(patches) + 1):
        patch = patches[number - 1]
        result = git(src, "am", "-q", str(patch), check=False)
        if result.returncode != 0:
            git(src, "am", "--abort", check=False)
            raise BuildError(f"{patch.name} does not apply on the patches before it")
        start = time.monotonic()
        try:
            if _kconfig_changed(src):
                # The patch added symbols (CONFIG_CONTAINERS): configure again.
                configure(src, build_dir, frags, log)
            objects = run_make(src, build_dir, cache, f"{profile} {number}/{len(patches)}",
                               100)
        except BuildError as err:
            log(f"FAILED at {number}/{len(patches)} {patch.name}:\n{err}")
            record_path.write_text(json.dumps({"steps": steps, "failed": patch.name},
                                              indent=1))
            return 1
        seconds = time.monotonic() - start
        steps.append({"patch": patch.name, "seconds": round(seconds, 1), "objects": objects,
                      "prefix": prefix_digest(patches[:number], frags),
                      "commit": git(src, "rev-parse", "HEAD").stdout.strip()})
        record_path.write_text(json.dumps({"steps": steps}, indent=1))
        log(f"built {number}/{len(patches)} {patch.name} in {seconds:.0f}s "
            f"({objects} objects)")
    total = sum(step["seconds"] for step in steps)
    log(f"every patch of the series built on its own ({profile} profile): "
        f"{len(steps)} builds, {total:.0f}s of building")
    return 0


def _kconfig_changed(src: Path) -> bool:
    """Did the patch just applied change a Kconfig file?"""
    changed = git(src, "diff", "--name-only", "HEAD~1", "HEAD").stdout.split()
    return any(Path(name).name.startswith("Kconfig") for name in changed)
