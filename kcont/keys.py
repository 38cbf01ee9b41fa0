"""Typed keys and keyrings over libkeyutils: serials you cannot mix up with ints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from kcont import upcalls
from kcont._binding import check, ffi, lib

SESSION = lib.KEY_SPEC_SESSION_KEYRING
PROCESS = lib.KEY_SPEC_PROCESS_KEYRING
THREAD = lib.KEY_SPEC_THREAD_KEYRING
USER = lib.KEY_SPEC_USER_KEYRING
USER_SESSION = lib.KEY_SPEC_USER_SESSION_KEYRING


class HasFd(Protocol):
    """Anything with a container fd (kcont.container.Container)."""

    @property
    def fd(self) -> int: ...


def _bytes(text: str | bytes) -> bytes:
    """Bytes as given; a str as UTF-8, surrogate-escaped bytes as themselves
    (so a description read back from the kernel goes out unchanged)."""
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text


@dataclass(frozen=True)
class KeyDescription:
    """What KEYCTL_DESCRIBE says: ``type;uid;gid;perm;description``."""

    type: str
    uid: int
    gid: int
    perm: int
    description: str

    @classmethod
    def parse(cls, text: str) -> KeyDescription:
        ktype, uid, gid, perm, desc = text.split(";", 4)
        return cls(ktype, int(uid), int(gid), int(perm, 16), desc)


@dataclass(frozen=True)
class RawKeyDescription:
    """KEYCTL_DESCRIBE as bytes: a description need not be UTF-8, and what
    request-key.conf matches must be the bytes the kernel holds."""

    type: bytes
    uid: int
    gid: int
    perm: int
    description: bytes

    @classmethod
    def parse(cls, raw: bytes) -> RawKeyDescription:
        ktype, uid, gid, perm, desc = raw.split(b";", 4)
        return cls(ktype, int(uid), int(gid), int(perm, 16), desc)


# A first buffer that holds most descriptions and payloads (a callout is at
# most a page): one keyctl call for them, where the _alloc calls make two
# (the size, then the bytes); anything larger takes the _alloc path.
FIRST_TRY = 4096


@dataclass(frozen=True)
class Key:
    """A key by serial number (special KEY_SPEC_* values are resolved first)."""

    serial: int

    def describe(self) -> KeyDescription:
        return KeyDescription.parse(self._describe_raw().decode("utf-8", "surrogateescape"))

    def describe_bytes(self) -> RawKeyDescription:
        return RawKeyDescription.parse(self._describe_raw())

    def _describe_raw(self) -> bytes:
        """KEYCTL_DESCRIBE's "type;uid;gid;perm;description", in one call
        when it fits FIRST_TRY."""
        first = ffi.new("char[]", FIRST_TRY)
        size = check("keyctl_describe", lib.keyctl_describe(self.serial, first, FIRST_TRY))
        if size <= FIRST_TRY:
            return ffi.string(first)
        buf = ffi.new("char **")
        check("keyctl_describe", lib.keyctl_describe_alloc(self.serial, buf))
        try:
            return ffi.string(buf[0])
        finally:
            lib.free(buf[0])

    def read(self) -> bytes:
        first = ffi.new("char[]", FIRST_TRY)
        size = check("keyctl_read", lib.keyctl_read(self.serial, first, FIRST_TRY))
        if size <= FIRST_TRY:
            return bytes(ffi.buffer(first, size))
        buf = ffi.new("void **")
        size = check("keyctl_read", lib.keyctl_read_alloc(self.serial, buf))
        try:
            return bytes(ffi.buffer(buf[0], size))
        finally:
            lib.free(buf[0])

    def revoke(self) -> None:
        check("keyctl_revoke", lib.keyctl_revoke(self.serial))

    def invalidate(self) -> None:
        check("keyctl_invalidate", lib.keyctl_invalidate(self.serial))

    def set_timeout(self, seconds: int) -> None:
        check("keyctl_set_timeout", lib.keyctl_set_timeout(self.serial, seconds))

    def setperm(self, perm: int) -> None:
        check("keyctl_setperm", lib.keyctl_setperm(self.serial, perm))

    def link(self, keyring: Keyring) -> None:
        check("keyctl_link", lib.keyctl_link(self.serial, keyring.serial))

    def unlink(self, keyring: Keyring) -> None:
        check("keyctl_unlink", lib.keyctl_unlink(self.serial, keyring.serial))

    def grant(self, container: HasFd, perms: int) -> None:
        """Grant the container's members ``perms`` (upcalls.Perm) on this key; 0 removes."""
        upcalls.grant(self.serial, container.fd, perms)


