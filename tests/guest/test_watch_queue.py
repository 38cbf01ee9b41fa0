"""The watch-queue binding against the kernel: key changes arrive as events."""

from __future__ import annotations

import select

from kcont.keys import Key
from kcont.watch import KeyChange, KeyEvent, WatchQueue


def drain(queue: WatchQueue) -> list:
    events = []
    while select.select([queue], [], [], 1.0)[0]:
        events += queue.read()
    return events


def test_link_update_revoke_are_seen(session_keyring: int) -> None:
    from kcont.keys import Keyring

    ring = Keyring(session_keyring).add_keyring("kcont-watched")
    with WatchQueue(slots=64) as queue:
        queue.watch(ring.serial, 0x42)
        key = ring.add("user", "kcont-watch-test", b"one")
        key.revoke()
        events = drain(queue)
    linked = KeyEvent(KeyChange.LINKED, ring.serial, key.serial, 0x42)
    assert linked in events, events
    assert all(isinstance(e, KeyEvent) and e.watch_id == 0x42 for e in events)


def test_watching_a_key_sees_its_own_changes(session_keyring: int) -> None:
    from kcont.keys import Keyring

    key = Keyring(session_keyring).add("user", "kcont-watch-self", b"v1")
    with WatchQueue() as queue:
        queue.watch(key.serial, 1)
        Key(key.serial).set_timeout(100)
        key.revoke()
        changes = [e.change for e in drain(queue) if isinstance(e, KeyEvent)]
    assert KeyChange.SETATTR in changes and KeyChange.REVOKED in changes, changes


def test_unwatch_stops_events(session_keyring: int) -> None:
    from kcont.keys import Keyring

    ring = Keyring(session_keyring).add_keyring("kcont-unwatched")
    with WatchQueue() as queue:
        queue.watch(ring.serial, 5)
        queue.unwatch(ring.serial)
        drain(queue)
        ring.add("user", "after-unwatch", b"x")
        assert [e for e in drain(queue) if isinstance(e, KeyEvent)] == []
