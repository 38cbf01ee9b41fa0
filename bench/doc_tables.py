"""Write bench results into the docs: the tables between marker comments.

USAGE: .venv/bin/python bench/doc_tables.py

A table in docs/ that comes from a bench JSON sits between
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``; this rewrites what is
between them from the JSON, so the numbers in the docs are the numbers
the bench wrote (run it after the bench, with bench/plots.py).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def upcall_paths(data: dict) -> str:
    rows = ["| path | requesters | p50 (ms) | p99 (ms) | requests/s "
            "| server CPU per request (µs) |", "|---|---|---|---|---|---|"]
    for path, by_conc in data["results"].items():
        for conc, r in by_conc.items():
            rows.append(f"| {path} | {conc} | {_cell(r['p50_ms'])} | {_cell(r['p99_ms'])} | "
                        f"{_cell(r['per_s'], 1)} | {_cell(r.get('server_cpu_us'), 0)} |")
    return "\n".join(rows)


def upcall_targets(data: dict) -> str:
    rows = ["| ratio (same boot, median of per-round ratios) | requesters | measured | target "
            "| met | per round |", "|---|---|---|---|---|---|"]
    for t in data["targets"]:
        rows.append(f"| {t['name']} | {t['requesters']} | **{t['ratio']:.2f}** | {t['target']} "
                    f"| {'yes' if t['met'] else '**no**'} | "
                    f"{', '.join(f'{x:.2f}' for x in t['per_round'])} |")
    return "\n".join(rows)


def upcall_reported(data: dict) -> str:
    rows = ["| ratio | requesters | median | per round |", "|---|---|---|---|"]
    for t in data["reported"]:
        rows.append(f"| {t['name']} | {t['requesters']} | {t['ratio']:.2f} | "
                    f"{', '.join(f'{x:.2f}' for x in t['per_round'])} |")
    return "\n".join(rows)


# (doc, marker name, bench JSON, renderer)
TABLES: list[tuple[str, str, str, Callable[[dict], str]]] = [
    ("docs/request-key-daemon.md", "upcall-paths", "bench/results/upcall.json", upcall_paths),
    ("docs/request-key-daemon.md", "upcall-targets", "bench/results/upcall.json",
     upcall_targets),
    ("docs/request-key-daemon.md", "upcall-reported", "bench/results/upcall.json",
     upcall_reported),
]


def rewrite(text: str, name: str, table: str) -> str:
    marker = re.escape(name)
    pattern = re.compile(rf"(<!-- {marker}:begin -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no <!-- {name}:begin/end --> markers")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)


def main() -> int:
    for doc, name, src, render in TABLES:
        path, data_path = ROOT / doc, ROOT / src
        if not data_path.exists():
            print(f"skipped {name}: {src} not found", file=sys.stderr)
            continue
        path.write_text(rewrite(path.read_text(), name, render(json.loads(data_path.read_text()))))
        print(f"{doc}: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
