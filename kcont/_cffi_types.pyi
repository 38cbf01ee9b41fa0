"""Types shared by the stubs of the two compiled CFFI modules
(``kcont/_kcont.pyi``, ``kcont/_keyctl.pyi``); a stub only, with no
module behind it at run time."""

from typing import Any

from _cffi_backend import FFI

class ModuleFFI(FFI):
    """cffi's FFI as this module's cdefs use it (not a runtime class)."""

    def new(self, cdecl: str | FFI.CType, init: Any = ...) -> Any:
        """Any: a struct's fields and an array's items come from the cdefs."""

    def cast(self, cdecl: str | FFI.CType, value: FFI.CData | int) -> Any:
        """Any, for the same reason as ``new``."""

    def string(self, cdata: FFI.CData, maxlen: int = -1) -> bytes:
        """bytes: the cdefs declare char arrays and pointers, never wchar_t."""
