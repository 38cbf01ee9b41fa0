"""The man pages are installed with the project: ``kcont-vm build``'s
``pip install -e .`` (and any ``pip install .``) puts each page that
[tool.build_manpages] lists in share/man/man1, where man(1) finds it with
MANPATH=.venv/share/man.  Here, after the build, because tests/unit runs
before anything is installed."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [Path(spec.split(":", 1)[0]).name for spec in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["tool"]["build_manpages"]["manpages"]]


def test_the_installed_project_has_its_pages() -> None:
    prefix = Path(sys.prefix).resolve()
    # this interpreter's install, not a stray kcont.egg-info in the checkout
    dists = [d for d in metadata.distributions(name="kcont")
             if Path(str(d.locate_file(""))).resolve().is_relative_to(prefix)]
    assert len(dists) == 1, f"kcont is not installed in {prefix}"
    installed = {f.name: f for f in dists[0].files or [] if f.parent.name == "man1"}
    assert sorted(installed) == sorted(PAGES)
    for page in PAGES:
        located = Path(str(installed[page].locate())).resolve()
        assert located == prefix / "share" / "man" / "man1" / page
        found = subprocess.run(["man", "-w", page.removesuffix(".1")], capture_output=True,
                               text=True, check=True,
                               env={"MANPATH": str(prefix / "share" / "man"),
                                    "PATH": "/usr/bin:/bin"})
        assert Path(found.stdout.strip()).resolve() == located
