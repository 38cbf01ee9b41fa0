"""What the interception tests share: the marking helper, sysctls, serving.

The mark: keyutils' /sbin/request-key reads /etc/request-key.conf (the
guest sees the host's /etc).  A copy with one extra first line, bind-
mounted over it in the init mount namespace (where the kernel's helper
runs), sends every ``kcont-mark:*`` key to a script that appends the
description to a file and instantiates the key with "marked".  So a
requester that got "marked" was served by the classic helper, and a
description missing from the file proves the helper never ran for it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kcont import upcalls
from kcont.keys import Key, Keyring, assume_authority, instantiate, negate, reject

MARKS = Path("/tmp/kcont-marks")
MARK_SCRIPT = Path("/tmp/kcont-mark.sh")
MARK_CONF = Path("/tmp/kcont-request-key.conf")
MARK_PREFIX = "kcont-mark:"

_counter = itertools.count()


def unique(tag: str = "") -> str:
    """A description no earlier request used (negative keys are cached)."""
    return f"{MARK_PREFIX}{tag}{os.getpid()}-{next(_counter)}"


@contextmanager
def host_request_key_conf(first_lines: str) -> Iterator[None]:
    """keyutils' /etc/request-key.conf with ``first_lines`` before the
    original's, for the kernel's helper (bind mount, init mount namespace)."""
    if os.readlink("/proc/self/ns/mnt") != os.readlink("/proc/1/ns/mnt"):
        raise RuntimeError("the test must run in the init mount namespace to reach the helper")
    original = Path("/etc/request-key.conf").read_text()
    MARK_CONF.write_text(first_lines + original)
    subprocess.run(["mount", "--bind", str(MARK_CONF), "/etc/request-key.conf"], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "/etc/request-key.conf"], check=True)


@contextmanager
def marking_helper(pattern: str = f"{MARK_PREFIX}*", key_type: str = "*") -> Iterator[Path]:
    """The host's helper marks what it is asked for that matches ``key_type``
    and ``pattern``.  keyutils' request-key runs the least wild matching
    line, not the first: to win over keyutils' own line for a type
    (``create dns_resolver * * /sbin/key.dns_resolver``), the marking line
    must name that type, not ``*``."""
    MARK_SCRIPT.write_text('#!/bin/sh\necho "$2" >> /tmp/kcont-marks\n'
                           'exec /bin/keyctl instantiate "$1" marked "$4"\n')
    MARK_SCRIPT.chmod(0o755)
    MARKS.write_text("")
    with host_request_key_conf(
            f"create {key_type} {pattern} * {MARK_SCRIPT} %k %d %c %S\n"):
        yield MARKS


def marked() -> set[str]:
    return set(MARKS.read_text().split())


# The series' fault switches (CONFIG_KEYS_INTERCEPT_FAULT, debug profile).
TRACING = Path("/sys/kernel/tracing")


def tracefs() -> Path:
    """The tracefs root, mounted if the guest booted without it."""
    if not (TRACING / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=True)
    return TRACING


@contextmanager
def trace_instance(name: str, events: tuple[str, ...]) -> Iterator[Path]:
    """A ftrace instance of its own with the ``keys:`` ``events`` on, so that
    a test reads kernel timestamps that no other test's tracing disturbs;
    yields its ``trace`` file and removes the instance after."""
    instance = tracefs() / "instances" / name
    instance.mkdir()
    try:
        (instance / "buffer_size_kb").write_text("4096")
        for event in events:
            (instance / "events" / "keys" / event / "enable").write_text("1")
        yield instance / "trace"
    finally:
        for event in events:
            (instance / "events" / "keys" / event / "enable").write_text("0")
        instance.rmdir()


def trace_stamps(trace: Path, needle: str) -> list[float]:
    """The ftrace timestamps (seconds) of the lines of ``trace`` holding ``needle``."""
    stamps = []
    for line in trace.read_text().splitlines():
        if needle in line and not line.startswith("#"):
            stamps.append(float(line.split(": ", 1)[0].split()[-1]))
    return stamps


DEBUGFS = Path("/sys/kernel/debug")
# The harness stack's kernel requester (keys/kernel_request, keys/request_on_release).
KERNEL_REQUESTER = DEBUGFS / "keys"


@contextmanager
def written(path: Path, value: str) -> Iterator[None]:
    """``value`` in a sysctl or debugfs file for the block, then the old one."""
    old = path.read_text().strip()
    path.write_text(value)
    try:
        yield
    finally:
        path.write_text(old)


def sysctl(name: str, value: str) -> contextlib.AbstractContextManager[None]:
    return written(Path("/proc/sys") / name.replace(".", "/"), value)


@contextmanager
def fault_injected(capability: str, extra: str, value: str) -> Iterator[None]:
    """One of the harness stack's fault-injection capabilities
    (``fail_key_intercept_filter`` or ``_delivery``) armed to fire every
    time, for every task, silently, with its own file ``extra`` (ignore-ns,
    delay-ms) set to ``value``; disarmed after.  The debug kernel has them;
    a kernel without them fails here, loudly."""
    attr = DEBUGFS / capability
    with contextlib.ExitStack() as stack:
        for name, setting in (("verbose", "0"), ("task-filter", "N"), ("interval", "1"),
                              ("space", "0"), ("times", "-1"), ("probability", "100")):
            stack.enter_context(written(attr / name, setting))
        stack.enter_context(written(attr / extra, value))
        yield


def filter_fault(mask: int) -> contextlib.AbstractContextManager[None]:
    """Routing treats the KEY_INTERCEPT_NS_* kinds in ``mask`` as matching
    (and the kernel is tainted TAINT_TEST once it has)."""
    return fault_injected("fail_key_intercept_filter", "ignore-ns", f"{mask:#x}")


def delivery_delay(ms: int) -> contextlib.AbstractContextManager[None]:
    """Routing sleeps ``ms`` between choosing a record and delivering."""
    return fault_injected("fail_key_intercept_delivery", "delay-ms", str(ms))


def wait_queued(queues: list[Keyring], want: int, timeout: float = 60.0) -> dict[int, list[int]]:
    """Poll the queue keyrings until ``want`` auth keys are linked in all."""
    deadline = time.monotonic() + timeout
    while True:
        found = {q.serial: [k.serial for k in q.linked()] for q in queues}
        if sum(map(len, found.values())) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def serve(auth: int, action: str = "instantiate", payload: str = "served",
          error: int = 0) -> upcalls.AuthRequest:
    """Serve one intercepted request by hand, as a daemon would."""
    request = upcalls.query_auth(auth)
    with assume_authority(request.target_key):
        if action == "instantiate":
            instantiate(request.target_key, payload)
        elif action == "negate":
            negate(request.target_key)
        else:
            reject(request.target_key, error)
    return request


def describe_target(auth: int) -> str:
    return Key(upcalls.query_auth(auth).target_key).describe().description
