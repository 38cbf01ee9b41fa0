"""Only what pyproject.toml cannot say: the CFFI extension built at install."""

from setuptools import setup

setup(cffi_modules=["kcont/_cffi_src/build.py:ffibuilder",
                     "kcont/_cffi_src/build.py:keyctl_ffibuilder"])
