"""Containers as Python objects: create, fork or spawn into, wait, close.

A Container owns its fd.  Closing it does not kill the members unless
``kill_on_close`` was asked for; the kernel keeps the container alive
while it has members.
"""

from __future__ import annotations

import enum
import os
import select
from collections.abc import Iterable, Sequence
from types import TracebackType

from kcont import upcalls
from kcont._binding import check, ffi, lib, oserror
from kcont.namespaces import NS_KINDS
from kcont.proc import unescape

NAME_MAX = lib.CONTAINER_NAME_MAX
INIT_ID = lib.CONTAINER_INIT_ID


class Flag(enum.IntFlag):
    """container_create() flags, with values from the series' uapi header."""

    NEW_FS_NS = lib.CONTAINER_NEW_FS_NS
    NEW_EMPTY_FS_NS = lib.CONTAINER_NEW_EMPTY_FS_NS
    NEW_CGROUP_NS = lib.CONTAINER_NEW_CGROUP_NS
    NEW_UTS_NS = lib.CONTAINER_NEW_UTS_NS
    NEW_IPC_NS = lib.CONTAINER_NEW_IPC_NS
    NEW_USER_NS = lib.CONTAINER_NEW_USER_NS
    NEW_PID_NS = lib.CONTAINER_NEW_PID_NS
    NEW_NET_NS = lib.CONTAINER_NEW_NET_NS
    KILL_ON_CLOSE = lib.CONTAINER_KILL_ON_CLOSE
    FD_CLOEXEC = lib.CONTAINER_FD_CLOEXEC
    FD_NO_CLOEXEC = lib.CONTAINER_FD_NO_CLOEXEC
    UNTRUSTED = lib.CONTAINER_UNTRUSTED
    TRUSTED = lib.CONTAINER_TRUSTED


# The uapi's own spelling where it differs from /proc/PID/ns/'s: the
# container flag calls the mount namespace "fs", unshare(2) CLONE_NEWNS.
_FLAG_SPELLING = {"mnt": "FS"}
_CLONE_SPELLING = {"mnt": "NS"}

# container_create() flags per namespace kind (kcont.namespaces.NS_KINDS).
NAMESPACE_FLAGS: dict[str, Flag] = {
    kind: Flag[f"NEW_{_FLAG_SPELLING.get(kind, kind.upper())}_NS"] for kind in NS_KINDS}


def namespace_flags(names: Iterable[str]) -> Flag:
    """Flags for namespace names (``mnt``/``fs``, ``pid``, ...); ValueError if unknown."""
    flags = Flag(0)
    for name in names:
        key = "mnt" if name == "fs" else name
        if key not in NAMESPACE_FLAGS:
            known = ", ".join(sorted(NAMESPACE_FLAGS))
            raise ValueError(f"unknown namespace {name!r} (known: {known})")
        flags |= NAMESPACE_FLAGS[key]
    return flags


def create_raw(name: str | bytes | None, flags: int, spare3: int = 0, spare4: int = 0,
               spare5: int = 0) -> int:
    """container_create() as the kernel sees it; None passes a NULL name."""
    cname = ffi.NULL if name is None else (
        name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name)
    return check("container_create", lib.kcont_container_create(cname, flags, spare3, spare4,
                                                                spare5))


def fork_into(fd: int) -> int:
    """fork_into_container(): the child's pid in the parent, 0 in the child."""
    return check("fork_into_container", lib.kcont_fork_into_container(fd))


def clone_into(fd: int) -> int:
    """clone3() with CLONE_INTO_CONTAINER, as fork(): the child's pid, 0 in the child."""
    return check("clone3", lib.kcont_clone_into_container(fd))


def fdinfo(fd: int, pid: int | str = "self") -> dict[str, str]:
    """The container_* fields of /proc/PID/fdinfo/FD, as the kernel wrote
    them: ``name`` is still escaped (``kcont.proc.unescape`` undoes it).

    Read as bytes and split at the kernel's own separators (one tab after
    the colon, the newline), never at other whitespace: a name is bytes,
    and one that ends in a no-break space, or is not UTF-8, must survive.
    """
    fields = {}
    with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as info:
        for line in info:
            key, _, value = line.partition(b":")
            if key.startswith(b"container_"):
                fields[key.removeprefix(b"container_").decode()] = value.removeprefix(
                    b"\t").removesuffix(b"\n").decode("utf-8", "surrogateescape")
    return fields


