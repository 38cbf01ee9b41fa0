"""One KTAP document for a whole ``kcont-vm test`` run.

KernelCI and LAVA read KTAP (Documentation/dev-tools/ktap.rst); the run
leaves JUnit XML per pytest suite, keyutils' results as JSON and each
kselftest's own KTAP.  ``write_document`` folds them into one KTAP v1
document: one top-level test per suite, each a subtest holding its cases
(the kselftests' output nested as they printed it), so a failure anywhere
is a ``not ok`` at the top.  The JUnit files stay beside it.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

INDENT = "    "
# Pytest suites by their JUnit file, in the order a run makes them.
JUNIT_SUITES = ("host", "binding", "guest", "keyutils")
DIAGNOSTIC_LINES = 20


@dataclass
class Case:
    """One result line: ok or not, a name, an optional SKIP reason and
    diagnostic lines (a failure's message)."""

    name: str
    ok: bool
    skip: str | None = None
    diagnostics: list[str] = field(default_factory=list)
    # A failure the run expects (keyutils' known failures): KTAP's TODO,
    # which does not fail the suite around it.
    todo: str | None = None


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)
    # KTAP a test printed itself (a kselftest), nested as it is.
    raw: list[str] | None = None
    ok_override: bool | None = None

    @property
    def ok(self) -> bool:
        if self.ok_override is not None:
            return self.ok_override
        return bool(self.cases) and all(c.ok or c.todo is not None for c in self.cases)


def clean_name(name: str) -> str:
    """A test name KTAP can carry: one line, no ``#`` (which starts a directive)."""
    return re.sub(r"\s+", " ", name.replace("#", "%23")).strip() or "unnamed"


def junit_suite(name: str, path: Path) -> Suite:
    suite = Suite(name)
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        title = clean_name(f"{case.get('classname', '')}::{case.get('name', '')}")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            text = (bad.get("message") or "") + "\n" + (bad.text or "")
            lines = [ln for ln in text.splitlines() if ln.strip()][-DIAGNOSTIC_LINES:]
            suite.cases.append(Case(title, False, diagnostics=lines))
        elif skipped is not None:
            # `make check` counts a skip as a failure; KTAP still says SKIP.
            suite.cases.append(Case(title, True, skip=clean_name(skipped.get("message", ""))))
        else:
            suite.cases.append(Case(title, True))
    return suite


def keyutils_suite(path: Path, known: dict[str, str] | None = None) -> Suite:
    """keyutils' results; a failure listed in ``known`` (name: reason, as
    keyutils-known-failures.txt has them) is a TODO with its reason."""
    known = known or {}
    suite = Suite("keyutils-suite")
    for item in json.loads(path.read_text()):
        status = item.get("status")
        detail = [ln for ln in str(item.get("detail", "")).splitlines() if ln.strip()]
        failed = status == "fail"
        suite.cases.append(Case(clean_name(item["name"]), not failed,
                                skip=clean_name(detail[0] if detail else "skipped")
                                if status == "skip" else None,
                                diagnostics=detail[-DIAGNOSTIC_LINES:] if failed else [],
                                todo=clean_name(known[item["name"]])
                                if failed and item["name"] in known else None))
    return suite


def kselftest_suite(path: Path) -> Suite:
    """A kselftest's own KTAP (its ``TAP version 13`` header made v1)."""
    lines = path.read_text(errors="replace").splitlines()
    results = [ln for ln in lines if re.match(r"^(not )?ok \d+ ", ln)]
    plan = next((int(m.group(1)) for ln in lines if (m := re.match(r"^1\.\.(\d+)$", ln))), None)
    ok = bool(results) and plan == len(results) and \
        not any(ln.startswith("not ok") or "# SKIP" in ln for ln in results)
    body = [ln for ln in lines if not re.match(r"^(K?TAP version \d+)$", ln)]
    return Suite(path.stem, raw=body, ok_override=ok)


def collect(results: Path, known: dict[str, str] | None = None) -> list[Suite]:
    suites: list[Suite] = []
    for name in JUNIT_SUITES:
        junit = results / f"{name}.xml"
        if junit.exists():
            suites.append(junit_suite(name, junit))
    if (results / "keyutils.json").exists():
        suites.append(keyutils_suite(results / "keyutils.json", known))
    for ktap in sorted(results.glob("kselftest-*.ktap")):
        suites.append(kselftest_suite(ktap))
    return suites


def render(suites: list[Suite]) -> str:
    out = ["KTAP version 1", f"1..{len(suites)}"]
    for number, suite in enumerate(suites, 1):
        out += [INDENT + "KTAP version 1", f"{INDENT}# Subtest: {suite.name}"]
        if suite.raw is not None:
            out += [INDENT + ln if ln else "" for ln in suite.raw]
        else:
            out.append(f"{INDENT}1..{len(suite.cases)}")
            for n, case in enumerate(suite.cases, 1):
                directive = f" # SKIP {case.skip}" if case.skip is not None else \
                    f" # TODO {case.todo}" if case.todo is not None else ""
                out.append(f"{INDENT}{'ok' if case.ok else 'not ok'} {n} {case.name}{directive}")
                out += [f"{INDENT}# {ln}" for ln in case.diagnostics]
        out.append(f"{'ok' if suite.ok else 'not ok'} {number} {suite.name}")
    return "\n".join(out) + "\n"


def boot_suite(stage: str, profile: str, healthy: bool, lines: list[str]) -> Suite:
    """A guest boot as a test of its own: ``not ok`` when the kernel
    reported (KASAN, lockdep, a warning) or the guest died, which no
    pytest case shows; its summary lines are the diagnostics then."""
    case = Case(f"{profile} kernel: no kernel report, the guest ran to the end", healthy,
                diagnostics=[] if healthy else [clean_name(ln) for ln in lines])
    return Suite(f"boot-{stage}", cases=[case])


def write_document(results: Path, target: Path, boots: list[Suite] | None = None,
                   known: dict[str, str] | None = None) -> Path:
    """The run's KTAP document: ``boots`` (from boot_suite) after the
    suites; ``known``: keyutils' known failures, written as TODO."""
    target.write_text(render(collect(results, known) + (boots or [])))
    return target
