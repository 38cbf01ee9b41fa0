"""Join the per-header modules into one out-of-line API-mode CFFI extension.

The uapi headers are the patched kernel's own (``make headers_install``
output, which ``kcont-vm build`` writes to ``$KCONT_CACHE/headers``), so
every number comes from the series, never from a copy kept here.
``KCONT_UAPI_HEADERS`` overrides the location.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from cffi import FFI

# cffi runs this file with exec(), outside any package: the per-header
# modules beside it are imported by their bare names.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _headers(*names: str) -> tuple[ModuleType, ...]:
    """The per-header modules (INCLUDES, TYPES, FUNCTIONS, CUSTOMIZATIONS)."""
    return tuple(importlib.import_module(name) for name in names)


# Two extensions: keyutils.h and <linux/keyctl.h> define the same structs.
MODULES = _headers("container", "keyutils", "watch_queue")
KEYCTL_MODULES = _headers("keyctl")


def uapi_headers() -> Path:
    env = os.environ.get("KCONT_UAPI_HEADERS")
    if env:
        return Path(env)
    cache = Path(os.environ.get("KCONT_CACHE", Path.home() / ".cache" / "kcont"))
    return cache / "headers" / "include"


def make_ffi(name: str, modules: tuple[ModuleType, ...], libraries: list[str]) -> FFI:
    headers = uapi_headers()
    if not (headers / "linux" / "container.h").exists():
        raise SystemExit(f"kcont: {headers}/linux/container.h not found: build the kernel "
                         "first (`kcont-vm build` installs the series' uapi headers)")
    ffi = FFI()
    ffi.cdef("\n".join(m.TYPES for m in modules) + "\n".join(m.FUNCTIONS for m in modules))
    ffi.set_source(
        name,
        "\n".join(m.INCLUDES for m in modules) + "\n".join(m.CUSTOMIZATIONS for m in modules),
        libraries=libraries,
        include_dirs=[str(headers)],
    )
    return ffi


ffibuilder = make_ffi("kcont._kcont", MODULES, ["keyutils"])
keyctl_ffibuilder = make_ffi("kcont._keyctl", KEYCTL_MODULES, [])

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
    keyctl_ffibuilder.compile(verbose=True)
