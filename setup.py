"""Only what pyproject.toml cannot say: the CFFI extensions built at install,
and the request-key daemon's exec helper (a static C program, see
userspace/request_key_daemon/rk_exec.c), built beside them."""

import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HELPER_SOURCE = Path("userspace/request_key_daemon/rk_exec.c")
HELPER_NAME = "rk-exec"


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


setup(cffi_modules=["kcont/_cffi_src/build.py:ffibuilder",
                    "kcont/_cffi_src/build.py:keyctl_ffibuilder"],
      cmdclass={"build_ext": BuildExtAndHelper})
