"""The series' keyctl operations: interception records (a container's, or
a user namespace's under the user-namespace routing models), auth queries,
container keyrings and grants to containers.

Functions here take raw fds and serials, as the kernel does; the methods
``Container.intercept()``, ``Container.set_keyring()`` and ``Key.grant()``
are the friendly spelling.  Every number comes from the series' uapi
header through ``kcont._keyctl``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass

from kcont._binding import check, keyctl_ffi, keyctl_lib
from kcont.namespaces import NS_KINDS, kinds_mask

TYPE_MAX = keyctl_lib.KEY_INTERCEPT_TYPE_MAX
ACL_MAX = keyctl_lib.KEY_ACL_MAX_CONTAINERS
CONTAINER_KEYRING = keyctl_lib.KEY_SPEC_CONTAINER_KEYRING


def _uapi_ns_bit(kind: str) -> int:
    """KEY_INTERCEPT_NS_<KIND> from the series' header, never a copy here."""
    return int(getattr(keyctl_lib, f"KEY_INTERCEPT_NS_{kind.upper()}"))


# KEY_INTERCEPT_NS_*: the namespace kinds a record can pin, one member per
# kcont.namespaces.NS_KINDS (Ns.UTS, Ns.IPC, ...), valued from the uapi
# header; a binding test checks these are kcont.namespaces.NS_BIT bit for bit.
_NS_MEMBERS = [(kind.upper(), _uapi_ns_bit(kind)) for kind in NS_KINDS]
Ns = enum.IntFlag("Ns", _NS_MEMBERS, module=__name__)  # type: ignore[misc]
NS_ALL = Ns(keyctl_lib.KEY_INTERCEPT__NS_MASK)
# Names as /proc/PID/ns/ spells them.
NS_BY_NAME: dict[str, Ns] = {kind: Ns[kind.upper()] for kind in NS_KINDS}


def ns_mask(ns: Iterable[str] | int) -> int:
    """A mask from names (``{"uts", "net"}``) or an int; ValueError for unknown names."""
    if isinstance(ns, int):
        return int(ns)
    names = list(ns)
    kinds_mask(names)  # the one ValueError for an unknown kind
    mask = 0
    for name in names:
        mask |= NS_BY_NAME[name]
    return mask


class Perm(enum.IntFlag):
    """KEY_ACE_*: what KEYCTL_GRANT_PERMISSION gives a container's members."""

    VIEW = keyctl_lib.KEY_ACE_VIEW
    READ = keyctl_lib.KEY_ACE_READ
    WRITE = keyctl_lib.KEY_ACE_WRITE
    SEARCH = keyctl_lib.KEY_ACE_SEARCH
    LINK = keyctl_lib.KEY_ACE_LINK
    SETATTR = keyctl_lib.KEY_ACE_SETATTR
    INVAL = keyctl_lib.KEY_ACE_INVAL
    REVOKE = keyctl_lib.KEY_ACE_REVOKE


class Caps1(enum.IntFlag):
    """The series' bits in byte 1 of KEYCTL_CAPABILITIES."""

    CONTAINER_INTERCEPT = keyctl_lib.KEYCTL_CAPS1_CONTAINER_INTERCEPT
    QUERY_REQUEST_KEY_AUTH = keyctl_lib.KEYCTL_CAPS1_QUERY_REQUEST_KEY_AUTH
    CONTAINER_KEYRING = keyctl_lib.KEYCTL_CAPS1_CONTAINER_KEYRING
    GRANT_PERMISSION = keyctl_lib.KEYCTL_CAPS1_GRANT_PERMISSION
    QUERY_REQUESTER_COMM = keyctl_lib.KEYCTL_CAPS1_QUERY_REQUESTER_COMM


def _type_arg(key_type: str | bytes | None) -> object:
    if key_type is None:
        return keyctl_ffi.NULL
    return key_type.encode() if isinstance(key_type, str) else key_type


def intercept(container_fd: int, key_type: str | bytes, ns: Iterable[str] | int,
              queue: int) -> None:
    """Add a record: upcalls for ``key_type`` (or "*") go to keyring ``queue``."""
    check("keyctl_container_intercept",
          keyctl_lib.kcont_container_intercept(container_fd, _type_arg(key_type), ns_mask(ns),
                                               queue))


def remove_intercepts(container_fd: int, key_type: str | bytes | None = None,
                      ns: Iterable[str] | int = 0) -> int:
    """Remove the records with this type and mask (all if ``key_type`` is None)."""
    return check("keyctl_container_intercept",
                 keyctl_lib.kcont_container_intercept(container_fd, _type_arg(key_type),
                                                      ns_mask(ns), 0))


