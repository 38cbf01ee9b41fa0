"""kcont.upcalls without a kernel: masks, and the model agreeing with the uapi."""

from __future__ import annotations

import pytest

from kcont import upcalls
from kcont.testing import routing_model


def test_model_bits_are_the_uapi_bits() -> None:
    for kind in routing_model.NS_KINDS:
        assert routing_model.NS_BIT[kind] == upcalls.NS_BY_NAME[kind]
    assert routing_model.NS_ALL == upcalls.NS_ALL


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
