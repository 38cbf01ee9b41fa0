"""Kernel config fragments: their order, and checking what the build got.

``make olddefconfig`` silently drops an option whose dependencies are not
met, so a fragment can ask for something the kernel never gets.  The build
therefore verifies every request of the kcont fragments against the final
``.config`` and fails naming the options that did not stick.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """Map option name to value; ``n`` for ``# CONFIG_X is not set``."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if m := _SET.match(line):
            values[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            values[m.group(1)] = "n"
    return values


def fragments(config_dir: Path, profile: str) -> list[Path]:
    """Fragments in merge order: ``*.config`` sorted by name, then the profile's."""
    common = sorted(config_dir.glob("*.config"))
    profile_file = config_dir / "profile" / f"{profile}.config"
    if not profile_file.is_file():
        from kcont_vm.errors import BuildError

        raise BuildError(f"no config profile {profile!r}: {profile_file} does not exist")
    return [*common, profile_file]


def merged_requests(paths: list[Path]) -> dict[str, str]:
    """What the fragments ask for, later fragments overriding earlier ones."""
    requests: dict[str, str] = {}
    for path in paths:
        requests.update(parse_config(path.read_text()))
    return requests


def unmet(requests: dict[str, str], final: dict[str, str],
          defined: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Human-readable list of requests the final config does not honour.

    An ``n`` request is met by absence too: an option whose menu is off
    does not appear in ``.config`` at all.  Options the tree does not
    define (``defined`` says so) are skipped: the series adds some of them,
    and an empty series or a bisection point before them must still build.
    """
    problems = []
    for name, wanted in sorted(requests.items()):
        got = final.get(name, "n")
        if wanted != got and defined(name):
            problems.append(f"{name}: wanted {wanted}, got {got}")
    return problems


def modules_left(final: dict[str, str]) -> list[str]:
    """Options built as modules: the guest installs none, so there must be none."""
    return sorted(name for name, value in final.items() if value == "m")


def defined_in(tree: Path) -> Callable[[str], bool]:
    """A predicate: does any Kconfig file of ``tree`` define this option?"""

    def defined(name: str) -> bool:
        symbol = name.removeprefix("CONFIG_")
        result = subprocess.run(
            ["git", "-C", str(tree), "grep", "-q", "-E", rf"^\s*(menu)?config {symbol}\s*$",
             "--", "*Kconfig*"], capture_output=True, check=False)
        return result.returncode == 0

    return defined
