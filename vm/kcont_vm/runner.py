"""Boot a built kernel with virtme-ng and run one command in it.

The guest sees the host's root filesystem read-only over 9p, so the repo
and its venv are at the same paths; a per-run results directory is shared
read-write.  The kernel console (``vng --verbose`` sends it to stderr) is
split on the host: every line goes to the run's console.log, and only the
lines that are not printk lines are echoed, so the command's own stderr
stays visible.  After the guest exits, the console is searched for kernel
reports; one makes the run fail whatever the command returned.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kcont_vm import reports
from kcont_vm.accel import choose_accel
from kcont_vm.build import venv_tool
from kcont_vm.errors import (
    EXIT_GUEST_DIED,
    EXIT_KERNEL_REPORT,
    EXIT_USAGE,
    KcontVmError,
)
from kcont_vm.paths import Cache, repo_root

KEEP_RUNS = 30
# rootflags: virtme-ng's own 9p root options (the kernel takes the last
# rootflags=, and ours comes after vng's) plus cache=loose.  The guest's
# root is the host's, which does not change during a run; caching it halves
# Python's start-up in the debug guest (13.6 s to 7.1 s measured).
ROOT_9P_FLAGS = "version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose"
# no5lvl: QEMU's "-cpu max" under TCG offers LA57, which no machine we target
# has.  With 5-level paging, identify_cpu() briefly clears the boot CPU's
# feature bits with interrupts already on (6.1's arch_cpu_finalize_init()),
# so pgtable_l5_enabled() reads false, KASAN computes its shadow bounds for
# 4-level paging, and an interrupt landing in that window is reported as a
# wild access to its irq_desc (seen once in ~15 debug boots, in the base
# kernel, before any kcont code runs).  4-level paging has no such window.
GUEST_APPEND = ("printk.devkmsg=on", f"rootflags={ROOT_9P_FLAGS}", "no5lvl")
GUEST_WRAPPER = Path(__file__).with_name("guest-run.sh")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class RunSpec:
    """Everything that decides one guest boot."""

    bzimage: Path
    cmd: list[str]
    profile: str = "debug"
    cwd: Path = field(default_factory=repo_root)
    memory: str = "2G"
    cpus: int = 2
    timeout: float = 3600.0
    kmemleak: bool = True
    echo_console: bool = False
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    exit_code: int
    command_rc: int | None
    reports: list[reports.Report]
    console_log: Path
    results: Path
    seconds: float

    def keep(self, out: Path, console_name: str) -> Path:
        """Copy what the guest left (files and directories, but not its exit
        status file) and the console log, as ``console_name``, into ``out``,
        which outlives the run directory; the console copy's path."""
        for item in self.results.iterdir():
            if item.name == "guest-rc":
                continue
            if item.is_dir():
                shutil.copytree(item, out / item.name, dirs_exist_ok=True)
            else:
                shutil.copy(item, out / item.name)
        console = out / console_name
        shutil.copy(self.console_log, console)
        return console


def new_run_dir(cache: Cache) -> Path:
    cache.runs.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in cache.runs.iterdir() if p.is_dir())
    for stale in old[:-KEEP_RUNS]:
        shutil.rmtree(stale, ignore_errors=True)
    # Unique even for two boots started in the same second by one process.
    run_dir = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-",
                                    dir=cache.runs))
    (run_dir / "results").mkdir()
    return run_dir


def guest_command(spec: RunSpec, results: Path) -> list[str]:
    """The argv virtme-ng runs: env, then the guest wrapper, then CMD."""
    env = {
        "PYTHONPATH": str(repo_root() / "vm"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "KCONT_IN_GUEST": "1",
        "KCONT_RESULTS": str(results),
        "KCONT_PROFILE": spec.profile,
        "KCONT_CACHE": str(Cache.default().root),
        "PATH": f"{Path(sys.executable).parent}:{SBIN_PATH}",
        **spec.env,
    }
    wrapper = ["sh", str(GUEST_WRAPPER)]
    if not spec.kmemleak:
        wrapper.append("--no-kmemleak")
    return ["env", *(f"{k}={v}" for k, v in env.items()), *wrapper, "--", *spec.cmd]


def vng_argv(spec: RunSpec, accel: str, results: Path | None,
             guest_cmd: list[str] | None) -> list[str]:
    argv = [venv_tool("vng"), "--run", str(spec.bzimage), "--force-9p",
            "--cpus", str(spec.cpus), "--memory", spec.memory, "--cwd", str(spec.cwd)]
    if accel == "tcg":
        argv.append("--disable-kvm")
    for item in GUEST_APPEND:
        argv += ["--append", item]
    if results is not None:
        argv += ["--rwdir", str(results)]
    if guest_cmd is not None:
        argv += ["--verbose", "--exec", shlex.join(guest_cmd)]
    return argv


def check_command(cmd: list[str]) -> None:
    """Fail before booting if CMD cannot exist in the guest (same root filesystem)."""
    if not cmd:
        raise KcontVmError("no command given: kcont-vm run -- CMD...", EXIT_USAGE)
    name = cmd[0]
    if "/" in name:
        found = Path(name).exists()
    else:
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}:{SBIN_PATH}"
        found = shutil.which(name, path=path) is not None
    if not found:
        raise KcontVmError(f"{name}: command not found (the guest shares this machine's "
                           "root filesystem)", 127)


SHIM_DIR = Path(__file__).with_name("shim")


