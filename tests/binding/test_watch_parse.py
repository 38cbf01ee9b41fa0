"""Splitting notification-pipe reads into events (no kernel needed)."""

from __future__ import annotations

import struct

import pytest

from kcont._binding import lib
from kcont.watch import KeyChange, KeyEvent, QueueLost, WatchRemoved, parse


def record(wtype: int, subtype: int, watch_id: int, body: bytes = b"") -> bytes:
    length = 8 + len(body)
    info = length | (watch_id << lib.WATCH_INFO_ID__SHIFT)
    return struct.pack("<II", wtype | (subtype << 24), info) + body


def key_record(change: KeyChange, key: int, aux: int, watch_id: int = 7) -> bytes:
    return record(lib.WATCH_TYPE_KEY_NOTIFY, change, watch_id, struct.pack("<II", key, aux))


def test_key_records_in_one_read() -> None:
    buf = key_record(KeyChange.LINKED, 100, 200) + key_record(KeyChange.REVOKED, 200, 0, 3)
    assert parse(buf) == [KeyEvent(KeyChange.LINKED, 100, 200, 7),
                          KeyEvent(KeyChange.REVOKED, 200, 0, 3)]


def test_meta_records() -> None:
    buf = record(lib.WATCH_TYPE_META, lib.WATCH_META_LOSS_NOTIFICATION, 0) + \
        record(lib.WATCH_TYPE_META, lib.WATCH_META_REMOVAL_NOTIFICATION, 9)
    assert parse(buf) == [QueueLost(), WatchRemoved(9)]


def test_unknown_types_are_skipped_by_length() -> None:
    buf = record(0x55, 1, 0, b"\0" * 16) + key_record(KeyChange.UPDATED, 5, 0)
    assert parse(buf) == [KeyEvent(KeyChange.UPDATED, 5, 0, 7)]


@pytest.mark.parametrize("cut", [0, 4, 9, 15])
def test_truncated_or_zero_length_stops(cut: int) -> None:
    whole = key_record(KeyChange.LINKED, 1, 2)
    assert parse(whole[:cut]) == []
    zero = struct.pack("<II", lib.WATCH_TYPE_KEY_NOTIFY, 0)
    assert parse(zero + whole) == []
