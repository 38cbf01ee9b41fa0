"""Read pytest's JUnit XML into counts and failure names (standard library only)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SuiteCounts:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed_names: list[str] = field(default_factory=list)
    skipped_names: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.tests - self.failures - self.errors - self.skipped


def read_junit(path: Path) -> SuiteCounts:
    counts = SuiteCounts()
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        counts.seconds += float(suite.get("time", 0))
        for case in suite.iter("testcase"):
            counts.tests += 1
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None:
                counts.failures += 1
                counts.failed_names.append(name)
            elif case.find("error") is not None:
                counts.errors += 1
                counts.failed_names.append(name)
            elif case.find("skipped") is not None:
                counts.skipped += 1
                counts.skipped_names.append(name)
    return counts
