"""The documentation's links resolve inside the repository.

Every markdown link and image in README.md and docs/*.md that is not a
URL must name a file in the repository, and a ``#fragment`` must name a
heading of its target (GitHub's anchors).  No document may name a path
outside the repository (the documented cache, ``~/.cache/kcont``, is the
one exception), and every plot in docs/img/ must be shown somewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
OUTSIDE = re.compile(r"/work/|\.\./shared|\bshared/(?:design|seeds)/|~/(?!\.cache/kcont)")


def prose(text: str) -> str:
    """The text without fenced blocks and code spans, where brackets are code."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation
    dropped (hyphens and underscores kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # links: their text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, duplicates numbered as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with ``doc``'s links, one string each; [] if nothing."""
    problems = []
    for target in LINK.findall(prose(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):    # https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{fragment} in {dest.name}")
    return problems


def outside_paths(doc: Path) -> list[str]:
    """Lines of ``doc`` that name a path outside the repository."""
    return [f"{doc.name}:{n}: {line.strip()}"
            for n, line in enumerate(doc.read_text().splitlines(), 1) if OUTSIDE.search(line)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(doc: Path) -> None:
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_outside_the_repository(doc: Path) -> None:
    assert outside_paths(doc) == []


def test_every_plot_is_shown() -> None:
    shown = {(doc.parent / target).resolve() for doc in DOCS
             for target in LINK.findall(prose(doc.read_text()))}
    plots = sorted((ROOT / "docs" / "img").iterdir())
    assert plots, "docs/img/ is empty"
    assert [p.name for p in plots if p.resolve() not in shown] == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """A link to a missing file, a missing heading, a file outside the
    tree and a foreign path are all reported; good links and code are not."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Booting: `run -- true`\n")
    doc = tmp_path / "page.md"
    doc.write_text("# Page\n\n"
                   "[ok](other.md) [ok](other.md#booting-run----true) [ok](#page)\n"
                   "![ok](other.md) [web](https://example.org/x) `[code](nowhere.md)`\n"
                   "```\n[fenced](nowhere.md)\n```\n"
                   "[gone](missing.md) [no anchor](other.md#nope) [up](../../etc/passwd)\n"
                   "see /work/main/x and ../shared/design/X.md, ~/notes; ~/.cache/kcont is fine\n")
    assert broken_links(doc, tmp_path) == [
        "missing.md: no such file",
        "other.md#nope: no heading #nope in other.md",
        "../../etc/passwd: outside the repository",
    ]
    assert len(outside_paths(doc)) == 1
    assert slug("Races (tests/guest/test_races.py)") == "races-testsguesttest_racespy"
