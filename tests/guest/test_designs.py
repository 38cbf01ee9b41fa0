"""The scenario catalogue under every routing model, in one boot.

Each scenario of design_catalogue.py runs under each column (the four
models, and userns-walk with the boundary switch on); the kernel must do
what the design predicts (design_catalogue.EXPECTED), and the table of
what it did is written to designs.json for docs/designs.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import RESULTS
from design_catalogue import COLUMNS, EXPECTED, SCENARIOS, column_in_force, route_tracing
from upcall_fixtures import marking_helper

from kcont.keys import Keyring

OBSERVED: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    with marking_helper(), route_tracing():
        yield
    (RESULTS / "designs.json").write_text(json.dumps(
        {"columns": COLUMNS, "expected": EXPECTED, "observed": OBSERVED}, indent=1))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("column", COLUMNS)
def test_scenario_goes_where_the_design_says(column: str, scenario: str) -> None:
    session = Keyring.join_session()
    with column_in_force(column, session) as bench:
        outcome = SCENARIOS[scenario](bench)
    OBSERVED.setdefault(scenario, {})[column] = outcome
    assert outcome == EXPECTED[scenario][column], \
        f"{scenario} under {column}: {outcome}, the design says {EXPECTED[scenario][column]}"
