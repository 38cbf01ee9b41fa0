"""``kcont-vm build``: configure and build bzImage for one profile, cached by key.

Configuration is virtme-ng's defconfig-based base with kernel/config/*.config
and the profile's fragment merged on top (``virtme-configkernel --custom``),
then verified.  The build runs in a per-profile output directory with
ccache, so changing the series rebuilds only what it touched, and an
unchanged key skips make entirely.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kcont_vm import kconfig
from kcont_vm.errors import BuildError
from kcont_vm.fingerprint import build_key
from kcont_vm.paths import Cache, repo_root
from kcont_vm.progress import BuildProgress
from kcont_vm.series import all_patches, load_series, profile_stacks
from kcont_vm.source import prepare_src, source_id

STAMP = "kcont-build.json"
FIRST_BUILD_ESTIMATE = 2300


@dataclass
class BuildResult:
    profile: str
    key: str
    bzimage: Path
    rebuilt: bool
    seconds: float
    objects: int


def gcc_version() -> str:
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "gcc?"


def read_stamp(build_dir: Path) -> dict:
    try:
        return json.loads((build_dir / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def current_key(cache: Cache, profile: str) -> tuple[str, list[Path]]:
    root = repo_root()
    stacks = profile_stacks(root / "kernel", profile)
    frags = kconfig.fragments(root / "kernel" / "config", profile)
    return build_key(source_id(), all_patches(stacks), frags, profile, gcc_version()), frags


def venv_tool(name: str) -> str:
    """A console script of this venv (virtme-configkernel), wherever we run from."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise BuildError(f"{name} not found: run `kcont-vm setup` (pip package virtme-ng)")
    return found


def configure(src: Path, build_dir: Path, frags: list[Path], log) -> None:
    """virtme-ng's base, then our fragments appended and ``olddefconfig``.

    Fragments go after virtme's own list (not through ``--custom``) because
    virtme appends its mandatory options last, DWARF debug info among them,
    which costs build minutes and which KASAN reports do not need.
    """
    log(f"configuring: virtme-ng defconfig + {', '.join(f.name for f in frags)}")
    config = build_dir / ".config"
    steps = [
        [venv_tool("virtme-configkernel"), "--defconfig", f"O={build_dir}"],
        ["make", "-C", str(src), f"O={build_dir}", "olddefconfig"],
    ]
    with (build_dir / "kcont-config.log").open("w") as cfg_log:
        for number, argv in enumerate(steps):
            if number == 1:
                with config.open("a") as out:
                    for frag in frags:
                        out.write(f"\n# ---- {frag.name} ----\n" + frag.read_text())
            result = subprocess.run(argv, cwd=src, stdout=cfg_log, stderr=subprocess.STDOUT,
                                    check=False)
            if result.returncode != 0:
                raise BuildError(f"configuration failed: {argv[0]} exited {result.returncode}"
                                 f" (see {build_dir}/kcont-config.log)")
    final = kconfig.parse_config(config.read_text())
    problems = kconfig.unmet(kconfig.merged_requests(frags), final, kconfig.defined_in(src))
    if problems:
        raise BuildError("config fragments not honoured by Kconfig (unmet dependencies?): "
                         + "; ".join(problems))
    modules = kconfig.modules_left(final)
    if modules:
        raise BuildError("options built as modules, which the guest cannot load: "
                         + " ".join(modules) + " (set them y or n in kernel/config/)")


def make_argv(src: Path, build_dir: Path, target: str = "bzImage") -> list[str]:
    jobs = (os.cpu_count() or 2) + 1
    # LOCALVERSION= (empty) keeps setlocalversion from appending "+" for a git tree.
    return ["make", "-C", str(src), f"O={build_dir}", "CC=ccache gcc", "LOCALVERSION=",
            f"-j{jobs}", target]


