"""kcont: Python access to container objects and namespace-aware keyrings.

The CFFI binding to the series' syscalls and keyctl ops lands with the
container-object patches; until then this package only names itself.
"""

__version__ = "0.1.0"
