"""Types of the compiled CFFI module ``kcont._kcont`` (built by setup.py from kcont/_cffi_src).

``lib`` holds the functions and constants that the cdefs for
container.h, keyutils.h and watch_queue.h declare; cffi makes them at build time and gives
its Lib class no attributes a checker could see, so ``lib`` is Any and
kcont's wrappers give each result its type.  ``ffi`` is cffi's FFI (typed
by types-cffi) with two narrowings that hold for these cdefs only.
"""

from typing import Any

from _cffi_backend import FFI

class _ModuleFFI(FFI):
    """cffi's FFI as this module's cdefs use it (not a runtime class)."""

    def new(self, cdecl: str | FFI.CType, init: Any = ...) -> Any:
        """Any: a struct's fields and an array's items come from the cdefs."""

    def cast(self, cdecl: str | FFI.CType, value: FFI.CData | int) -> Any:
        """Any, for the same reason as ``new``."""

    def string(self, cdata: FFI.CData, maxlen: int = -1) -> bytes:
        """bytes: the cdefs declare char arrays and pointers, never wchar_t."""

ffi: _ModuleFFI
lib: Any
