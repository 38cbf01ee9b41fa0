"""Find kernel reports (BUG, WARNING, KASAN, lockdep, kmemleak, ...) in a console log.

Only printk lines (those with a ``[ seconds.micros]`` timestamp) are read,
so nothing a test prints on stderr can fake or hide a report.  The guest
wrapper forwards the kmemleak scan result through /dev/kmsg for the same
reason.  Patterns are anchored on the message text the kernel emits, not
on single words: a boot line such as ``Kernel command line: panic=-1`` or
``RETBleed: WARNING: Spectre v2 mitigation ...`` is not a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PRINTK = re.compile(r"^\s*(?:<\d+>)?\[\s*\d+\.\d+\]\s?(?:\[\s*[CT]\d+\]\s?)?(?P<msg>.*)$")

# (kind, pattern on the message text)
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rx))
    for kind, rx in (
        ("kasan", r"BUG: KASAN: "),
        ("ubsan", r"UBSAN: "),
        ("lockdep", r"WARNING: (possible (circular|recursive|irq)|inconsistent lock state"
                    r"|suspicious RCU usage|bad unlock balance|lock held when returning"
                    r"|held lock freed|Nested lock was not taken|chain_key collision)"),
        ("lockdep", r"possible \w+[\w -]* locking"),
        ("lockdep", r"DEBUG_LOCKS_WARN_ON\("),
        ("atomic-sleep", r"BUG: (sleeping function called from invalid context"
                         r"|scheduling while atomic)"),
        ("soft-lockup", r"BUG: soft lockup"),
        ("bug", r"(^|\s)BUG: "),
        ("bug", r"kernel BUG at "),
        ("warning", r"WARNING: CPU: \d+ PID: \d+ at "),
        ("warning", r"------------\[ cut here \]------------"),
        ("oops", r"(^|\s)Oops: "),
        ("oops", r"general protection fault"),
        ("panic", r"Kernel panic - not syncing"),
        ("kmemleak", r"kmemleak: \d+ new suspected memory leaks"),
        ("kmemleak", r"unreferenced object 0x[0-9a-f]+"),
        ("rcu-stall", r"rcu: INFO: \S+ (self-)?detected stalls?"),
        ("rcu-stall", r"rcu_\w+ detected stalls on CPUs"),
        ("hung-task", r"INFO: task \S+ blocked for more than \d+ seconds"),
    )
)

CONTEXT_LINES = 40


@dataclass(frozen=True)
class Report:
    """One kernel report: its kind, the line it starts on, and what follows."""

    kind: str
    line_number: int
    text: str


def classify(message: str) -> str | None:
    """The kind of report a printk message starts, or None."""
    for kind, pattern in PATTERNS:
        if pattern.search(message):
            return kind
    return None


def find_reports(lines: Iterable[str]) -> list[Report]:
    """Every report in a console log, each with up to CONTEXT_LINES of context.

    Lines inside an already-captured report's context do not start a new
    one: a KASAN splat mentions ``BUG:`` once and is reported once.
    """
    all_lines = list(lines)
    reports: list[Report] = []
    covered_until = -1
    for number, raw in enumerate(all_lines):
        if number <= covered_until:
            continue
        m = PRINTK.match(raw)
        if not m:
            continue
        kind = classify(m.group("msg"))
        if kind is None:
            continue
        end = min(len(all_lines), number + CONTEXT_LINES)
        text = "\n".join(line.rstrip("\n") for line in all_lines[number:end])
        reports.append(Report(kind, number + 1, text))
        covered_until = end - 1
    return reports


def is_printk(line: str) -> bool:
    """True for a kernel console line, which the runner keeps out of the terminal."""
    return PRINTK.match(line) is not None