def run_make(src: Path, build_dir: Path, cache: Cache, profile: str, expected: int) -> int:
    env = dict(os.environ, CCACHE_DIR=str(cache.ccache), CCACHE_MAXSIZE="8G",
               CCACHE_SLOPPINESS="time_macros")
    log_path = build_dir / "kcont-build.log"
    with log_path.open("w") as log_file, BuildProgress(f"build {profile}", expected) as bar:
        proc = subprocess.Popen(make_argv(src, build_dir), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log_file.write(line)
            bar.feed(line)
        rc = proc.wait()
        if rc != 0:
            log_file.flush()
            lines = log_path.read_text().splitlines()
            errors = [ln for ln in lines if "error" in ln.lower()][:10] or lines[-15:]
            raise BuildError(f"make failed (full log: {log_path}):\n" + "\n".join(errors))
    return bar.done


def build(profile: str, force: bool = False, cache: Cache | None = None, log=print) -> BuildResult:
    """Build ``profile`` unless a build with the same key is already there."""
    cache = cache or Cache.default()
    key, frags = current_key(cache, profile)
    # Taken with the kernel's key, before the source is read: what is
    # installed is stamped with the series it was built from.
    hkey = headers_key()
    build_dir = cache.build(profile)
    stamp = read_stamp(build_dir)
    bzimage = cache.bzimage(profile)
    if not force and stamp.get("key") == key and bzimage.exists():
        log(f"kernel {profile} is up to date ({key}): {bzimage}")
        stacks = profile_stacks(repo_root() / "kernel", profile)
        install_headers(cache.src_for(tuple(st.directory.name for st in stacks)), build_dir,
                        cache, log, hkey)
        return BuildResult(profile, key, bzimage, False, 0.0, 0)
    # Unstamped before the source changes: an interrupted prepare must not
    # leave a stamp naming a series the tree no longer holds.
    (build_dir / STAMP).unlink(missing_ok=True)
    src = prepare_src(cache, profile_stacks(repo_root() / "kernel", profile), log)
    if force:
        shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    configure(src, build_dir, frags, log)
    expected = stamp.get("objects") or read_stamp(cache.build("perf" if profile == "debug"
                                                             else "debug")).get("objects")
    objects = run_make(src, build_dir, cache, profile, expected or FIRST_BUILD_ESTIMATE)
    seconds = time.monotonic() - start
    if current_key(cache, profile)[0] != key or headers_key() != hkey:
        raise BuildError("the series or config changed while it was being built "
                         "(an export?): nothing stamped; run the build again")
    total = objects if not stamp.get("objects") or objects > stamp["objects"] * 0.5 \
        else stamp["objects"]
    (build_dir / STAMP).write_text(json.dumps(
        {"key": key, "profile": profile, "seconds": round(seconds, 1), "objects": total,
         "compiled": objects, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))
    log(f"kernel {profile} built in {seconds:.0f}s ({objects} objects compiled): {bzimage}")
    install_headers(src, build_dir, cache, log, hkey)
    return BuildResult(profile, key, bzimage, True, seconds, objects)


def headers_key() -> str:
    """Source and series only: uapi headers depend on neither config nor profile."""
    series = load_series(repo_root() / "kernel" / "patches")
    return build_key(source_id(), series.patches, [], "uapi-headers")


def install_headers(src: Path, build_dir: Path, cache: Cache, log=print,
                    key: str | None = None) -> Path:
    """The series' uapi headers for the binding, then the binding itself.

    Reinstalled only when the source or the series changes, so switching
    between profiles neither reinstalls them nor recompiles the binding.
    """
    key = key or headers_key()
    target = cache.root / "headers"
    stamp = target / "kcont-key"
    if not (stamp.exists() and stamp.read_text() == key):
        log(f"installing uapi headers into {target}")
        result = subprocess.run(["make", "-C", str(src), f"O={build_dir}", "headers_install",
                                 f"INSTALL_HDR_PATH={target}"], capture_output=True,
                                text=True, check=False)
        if result.returncode != 0:
            raise BuildError("make headers_install failed:\n" + result.stderr[-2000:])
        stamp.write_text(key)
    from kcont_vm.install import install_project

    install_project(target / "include")
    build_selftests(src, target, cache, key, log)
    return target


SELFTEST_DIRS = ("containers",)


def build_selftests(src: Path, headers: Path, cache: Cache, key: str, log=print) -> Path:
    """The series' kselftests (tools/testing/selftests/containers), built
    against its uapi headers into ``$KCONT_CACHE/selftests/<dir>``, where
    the guest suite runs them.  Like the headers, they depend on the
    series only: rebuilt when it changes, shared by both profiles."""
    out = cache.root / "selftests"
    stamp = out / "kcont-key"
    if stamp.exists() and stamp.read_text() == key:
        return out
    shutil.rmtree(out, ignore_errors=True)
    for name in SELFTEST_DIRS:
        log(f"building the {name} kselftests into {out / name}")
        (out / name).mkdir(parents=True)
        result = subprocess.run(
            ["make", "-C", str(src / "tools" / "testing" / "selftests" / name),
             f"OUTPUT={out / name}", f"KHDR_INCLUDES=-isystem {headers / 'include'}"],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"building the {name} kselftests failed:\n"
                             + (result.stdout + result.stderr)[-2000:])
    stamp.write_text(key)
    return out
