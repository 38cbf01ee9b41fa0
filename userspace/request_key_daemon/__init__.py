"""request-key-daemon: serves a container's request_key upcalls inside it.

``conf`` (keyutils' request-key.conf rules), ``policy`` (admission),
``handlers`` (pipe and built-in programs), ``serve`` (one request, from
its authorisation key to an answer), ``daemon`` (the record, the queue,
the workers), ``control`` (the control socket) and ``cli``.
"""
