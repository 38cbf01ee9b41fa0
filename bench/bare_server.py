"""The least a Python serving loop can do: a lower bound for request-key-daemon.

The daemon's built-in path is the floor's nine keyctl calls, two task
switches (the daemon's wake-up and the requester's), and the daemon's own
logic: /proc comm, policy, the request-key.conf match, the entry-point
handler, the log line and the stats.  This server keeps the first two and
drops the third: it waits on its queue's watch as the daemon does, and for
each auth key makes the daemon's calls (query, assume the authority, read
the callout, describe, instantiate) around one call of a Python
handler, with no config, no policy and no log.

Measured beside the daemon, a C server of the same mechanism
(bench/c/mech_server.c) and a seccomp round trip in one run of
bench/upcall.py, it answers two questions: what the daemon's logic costs
(daemon over bare), and what serving in Python costs at all (bare over
the C server).
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable

from kcont import upcalls
from kcont.keys import USER, Key, Keyring, assume_authority, instantiate
from kcont.watch import KeyChange, KeyEvent, WatchQueue

Handler = Callable[[str, bytes], bytes]


def payload(description: str, callout: bytes) -> bytes:
    """The handler: what ``@static payload`` answers."""
    return b"payload"


def serve(auth: int, handler: Handler) -> None:
    """No unlink: instantiating invalidates the auth key, which takes it out
    of the queue (the daemon unlinks only what it did not answer)."""
    target = upcalls.query_auth(auth).target_key
    with assume_authority(target) as authkey:
        callout = authkey.read()
        instantiate(target, handler(Key(target).describe().description, callout))


def serve_forever(container_fd: int, queue_name: str, ready_fd: int,
                  handler: Handler = payload) -> None:
    """Register a record for key type "user" on ``container_fd`` (from
    inside that container, as the daemon does), then serve until killed."""
    queue = Keyring.special(USER, create=True).add_keyring(queue_name)
    watch = WatchQueue()
    watch.watch(queue.serial, 1)
    upcalls.intercept(container_fd, "user", 0, queue.serial)
    os.write(ready_fd, b"R")
    os.close(ready_fd)
    while True:
        select.select([watch.fileno()], [], [])
        for event in watch.read():
            if isinstance(event, KeyEvent) and event.change is KeyChange.LINKED:
                serve(event.aux, handler)
