"""The man pages: made at build time from each tool's make_parser() by
argparse-manpage, as setup.py does it; rendered here with man(1) and
read back.  A page that misses an option or a tool without a page fails
(tests/binding checks the installed pages, after the build)."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from argparse_manpage.manpage import Manpage
from build_manpages.build_manpages import parse_manpages_spec

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PAGES = parse_manpages_spec("\n".join(PYPROJECT["tool"]["build_manpages"]["manpages"]))


def _page_name(path: str) -> str:
    return Path(path).name.removesuffix(".1")


def render(path: str, data: dict[str, str]) -> str:
    """The page as setup.py's build makes it, as man -l shows it."""
    module = importlib.import_module(data["import_from"])
    parser = getattr(module, data["objname"])()
    page = Path(os.environ.get("TMPDIR", "/tmp")) / f"kcont-test-{os.getpid()}-{Path(path).name}"
    page.write_text(str(Manpage(parser, format=data.get("format", "pretty"), _data=data)))
    try:
        shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                               check=True, timeout=60,
                               env=dict(os.environ, MANWIDTH="1000", LC_ALL="C",
                                        MANPAGER="cat", PAGER="cat"))
    finally:
        page.unlink()
    return shown.stdout


def options(parser: argparse.ArgumentParser,
            prog: str = "") -> list[tuple[str, list[str]]]:
    """(program, ["-J", "--json"]) for every option of the parser and its
    subcommands; --help is argparse's own."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += options(sub, f"{prog or parser.prog} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            found.append((prog or parser.prog, list(action.option_strings)))
    return found


def test_man_db_is_there() -> None:
    """kcont-vm setup installs man-db; without it these tests cannot read a page."""
    assert shutil.which("man"), "man not found: apt-get install man-db (kcont-vm setup does)"


def test_every_command_has_a_page() -> None:
    assert sorted(_page_name(p) for p in PAGES) == sorted(PYPROJECT["project"]["scripts"])


@pytest.mark.parametrize("path", sorted(PAGES), ids=_page_name)
def test_the_page_names_every_option(path: str) -> None:
    data = PAGES[path]
    shown = render(path, data)
    lines = [line.strip() for line in shown.splitlines()]
    name = _page_name(path)
    assert f"{name} - {data['description']}" in lines, shown[:400]
    parser = getattr(importlib.import_module(data["import_from"]), data["objname"])()
    assert parser.prog == name
    for prog, spellings in options(parser):
        # an item of its own: "-t TYPE, --type TYPE", then the help
        assert any(line.startswith(spellings[0]) and all(s in line for s in spellings)
                   for line in lines), f"{prog} {spellings} not in the page"
        if prog != name:
            assert f"COMMAND '{prog}'" in lines, f"no section for {prog}"


def test_kcont_pages_show_the_exit_codes() -> None:
    path = "build/man/kcont.1"
    shown = " ".join(render(path, PAGES[path]).split())
    for code in ("125 if kcont run itself failed", "126 if CMD cannot be executed",
                 "127 if CMD is not found", "2 for a usage error"):
        assert code in shown
