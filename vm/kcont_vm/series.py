"""The kernel's patch stacks: each a ``series`` file and its patches.

``kernel/patches/`` is the postable series: what would be sent upstream.
``kernel/harness/`` is applied on top of it and holds what only a test
kernel carries (fault injection, a kernel requester, the Debian-only
sysctl).  The perf profile builds the series alone, so the benchmarks,
keyutils' suite and the selftests run on exactly what would be merged;
the debug profile builds both, for the guest suite.

The format is quilt's: one patch file name per line, ``#`` starts a
comment, blank lines are ignored.  The cover letter is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kcont_vm.errors import BuildError

# The stacks each profile applies, in order, by directory under kernel/.
SERIES_STACK = "patches"
HARNESS_STACK = "harness"
PROFILE_STACKS: dict[str, tuple[str, ...]] = {
    "debug": (SERIES_STACK, HARNESS_STACK),
    "perf": (SERIES_STACK,),
}


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


def profile_stacks(kernel_dir: Path, profile: str) -> list[Series]:
    """The stacks ``profile`` applies, in order (the series alone for an
    unknown profile: nothing test-only is ever applied by default)."""
    return [load_series(kernel_dir / name)
            for name in PROFILE_STACKS.get(profile, (SERIES_STACK,))]


def all_patches(stacks: list[Series]) -> list[Path]:
    return [patch for stack in stacks for patch in stack.patches]