# unshare(2) flags for the namespace kinds a task can leave its container's for.
UNSHARE_FLAGS: dict[str, int] = {
    kind: int(getattr(lib, f"CLONE_NEW{_CLONE_SPELLING.get(kind, kind.upper())}"))
    for kind in NS_KINDS}


def unshare(kinds: Iterable[str]) -> None:
    """unshare(2) the named namespace kinds (Python 3.11 has no os.unshare)."""
    flags = 0
    for kind in kinds:
        flags |= UNSHARE_FLAGS[kind]
    check("unshare", lib.unshare(flags))


class Container:
    """A container object: ``with Container("web", ns={"pid", "mnt"}) as c: c.spawn([...])``."""

    def __init__(self, name: str, *, ns: Iterable[str] = (), kill_on_close: bool = False,
                 cloexec: bool = True, trusted: bool | None = None,
                 flags: int = 0) -> None:
        flags = Flag(flags) | namespace_flags(ns)
        if kill_on_close:
            flags |= Flag.KILL_ON_CLOSE
        if not cloexec:
            flags |= Flag.FD_NO_CLOEXEC
        if trusted is True:
            flags |= Flag.TRUSTED
        elif trusted is False:
            flags |= Flag.UNTRUSTED
        self.flags = flags
        self._fd: int | None = create_raw(name, flags)
        self.init_pid: int | None = None

    @classmethod
    def from_fd(cls, fd: int) -> Container:
        """Adopt a container fd made elsewhere (received over a socket, say)."""
        self = cls.__new__(cls)
        self.flags = Flag(0)
        self._fd = fd
        self.init_pid = None
        return self

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError("container fd is closed")
        return self._fd

    @property
    def id(self) -> int:
        return int(fdinfo(self.fd)["id"])

    @property
    def name(self) -> str:
        """The name given at creation (non-ASCII, spaces and all)."""
        return unescape(fdinfo(self.fd)["name"])

    @property
    def trusted(self) -> bool:
        return fdinfo(self.fd)["trust"] == "trusted"

    @property
    def dead(self) -> bool:
        """True once init exited (or kill-on-close fired): the fd polls POLLHUP."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def intercept(self, key_type: str, *, ns: Iterable[str] | int = (),
                  queue: int) -> None:
        """Route this container's upcalls for ``key_type`` ("*": any) to keyring ``queue``.

        ``ns`` names the namespace kinds to pin (``{"uts", "net"}``): a
        request matches only from those namespaces of this container.
        """
        upcalls.intercept(self.fd, key_type, ns, queue)

    def remove_intercepts(self, key_type: str | None = None, *,
                          ns: Iterable[str] | int = ()) -> int:
        """Remove records with exactly this type and mask (all if None); how many."""
        return upcalls.remove_intercepts(self.fd, key_type, ns)

    def set_keyring(self, keyring: int) -> None:
        """Attach a keyring (serial) that members search after their session keyring."""
        upcalls.set_container_keyring(self.fd, keyring)

    def fork(self) -> int:
        """Fork into the container (clone3() with CLONE_INTO_CONTAINER): the
        child's pid here, 0 in the child."""
        pid = clone_into(self.fd)
        if pid and self.init_pid is None:
            self.init_pid = pid
        return pid

    def spawn(self, argv: Sequence[str]) -> int:
        """Fork into the container and exec ``argv`` there; return the pid.

        An exec failure in the child comes back as the parent's exception
        (FileNotFoundError and so on), through a close-on-exec pipe.
        """
        if not argv:
            raise ValueError("spawn: empty argv")
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        pid = self.fork()
        if pid == 0:  # child
            os.close(rfd)
            try:
                os.execvp(argv[0], list(argv))
            except OSError as err:
                os.write(wfd, f"{err.errno}".encode())
            finally:
                os._exit(127)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as report:
            failure = report.read()
        if failure:
            os.waitpid(pid, 0)
            raise oserror(int(failure), f"exec {argv[0]}")
        return pid

    def wait(self, pid: int | None = None) -> int:
        """Wait for ``pid`` (default: init) and return its wait status."""
        target = pid if pid is not None else self.init_pid
        if target is None:
            raise ValueError("nothing was forked into this container")
        return os.waitpid(target, 0)[1]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"<Container {state} flags={self.flags!r}>"
