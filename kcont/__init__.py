"""kcont: Python access to container objects and namespace-aware keyrings.

Layers, bottom up: ``kcont._kcont`` (the CFFI extension, compiled at
install against the series' uapi headers), ``kcont._binding`` (errno to
OSError), then ``kcont.container``, ``kcont.keys``, ``kcont.watch`` (key
notifications from a watch queue) and ``kcont.proc``.
Nothing above ``_binding`` calls C, and no module keeps its own copy of a
kernel constant.
"""

__version__ = "0.1.0"
