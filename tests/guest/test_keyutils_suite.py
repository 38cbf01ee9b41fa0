"""keyutils' own test suite as a regression guard for security/keys.

Every test must pass, or be listed with its reason in
keyutils-known-failures.txt; a listed test that passes again must be
removed from the list (it may only shrink).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kcont_vm import keyutils_suite
from kcont_vm.paths import Cache

# Marked so that `kcont-vm test` runs it in its own boot on the perf kernel
# (under TCG it takes well over an hour on the debug kernel, ~10 min on perf).
pytestmark = pytest.mark.keyutils

HERE = Path(__file__).parent
KNOWN = HERE / "keyutils-known-failures.txt"


# 83 shell tests that fork thousands of keyctl processes: ~2 min on the host
# kernel, ~10 min in the perf guest under TCG.
@pytest.mark.timeout(2700)
def test_keyutils_suite(capsys: pytest.CaptureFixture[str]) -> None:
    suite = keyutils_suite.find_suite(Cache.default().keyutils)
    # Progress past pytest's capture: the suite takes minutes under TCG.
    with capsys.disabled():
        results = keyutils_suite.run_suite(
            suite, Path("/tmp/keyutils-tests"),
            progress=lambda line: print(line, file=sys.stderr, flush=True))
    keyutils_suite.write_results(results, Path(os.environ["KCONT_RESULTS"]) / "keyutils.json")
    known = keyutils_suite.load_known_failures(KNOWN)
    not_passing = {r.name: f"{r.status}: {r.detail}" for r in results if r.status != "pass"}
    unexpected = {n: d for n, d in not_passing.items() if n not in known}
    fixed = sorted(n for n in known if n not in not_passing)
    assert len(results) > 50, "the suite was not found whole"
    assert unexpected == {}, "keyutils tests failing and not in " + KNOWN.name
    assert fixed == [], f"now passing, remove from {KNOWN.name}"
