"""container_create(): every flag, every documented errno (docs/containers.md)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import adversary
import pytest
from containers import errno_in_child, in_container, ns_inodes
from hypothesis import given, settings
from hypothesis import strategies as st

from kcont import _binding, proc
from kcont.container import NAME_MAX, NAMESPACE_FLAGS, Container, Flag, create_raw, fdinfo
from kcont.namespaces import NS_KINDS

TRUST_SYSCTL = Path("/proc/sys/kernel/keys/container_default_trust")
KIND_OF_FLAG = {flag: kind for kind, flag in NAMESPACE_FLAGS.items()}


def create_errno(name: str | bytes | None, flags: int, *spares: int) -> int | None:
    try:
        os.close(create_raw(name, flags, *spares))
    except OSError as err:
        return err.errno
    return None


def test_create_gives_a_container_fd() -> None:
    with Container("kc-basic") as c:
        info = fdinfo(c.fd)
        assert c.name == "kc-basic" and c.id > 1
        assert info["flags"] == "----" and info["members"] == "0"


@pytest.mark.parametrize("name", ["café", "kc a\\b", "kc\ttab\nline", "名前 \\134",
                                  b"kc-\xff\xfe-not-utf8"],
                         ids=["non-ascii", "space-backslash", "tab-newline", "escape-lookalike",
                              "not-utf8"])
def test_name_round_trips_through_fdinfo_and_proc(name: str | bytes) -> None:
    """What the kernel escapes comes back as given: through the fd's
    fdinfo (Container.name) and, where its line can carry the name (no
    newline: /proc/containers prints one as it is), /proc/containers."""
    expected = name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")
    with Container.from_fd(create_raw(name, Flag.FD_CLOEXEC)) as c:
        assert c.name == expected
        if "\n" not in expected:
            assert {row.id: row.name for row in proc.read()}[c.id] == expected


@pytest.mark.parametrize("flag", list(KIND_OF_FLAG), ids=lambda f: f.name)
def test_namespace_flag_makes_exactly_that_namespace_new(flag: Flag) -> None:
    outside = ns_inodes()
    with Container("kc-ns", flags=flag) as c:
        inside = in_container(c, ns_inodes)
    kind = KIND_OF_FLAG[flag]
    assert inside[kind] != outside[kind], f"{kind} should be new"
    for other in set(outside) - {kind}:
        assert inside[other] == outside[other], f"{other} should be shared"


def test_all_namespaces_at_once() -> None:
    with Container("kc-all", ns=NS_KINDS) as c:
        outside = ns_inodes()
        inside = in_container(c, ns_inodes)
        assert all(inside[k] != outside[k] for k in outside)


def test_new_pid_ns_makes_init_pid_1() -> None:
    with Container("kc-pid", ns=["pid"]) as c:
        assert in_container(c, os.getpid) == 1


def test_uts_namespace_is_private() -> None:
    with Container("kc-uts", ns=["uts"]) as c:
        def rename() -> str:
            import socket

            socket.sethostname("kcont-inside")
            return socket.gethostname()

        assert in_container(c, rename) == "kcont-inside"
    import socket

    assert socket.gethostname() != "kcont-inside"


@pytest.mark.parametrize("cloexec", [True, False])
def test_fd_cloexec(cloexec: bool) -> None:
    with Container("kc-cloexec", cloexec=cloexec) as c:
        assert bool(fcntl.fcntl(c.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) is cloexec


def test_empty_fs_ns_is_not_supported_yet() -> None:
    assert create_errno("kc-x", Flag.NEW_EMPTY_FS_NS) == errno.EOPNOTSUPP


@pytest.mark.parametrize("flags,spares", [
    (1 << 13, ()), (1 << 31, ()), (0xFFFFFFFF, ()),
    (Flag.NEW_FS_NS | Flag.NEW_EMPTY_FS_NS, ()),
    (Flag.TRUSTED | Flag.UNTRUSTED, ()),
    (Flag.FD_CLOEXEC | Flag.FD_NO_CLOEXEC, ()),
    (0, (1, 0, 0)), (0, (0, 1, 0)), (0, (0, 0, 1)),
])
def test_einval_flags_and_spares(flags: int, spares: tuple[int, ...]) -> None:
    assert create_errno("kc-x", flags, *spares) == errno.EINVAL


@pytest.mark.parametrize("name", [None, "", "a/b", "/"])
def test_einval_names(name: str | None) -> None:
    assert create_errno(name, 0) == errno.EINVAL


def test_name_length_limit() -> None:
    assert create_errno("n" * NAME_MAX, 0) is None
    assert create_errno("n" * (NAME_MAX + 1), 0) == errno.ENAMETOOLONG


@pytest.mark.parametrize("address", [1, 0xFFFF_FFFF_FFFF_F000, 0x7FFF_FFFF_0000])
def test_efault_for_bad_name_pointer(address: int) -> None:
    result = _binding.lib.kcont_container_create(_binding.ffi.cast("const char *", address),
                                                 0, 0, 0, 0)
    assert result == -1 and _binding.ffi.errno == errno.EFAULT


def drop_to_nobody() -> None:
    adversary.become(adversary.NOBODY)


def test_eperm_for_unprivileged_task() -> None:
    def body() -> None:
        drop_to_nobody()
        create_raw("kc-eperm", 0)

    assert errno_in_child(body) == errno.EPERM


def test_unprivileged_with_own_user_ns_is_allowed() -> None:
    def body() -> None:
        drop_to_nobody()
        os.close(create_raw("kc-userns", Flag.NEW_USER_NS | Flag.NEW_UTS_NS))

    assert errno_in_child(body) is None


def test_unprivileged_cannot_ask_for_trust() -> None:
    def body() -> None:
        drop_to_nobody()
        create_raw("kc-trust", Flag.NEW_USER_NS | Flag.TRUSTED)

    assert errno_in_child(body) == errno.EPERM


@pytest.fixture
def default_trust():
    old = TRUST_SYSCTL.read_text()
    yield TRUST_SYSCTL
    TRUST_SYSCTL.write_text(old)


def test_trust_rules(default_trust: Path) -> None:
    assert default_trust.read_text().strip() == "untrusted"
    with Container("kc-t0") as c:
        assert not c.trusted
    with Container("kc-t1", trusted=True) as c:
        assert c.trusted
    default_trust.write_text("trusted\n")
    with Container("kc-t2") as c:
        assert c.trusted
        # A container inside an untrusted one is never trusted by default.
    with Container("kc-t3", trusted=False) as c:
        assert not c.trusted
        assert in_container(c, lambda: Container("kc-t4").trusted) is False


@pytest.mark.parametrize("value", ["maybe", "", "trustedx"])
def test_trust_sysctl_rejects_other_values(default_trust: Path, value: str) -> None:
    with pytest.raises(OSError) as err:
        default_trust.write_text(value + "\n")
    assert err.value.errno == errno.EINVAL
    assert default_trust.read_text().strip() in ("trusted", "untrusted")


DOCUMENTED = {errno.EINVAL, errno.ENAMETOOLONG, errno.EOPNOTSUPP}


@settings(max_examples=300)
@given(name=st.one_of(st.none(), st.binary(max_size=80).filter(lambda b: b"\0" not in b)),
       flags=st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from(list(Flag)).map(int)),
       spare=st.sampled_from([0, 0, 0, 1]))
def test_random_input_gives_fd_or_documented_errno(name: bytes | None, flags: int,
                                                   spare: int) -> None:
    try:
        fd = create_raw(name, flags & ~int(Flag.TRUSTED | Flag.KILL_ON_CLOSE), spare)
    except OSError as err:
        assert err.errno in DOCUMENTED, err
    else:
        os.close(fd)
