"""The series' kselftests (tools/testing/selftests/containers), in the guest.

They are the series' own tests, in C on ``kselftest_harness.h``, as
upstream would run them; ``kcont-vm build`` compiles them against the
series' uapi headers.  Each program runs as root and prints KTAP; a
``not ok`` line, a missing result or a non-zero exit fails the test, and
the KTAP is kept in the results as ``kselftest-<program>-<profile>.ktap``
(``kcont-vm test --ktap`` folds it into the run's KTAP document).

They run in both boots: on the debug kernel (KASAN, lockdep, kmemleak,
with the harness stack) beside the rest of the suite, and on the perf
kernel, which is the series alone, so that they show the postable series
passes its own tests without anything test-only under it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.kselftest

SELFTESTS = Path(os.environ.get("KCONT_CACHE", "/nonexistent")) / "selftests" / "containers"
# The 32-bit builds go through the compat system call entry points.
PROGRAMS = ("container_test", "keyctl_container_test", "netns_route_test",
            "container_test_32", "keyctl_container_test_32")
RESULT = re.compile(r"^(not ok|ok) (\d+) (.*)$")
PLAN = re.compile(r"^1\.\.(\d+)$")


@pytest.mark.parametrize("program", PROGRAMS)
def test_kselftest_passes(program: str) -> None:
    binary = SELFTESTS / program
    assert binary.is_file(), f"{binary} missing: `kcont-vm build` builds the kselftests"
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600,
                         cwd="/tmp")
    profile = os.environ.get("KCONT_PROFILE", "guest")
    results = Path(os.environ["KCONT_RESULTS"])
    (results / f"kselftest-{program}-{profile}.ktap").write_text(run.stdout)
    lines = run.stdout.splitlines()
    plans = [int(m.group(1)) for ln in lines if (m := PLAN.match(ln))]
    outcomes = [m.groups() for ln in lines if (m := RESULT.match(ln))]
    failed = [name for status, _, name in outcomes if status == "not ok"]
    skipped = [name for status, _, name in outcomes if "# SKIP" in name]
    assert plans, f"{program} printed no KTAP plan:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert not failed, f"{program}: {failed}\n{run.stdout[-4000:]}"
    assert not skipped, f"{program} skipped {skipped}: a skipped kselftest is not a pass"
    assert len(outcomes) == plans[0], f"{program}: {len(outcomes)} results for a plan of {plans[0]}"
    assert run.returncode == 0, f"{program} exited {run.returncode}\n{run.stderr[-2000:]}"