def userns_intercept(userns_fd: int, key_type: str | bytes, ns: Iterable[str] | int,
                     queue: int) -> None:
    """Register keyring ``queue`` for the user namespace ``userns_fd`` names
    (KEYCTL_USERNS_INTERCEPT), under the userns-walk or userns-intercept model.
    ``ns`` pins the caller's own namespaces (userns-intercept only)."""
    check("keyctl_userns_intercept",
          keyctl_lib.kcont_userns_intercept(userns_fd, _type_arg(key_type), ns_mask(ns), queue))


def remove_userns_intercepts(userns_fd: int, key_type: str | bytes | None = None,
                             ns: Iterable[str] | int = 0) -> int:
    """Remove a user namespace's registrations with this type and mask (all if None)."""
    return check("keyctl_userns_intercept",
                 keyctl_lib.kcont_userns_intercept(userns_fd, _type_arg(key_type),
                                                   ns_mask(ns), 0))


def userns_intercept_own(key_type: str | bytes, ns: Iterable[str] | int, queue: int) -> None:
    """Register ``queue`` for the caller's own user namespace: what a daemon
    serving its container's user namespace does."""
    fd = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        userns_intercept(fd, key_type, ns, queue)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class AuthRequest:
    """KEYCTL_QUERY_REQUEST_KEY_AUTH: who asked for what, before serving it."""

    operation: str
    fsuid: int
    fsgid: int
    target_key: int
    thread_keyring: int
    process_keyring: int
    session_keyring: int
    requester_pid: int
    container_id: int
    spare_is_zero: bool
    # As it was when it asked; "" where the pid is not visible (or on a
    # kernel that does not report it: the field was a spare word).
    requester_comm: str = ""


def query_auth(auth_key: int) -> AuthRequest:
    """Describe the request behind authorisation key ``auth_key``."""
    buf = keyctl_ffi.new("struct keyctl_query_request_key_auth *")
    check("keyctl_query_request_key_auth",
          keyctl_lib.kcont_query_request_key_auth(auth_key, buf))
    spare = buf.__spare0 == 0 and all(word == 0 for word in buf.__spare)
    return AuthRequest(keyctl_ffi.string(buf.operation).decode(), buf.fsuid, buf.fsgid,
                       buf.target_key, buf.thread_keyring, buf.process_keyring,
                       buf.session_keyring, buf.requester_pid, buf.container_id, spare,
                       keyctl_ffi.string(buf.requester_comm, 16).decode(errors="surrogateescape"))


def set_container_keyring(container_fd: int, keyring: int) -> None:
    """Attach ``keyring`` to the container (once: EBUSY after)."""
    check("keyctl_set_container_keyring",
          keyctl_lib.kcont_set_container_keyring(container_fd, keyring))


def container_keyring_id() -> int:
    """The serial KEY_SPEC_CONTAINER_KEYRING names for the caller (ENOKEY: none)."""
    return keyctl_raw(keyctl_lib.KEYCTL_GET_KEYRING_ID, CONTAINER_KEYRING, 0)


def grant(key: int, container_fd: int, perm: int) -> None:
    """Grant the members of the container ``perm`` on ``key``; 0 removes the entry."""
    check("keyctl_grant_permission",
          keyctl_lib.kcont_grant_permission(key, keyctl_lib.KEY_ACE_SUBJ_CONTAINER,
                                            container_fd, int(perm)))


def capabilities() -> bytes:
    """KEYCTL_CAPABILITIES, as many bytes as the kernel fills."""
    buf = keyctl_ffi.new("unsigned char[]", 16)
    size = check("keyctl_capabilities", keyctl_lib.kcont_keyctl_capabilities(buf, 16))
    return bytes(buf[0:min(size, 16)])


def query_reports_comm() -> bool:
    """Whether this kernel fills AuthRequest.requester_comm
    (KEYCTL_CAPS1_QUERY_REQUESTER_COMM): where it does, an empty name is
    the requester's own (or a pid not visible), not a missing field.
    Asked once; a failure to ask is not remembered (asked again next time)."""
    if not _REPORTS_COMM:
        try:
            caps = capabilities()
        except OSError:
            return False
        _REPORTS_COMM.append(len(caps) > 1 and bool(caps[1] & Caps1.QUERY_REQUESTER_COMM))
    return _REPORTS_COMM[0]


# query_reports_comm()'s answer, once the kernel gave one.
_REPORTS_COMM: list[bool] = []


def keyctl_raw(op: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """keyctl(2) with five raw words, for bad-input tests; raises OSError."""
    mask = (1 << 64) - 1
    return check("keyctl", keyctl_lib.kcont_keyctl_raw(op, arg2 & mask, arg3 & mask,
                                                      arg4 & mask, arg5 & mask))
