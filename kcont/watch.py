"""Key notifications from a watch queue, as typed events.

A watch queue is a pipe opened with ``O_NOTIFICATION_PIPE``; keys are
attached to it with ``KEYCTL_WATCH_KEY`` and the kernel writes one record
per change (linked, unlinked, instantiated, revoked...).  This is how the
request-key daemon learns that an authorisation key arrived in its queue
keyring, without polling: a notification, not a helper fork.

Records are variable length (the length is in the header), so the pipe
is read in whole buffers and split here; a ``WATCH_META_LOSS`` record
means the queue overflowed and the reader must rescan what it watches.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from kcont._binding import check, ffi, lib

HEADER = struct.Struct("<II")
KEY_BODY = struct.Struct("<II")
READ_SIZE = 4096


class KeyChange(enum.IntEnum):
    """``NOTIFY_KEY_*``: what happened to a watched key."""

    INSTANTIATED = lib.NOTIFY_KEY_INSTANTIATED
    UPDATED = lib.NOTIFY_KEY_UPDATED
    LINKED = lib.NOTIFY_KEY_LINKED
    UNLINKED = lib.NOTIFY_KEY_UNLINKED
    CLEARED = lib.NOTIFY_KEY_CLEARED
    REVOKED = lib.NOTIFY_KEY_REVOKED
    INVALIDATED = lib.NOTIFY_KEY_INVALIDATED
    SETATTR = lib.NOTIFY_KEY_SETATTR


KEY_CHANGES = frozenset(change.value for change in KeyChange)


@dataclass(frozen=True)
class KeyEvent:
    """A watched key changed.  ``aux`` is the linked/unlinked key's serial."""

    change: KeyChange
    key: int
    aux: int
    watch_id: int


@dataclass(frozen=True)
class QueueLost:
    """The queue overflowed: notifications were dropped, rescan."""


@dataclass(frozen=True)
class WatchRemoved:
    """A watched key went away, so its watch did too."""

    watch_id: int


Event = KeyEvent | QueueLost | WatchRemoved


def parse(buf: bytes) -> list[Event]:
    """Split one read of a notification pipe into events.

    Unknown record types are skipped by their length, as the kernel's own
    sample reader does; a zero or overlong length stops the parse.
    """
    events: list[Event] = []
    offset = 0
    while offset + HEADER.size <= len(buf):
        word, info = HEADER.unpack_from(buf, offset)
        wtype, subtype = word & 0xFFFFFF, word >> 24
        length = info & lib.WATCH_INFO_LENGTH
        if length < HEADER.size or offset + length > len(buf):
            break
        watch_id = (info & lib.WATCH_INFO_ID) >> lib.WATCH_INFO_ID__SHIFT
        if wtype == lib.WATCH_TYPE_KEY_NOTIFY and length >= HEADER.size + KEY_BODY.size:
            if subtype in KEY_CHANGES:
                key, aux = KEY_BODY.unpack_from(buf, offset + HEADER.size)
                events.append(KeyEvent(KeyChange(subtype), key, aux, watch_id))
        elif wtype == lib.WATCH_TYPE_META:
            if subtype == lib.WATCH_META_LOSS_NOTIFICATION:
                events.append(QueueLost())
            elif subtype == lib.WATCH_META_REMOVAL_NOTIFICATION:
                events.append(WatchRemoved(watch_id))
        offset += length
    return events


class WatchQueue:
    """A notification pipe for key changes; iterate it for events.

    ``slots`` is the ring size in notifications (the kernel rounds it and
    caps it by the pipe-buffer limits); ``key_only`` installs a filter so
    only key notifications (and the meta records) are queued.
    """

    def __init__(self, slots: int = 256, key_only: bool = True) -> None:
        fds = ffi.new("int[2]")
        check("pipe2(O_NOTIFICATION_PIPE)", lib.kcont_notification_pipe(fds, os.O_CLOEXEC))
        self.fd: int = fds[0]
        self._write_fd: int = fds[1]
        try:
            check("IOC_WATCH_QUEUE_SET_SIZE", lib.kcont_watch_queue_set_size(self.fd, slots))
            if key_only:
                self._filter_keys()
        except OSError:
            self.close()
            raise

    def _filter_keys(self) -> None:
        # One buffer for the struct and its one-element flexible array.
        size = ffi.sizeof("struct watch_notification_filter") + \
            ffi.sizeof("struct watch_notification_type_filter")
        raw = ffi.new("char[]", size)
        filt = ffi.cast("struct watch_notification_filter *", raw)
        filt.nr_filters = 1
        filt.filters[0].type = lib.WATCH_TYPE_KEY_NOTIFY
        filt.filters[0].subtype_filter[0] = (1 << (max(KeyChange) + 1)) - 1
        check("IOC_WATCH_QUEUE_SET_FILTER", lib.kcont_watch_queue_set_filter(self.fd, filt))

    def watch(self, key: int, watch_id: int) -> None:
        """Queue changes of ``key`` (a keyring: also links into it), tagged ``watch_id``."""
        check("keyctl_watch_key", lib.keyctl_watch_key(key, self.fd, watch_id))

    def unwatch(self, key: int) -> None:
        """Stop queueing changes of ``key`` (the kernel takes watch id -1 as "remove")."""
        check("keyctl_watch_key", lib.keyctl_watch_key(key, self.fd, -1))

    def read(self) -> list[Event]:
        """Block for at least one record; return what one read brought."""
        return parse(os.read(self.fd, READ_SIZE))

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield from self.read()

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        for fd in (self.fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._write_fd = -1

    def __enter__(self) -> WatchQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
