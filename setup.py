"""Only what pyproject.toml cannot say: the CFFI extensions built at install,
the request-key daemon's exec helper (a static C program, see
userspace/request_key_daemon/rk_exec.c), built beside them, and the man
pages, generated at build time from each tool's ``make_parser()`` by
argparse-manpage (pages listed in pyproject's [tool.build_manpages]) and
installed in share/man/man1."""

import os
import subprocess
import sys
from pathlib import Path

from build_manpages import build_manpages
from build_manpages.build_manpages import (
    get_build_py_cmd,
    get_pyproject_settings,
    parse_manpages_spec,
)
from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent
HELPER_SOURCE = Path("userspace/request_key_daemon/rk_exec.c")
HELPER_NAME = "rk-exec"
# Where the packages live (pyproject's packages.find), for importing the
# parsers while the project is being built, before anything is installed.
PACKAGE_ROOTS = [ROOT, ROOT / "vm", ROOT / "userspace"]


class BuildExtAndHelper(build_ext):
    """build_ext, then ``rk-exec`` into the package: in the source tree for
    an editable install, in the build tree (and so the wheel) otherwise."""

    def run(self) -> None:
        super().run()
        if self.inplace or getattr(self, "editable_mode", False):
            target = HELPER_SOURCE.with_name(HELPER_NAME)
        else:
            target = Path(self.build_lib) / "request_key_daemon" / HELPER_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, "-static", "-O2", "-Wall", "-Wextra", "-Werror",
                        "-o", str(target), str(HELPER_SOURCE)], check=True)


class BuildManpagesFromSource(build_manpages):
    """argparse-manpage's build_manpages, importing each ``make_parser``
    from this source tree: the packages are not installed yet when the
    pages are made (the parsers import no compiled code)."""

    def run(self) -> None:
        saved = list(sys.path)
        sys.path[:0] = [str(path) for path in PACKAGE_ROOTS]
        try:
            super().run()
        finally:
            sys.path[:] = saved


class DistributionWithData(Distribution):
    """setuptools' editable_wheel installs the data files only if the
    distribution answers ``has_data()``, which Distribution spells
    ``has_data_files()``; without this an editable install (the venv's)
    would get no man pages."""

    def has_data(self) -> bool:
        return self.has_data_files()


def man_pages() -> list[str]:
    """The pages [tool.build_manpages] makes, for data_files: installed by
    wheels and editable installs alike (argparse-manpage's own install
    command is not run by either)."""
    spec = get_pyproject_settings()
    return sorted(parse_manpages_spec(spec)) if spec else []


setup(cffi_modules=["kcont/_cffi_src/build.py:ffibuilder",
                    "kcont/_cffi_src/build.py:keyctl_ffibuilder"],
      cmdclass={"build_ext": BuildExtAndHelper,
                "build_manpages": BuildManpagesFromSource,
                "build_py": get_build_py_cmd(build_py)},
      data_files=[("share/man/man1", man_pages())],
      distclass=DistributionWithData)
