"""What the guest-side benchmarks share: boot a kernel to run a bench script
in ``--guest`` mode, and hand its JSON back through the run's results dir."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_in_guest(bzimage: Path, profile: str, script: Path, args: list[str],
                 result_name: str) -> dict:
    """Boot ``bzimage`` once, run ``script --guest ARGS`` there, return the
    JSON it wrote as ``result_name``; SystemExit naming the console if not."""
    sys.path.insert(0, str(ROOT / "vm"))
    from kcont_vm.runner import RunSpec, boot

    spec = RunSpec(bzimage=bzimage, profile=profile, kmemleak=False, timeout=1800,
                   cmd=[sys.executable, str(script.resolve()), "--guest", *args])
    outcome = boot(spec)
    produced = outcome.results / result_name
    if outcome.exit_code != 0 or not produced.exists():
        raise SystemExit(f"guest run failed (exit {outcome.exit_code}); "
                         f"console: {outcome.console_log}")
    return json.loads(produced.read_text())


def report_from_guest(result: dict, result_name: str) -> None:
    """In the guest: print the result and leave it where the host collects it."""
    out = os.environ.get("KCONT_RESULTS")
    if out:
        Path(out, result_name).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