def lean_init_enabled(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """The lean init (guest_tools.py) unless KCONT_FULL_INIT asks for virtme's."""
    return environ.get("KCONT_FULL_INIT", "") in ("", "0")


def vng_env() -> dict[str, str]:
    """vng runs ``virtme-run`` through a shell: the venv's bin must be on PATH.

    With the lean init, our ``virtme-run`` shim comes first; it imports
    kcont_vm, hence the absolute PYTHONPATH.
    """
    path = [str(Path(sys.executable).parent), os.environ.get("PATH", SBIN_PATH)]
    env = dict(os.environ)
    if lean_init_enabled():
        path.insert(0, str(SHIM_DIR))
        pythonpath = [str(repo_root() / "vm"), os.environ.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = ":".join(filter(None, pythonpath))
    env["PATH"] = ":".join(path)
    return env


def _copy(stream, out) -> None:
    """The guest command's stdout, as it comes (pytest's dots end no line)."""
    raw = stream.buffer
    for chunk in iter(lambda: raw.read1(4096), b""):
        out.buffer.write(chunk)
        out.flush()


SCRIPT_STARTED = "virtme-ng-init: starting script"


def _pump(stream, log_file, echo_all: bool) -> None:
    """Copy vng's stderr to the log; echo only the command's own stderr.

    Before the guest script starts, everything is boot noise (vng's
    warnings, the decompressor's early console): log only.  After it,
    printk lines are the console (log only) and the rest is the command.
    """
    started = False
    for line in stream:
        log_file.write(line)
        log_file.flush()
        started = started or SCRIPT_STARTED in line
        if echo_all or (started and not reports.is_printk(line)):
            sys.stderr.write(line)
            sys.stderr.flush()


# Process groups of the guests booting now (one per thread running boot()),
# so that a caller whose own boot failed can stop the others at once
# instead of waiting for their timeouts.
_LIVE_BOOTS: set[int] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(pgid: int) -> None:
    """SIGKILL a guest's process group (vng, QEMU), gone already or not."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def kill_live_boots() -> int:
    """Kill every guest booting now (their boot() calls then return as a
    guest that died); how many were killed."""
    with _LIVE_LOCK:
        groups = list(_LIVE_BOOTS)
    for pgid in groups:
        _kill_group(pgid)
    return len(groups)


def boot(spec: RunSpec, cache: Cache | None = None, dry_run: bool = False,
         run_dir: Path | None = None, log=print, output: TextIO | None = None) -> RunOutcome:
    """Boot, run, collect; the exit code follows errors.EXIT_* rules.  The
    guest command's output goes to ``output`` (default: our stdout)."""
    cache = cache or Cache.default()
    check_command(spec.cmd)
    run_dir = run_dir or new_run_dir(cache)
    results = run_dir / "results"
    accel = choose_accel(spec.bzimage, cache.root / "accel.json")
    argv = vng_argv(spec, accel, results, guest_command(spec, results))
    if dry_run:
        print(shlex.join(argv))
        return RunOutcome(0, 0, [], run_dir / "console.log", results, 0.0)
    console_log = run_dir / "console.log"
    log(f"kcont-vm: booting {spec.bzimage} ({accel}); console log: {console_log}")
    start = time.monotonic()
    with console_log.open("w") as log_file:
        # stdout is a pipe too: QEMU opens /proc/self/fd/1 with O_TRUNC,
        # which would wipe a log file that our caller redirected us to.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=vng_env(), text=True,
                                errors="replace", start_new_session=True)
        with _LIVE_LOCK:
            _LIVE_BOOTS.add(proc.pid)
        pumps = [
            threading.Thread(target=_pump, args=(proc.stderr, log_file, spec.echo_console),
                             daemon=True),
            threading.Thread(target=_copy, args=(proc.stdout, output or sys.stdout),
                             daemon=True),
        ]
        for pump in pumps:
            pump.start()
        timed_out = False
        try:
            proc.wait(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE_BOOTS.discard(proc.pid)
        for pump in pumps:
            pump.join(timeout=10)
    seconds = time.monotonic() - start
    found = reports.find_reports(console_log.read_text(errors="replace").splitlines())
    rc_file = results / "guest-rc"
    command_rc = int(rc_file.read_text()) if rc_file.exists() else None
    if found:
        for report in found:
            print(f"kcont-vm: kernel report ({report.kind}) at {console_log}:"
                  f"{report.line_number}:\n{report.text}\n", file=sys.stderr)
        exit_code = EXIT_KERNEL_REPORT
        print(f"kcont-vm: {len(found)} kernel report(s); command exit code {command_rc}",
              file=sys.stderr)
    elif command_rc is None:
        why = f"timed out after {spec.timeout:.0f}s" if timed_out else \
            f"vng exited {proc.returncode} without the command's exit code"
        tail = "\n".join(console_log.read_text(errors="replace").splitlines()[-20:])
        print(f"kcont-vm: the guest died ({why}); console log {console_log}:\n{tail}",
              file=sys.stderr)
        exit_code = EXIT_GUEST_DIED
    else:
        exit_code = command_rc
    return RunOutcome(exit_code, command_rc, found, console_log, results, seconds)


def shell(bzimage: Path, cache: Cache | None = None) -> int:
    """An interactive shell in the guest; the console is the terminal."""
    cache = cache or Cache.default()
    spec = RunSpec(bzimage=bzimage, cmd=[])
    accel = choose_accel(bzimage, cache.root / "accel.json")
    return subprocess.run(vng_argv(spec, accel, None, None), env=vng_env(),
                          check=False).returncode