@dataclass(frozen=True)
class Keyring(Key):
    """A keyring: add to it, search it, clear it."""

    @classmethod
    def special(cls, spec: int, create: bool = False) -> Keyring:
        """Resolve a KEY_SPEC_* keyring (SESSION, USER, ...) to its serial."""
        serial = check("keyctl_get_keyring_ID", lib.keyctl_get_keyring_ID(spec, int(create)))
        return cls(serial)

    @classmethod
    def join_session(cls, name: str | None = None) -> Keyring:
        """Join (or create) a session keyring; anonymous and new if ``name`` is None."""
        cname = ffi.NULL if name is None else name.encode()
        return cls(check("keyctl_join_session_keyring", lib.keyctl_join_session_keyring(cname)))

    def add(self, key_type: str, description: str, payload: bytes | str = b"") -> Key:
        data = _bytes(payload)
        serial = check("add_key", lib.add_key(key_type.encode(), description.encode(), data,
                                             len(data), self.serial))
        return Key(serial)

    def add_keyring(self, description: str) -> Keyring:
        return Keyring(self.add("keyring", description).serial)

    def search(self, key_type: str, description: str) -> Key:
        serial = check("keyctl_search", lib.keyctl_search(self.serial, key_type.encode(),
                                                          description.encode(), 0))
        return Key(serial)

    def clear(self) -> None:
        check("keyctl_clear", lib.keyctl_clear(self.serial))

    def linked(self) -> list[Key]:
        """The keys linked in this keyring (KEYCTL_READ of a keyring)."""
        data = self.read()
        return [Key(int.from_bytes(data[i:i + 4], "little", signed=True))
                for i in range(0, len(data), 4)]


@contextmanager
def assume_authority(target: int) -> Iterator[Key]:
    """Serve the request for key ``target``: while inside, this thread holds
    its authority (KEYCTL_ASSUME_AUTHORITY) and the yielded key (@-7) is the
    authorisation key, whose payload is the callout info."""
    check("keyctl_assume_authority", lib.keyctl_assume_authority(target))
    try:
        yield Key(lib.KEY_SPEC_REQKEY_AUTH_KEY)
    finally:
        lib.keyctl_assume_authority(0)


def instantiate(target: int, payload: bytes | str, keyring: int = 0) -> None:
    """Give the key under construction its payload (needs its authority)."""
    data = _bytes(payload)
    check("keyctl_instantiate", lib.keyctl_instantiate(target, data, len(data), keyring))


def negate(target: int, timeout: int = 0, keyring: int = 0) -> None:
    """Make the key under construction negative: requesters get ENOKEY."""
    check("keyctl_negate", lib.keyctl_negate(target, timeout, keyring))


def reject(target: int, error: int, timeout: int = 0, keyring: int = 0) -> None:
    """Make the key under construction negative with ``error`` for the requesters."""
    check("keyctl_reject", lib.keyctl_reject(target, timeout, error, keyring))


def auth_target(auth: Key) -> int:
    """The serial of the key an authorisation key is for (its description, hex)."""
    return int(auth.describe().description, 16)


def request_key(key_type: str | bytes, description: str | bytes,
                callout: str | bytes | None = None, destination: Keyring | None = None) -> Key:
    """request_key(2): find a key, or have one constructed (the upcall) if ``callout``."""
    cinfo = ffi.NULL if callout is None else _bytes(callout)
    dest = destination.serial if destination is not None else 0
    return Key(check("request_key", lib.request_key(_bytes(key_type), _bytes(description),
                                                   cinfo, dest)))
