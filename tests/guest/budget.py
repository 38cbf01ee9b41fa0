"""How much the reliability suites do per run.

`make check` runs them with a bounded budget (minutes in the debug
guest); `make soak` runs them round after round with fresh seeds and may
scale each round up with KCONT_BUDGET_SCALE, so that fewer rounds spend
less on pytest's start-up.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("KCONT_BUDGET_SCALE", "1"))


def examples(base: int) -> int:
    """``base`` hypothesis examples, scaled (at least one)."""
    return max(1, round(base * SCALE))
