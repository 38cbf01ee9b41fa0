"""make demo, second part: two containers, one interception record each.

Each container asks for the same key; each request lands in its own
container's queue keyring, where this script (playing the daemon) reads
who asked (KEYCTL_QUERY_REQUEST_KEY_AUTH), assumes the authority and
instantiates the key; each requester prints what it got.
"""

from __future__ import annotations

import json
import os
import time

from kcont import upcalls
from kcont.container import Container
from kcont.keys import Key, Keyring, assume_authority, instantiate, request_key


def ask(box: Container, hostname: str) -> tuple[int, int]:
    """Fork a member that sets its hostname and requests user:db-password."""
    rfd, wfd = os.pipe()
    pid = box.fork()
    if pid == 0:
        os.close(rfd)
        try:
            import socket
            socket.sethostname(hostname)
            # Its own session keyring: members of containers that share a
            # user namespace share the user-session keyring, and a key made
            # there for one would answer the other's request.
            Keyring.join_session()
            key = request_key("user", "db-password", "who-am-i")
            os.write(wfd, json.dumps({"host": socket.gethostname(), "serial": key.serial,
                                      "payload": key.read().decode()}).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    return pid, rfd


def main() -> None:
    session = Keyring.join_session("kcont-demo-queues")
    boxes, queues = {}, {}
    for name in ("red", "blue"):
        boxes[name] = Container(name, ns={"uts", "mnt"}, trusted=False)
        queues[name] = session.add_keyring(f"queue-{name}")
        boxes[name].intercept("user", ns={"uts"}, queue=queues[name].serial)
        print(f"container {name} (id {boxes[name].id}): record user/uts -> "
              f"queue keyring {queues[name].serial}")
    asks = {name: ask(box, f"{name}-box") for name, box in boxes.items()}
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while len(seen) < len(boxes) and time.monotonic() < deadline:
        for name, queue in queues.items():
            for auth in queue.linked():
                if auth.serial in seen:     # answered; the GC unlinks it soon
                    continue
                seen.add(auth.serial)
                request = upcalls.query_auth(auth.serial)
                desc = Key(request.target_key).describe().description
                print(f"queue-{name} got auth key {auth.serial}: {request.operation} "
                      f"user:{desc} for container {request.container_id}, "
                      f"pid {request.requester_pid}")
                with assume_authority(request.target_key):
                    instantiate(request.target_key, f"secret-of-{name}")
        time.sleep(0.05)
    for name, (pid, rfd) in asks.items():
        with os.fdopen(rfd) as report:
            got = json.loads(report.read() or "{}")
        boxes[name].wait(pid)
        print(f"in {got.get('host')}: request_key user:db-password -> key {got.get('serial')}, "
              f"payload {got.get('payload')!r}")
    for box in boxes.values():
        box.close()


if __name__ == "__main__":
    main()
