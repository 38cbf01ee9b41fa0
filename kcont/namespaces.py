"""The namespace kinds kcont speaks of, named once.

Names are as ``/proc/PID/ns/`` spells them, in the bit order of the
series' ``KEY_INTERCEPT_NS_*`` mask (0x01 .. 0x40) and of the probe's
event struct.  Pure Python, so configuration parsing, event decoding and
the routing model import it without the compiled binding;
``kcont.upcalls.Ns`` takes its values from the uapi header and a test
checks the two agree bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable

NS_KINDS: tuple[str, ...] = ("uts", "ipc", "mnt", "pid", "net", "cgroup", "user")
NS_BIT: dict[str, int] = {kind: 1 << i for i, kind in enumerate(NS_KINDS)}
NS_ALL: int = (1 << len(NS_KINDS)) - 1


def mask_kinds(mask: int) -> tuple[str, ...]:
    """The kinds a mask pins, in bit order."""
    return tuple(kind for kind in NS_KINDS if mask & NS_BIT[kind])


def kinds_mask(kinds: Iterable[str]) -> int:
    """The mask for an iterable of kind names; ValueError naming an unknown one."""
    mask = 0
    for kind in kinds:
        if kind not in NS_BIT:
            raise ValueError(f"unknown namespace {kind!r} (known: {', '.join(NS_KINDS)})")
        mask |= NS_BIT[kind]
    return mask
