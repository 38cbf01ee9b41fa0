"""kcont.upcalls without a kernel: masks, and the model agreeing with the uapi."""

from __future__ import annotations

import pytest

from kcont import container, upcalls
from kcont.namespaces import NS_ALL, NS_BIT, NS_KINDS
from kcont.testing import routing_model


def test_namespace_bits_are_the_uapi_bits() -> None:
    """kcont.namespaces (pure, used by the model, the probes and the
    configuration) and the series' KEY_INTERCEPT_NS_* agree bit for bit."""
    from kcont._binding import keyctl_lib

    assert [(member.name, int(member)) for member in upcalls.Ns] == \
        [(kind.upper(), NS_BIT[kind]) for kind in NS_KINDS]
    assert {kind: int(bit) for kind, bit in upcalls.NS_BY_NAME.items()} == NS_BIT
    assert NS_ALL == int(upcalls.NS_ALL) == keyctl_lib.KEY_INTERCEPT__NS_MASK
    assert routing_model.NS_BIT is NS_BIT and routing_model.NS_ALL == NS_ALL


def test_container_flags_cover_every_kind() -> None:
    """Every kind has its container_create() flag and its unshare(2) flag,
    each a different bit; "fs" is the flag's own name for "mnt"."""
    assert list(container.NAMESPACE_FLAGS) == list(NS_KINDS) == list(container.UNSHARE_FLAGS)
    assert len(set(container.NAMESPACE_FLAGS.values())) == len(NS_KINDS)
    assert len(set(container.UNSHARE_FLAGS.values())) == len(NS_KINDS)
    assert container.namespace_flags(["fs"]) == container.Flag.NEW_FS_NS == \
        container.namespace_flags(["mnt"])
    # The one kind whose clone flag is not CLONE_NEW<KIND>: CLONE_NEWNS, the
    # first namespace flag (linux/sched.h; Python 3.11's os lacks it).
    assert container.UNSHARE_FLAGS["mnt"] == 0x00020000
    with pytest.raises(ValueError, match="unknown namespace 'time'"):
        container.namespace_flags(["time"])


def test_ns_mask_from_names_and_ints() -> None:
    assert upcalls.ns_mask({"uts", "net"}) == upcalls.Ns.UTS | upcalls.Ns.NET
    assert upcalls.ns_mask(()) == 0
    assert upcalls.ns_mask(0x41) == 0x41


def test_unknown_namespace_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown namespace 'fs'"):
        upcalls.ns_mask({"fs"})


def test_uapi_numbers_are_the_specs() -> None:
    from kcont._binding import keyctl_lib

    assert (keyctl_lib.KEYCTL_CONTAINER_INTERCEPT, keyctl_lib.KEYCTL_QUERY_REQUEST_KEY_AUTH,
            keyctl_lib.KEYCTL_SET_CONTAINER_KEYRING, keyctl_lib.KEYCTL_GRANT_PERMISSION) == \
        (33, 34, 35, 36)
    assert upcalls.CONTAINER_KEYRING == -9
    assert keyctl_lib.KEY_ACE_SUBJ_CONTAINER == 1
    assert [int(p) for p in upcalls.Perm] == [1 << i for i in range(8)]
    assert upcalls.ACL_MAX == 16 and upcalls.TYPE_MAX == 32
