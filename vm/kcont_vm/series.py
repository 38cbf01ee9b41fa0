"""The patch series in kernel/patches/: the ``series`` file and its patches.

The format is quilt's: one patch file name per line, ``#`` starts a
comment, blank lines are ignored.  The cover letter is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kcont_vm.errors import BuildError


@dataclass(frozen=True)
class Series:
    """An ordered list of patch files, all of which exist."""

    directory: Path
    names: tuple[str, ...]

    @property
    def patches(self) -> list[Path]:
        return [self.directory / name for name in self.names]


def parse_series(text: str) -> list[str]:
    """Patch names from the text of a series file, in order."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            names.append(line.split()[0])
    return names


def load_series(directory: Path) -> Series:
    """Read ``directory/series``; a missing series file is an empty series.

    Raises BuildError naming the first listed patch that does not exist or
    the first name listed twice, so a typo never silently drops a patch.
    """
    series_file = directory / "series"
    if not series_file.exists():
        return Series(directory, ())
    names = parse_series(series_file.read_text())
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise BuildError(f"{series_file}: {name} is listed twice")
        seen.add(name)
        if not (directory / name).is_file():
            raise BuildError(f"{series_file}: {name} does not exist")
    return Series(directory, tuple(names))
