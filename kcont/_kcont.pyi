"""Types of the compiled CFFI module ``kcont._kcont`` (built by setup.py from kcont/_cffi_src).

``lib`` holds the functions and constants that the cdefs for
container.h, keyutils.h and watch_queue.h declare; cffi makes them at build time and gives
its Lib class no attributes a checker could see, so ``lib`` is Any and
kcont's wrappers give each result its type.  ``ffi`` is cffi's FFI (typed
by types-cffi) with two narrowings that hold for these cdefs only.
"""

from typing import Any

from kcont._cffi_types import ModuleFFI

ffi: ModuleFFI
lib: Any
