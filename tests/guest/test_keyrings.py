"""Keyrings work in the guest kernel (through keyutils' keyctl)."""

from __future__ import annotations

from conftest import keyctl


def test_add_read_unlink(session_keyring: int) -> None:
    key = keyctl("add", "user", "kcont:test", "payload-1", "@s").stdout.strip()
    assert keyctl("print", key).stdout == "payload-1\n"
    # keyctl prints the serial right-aligned in 9 columns ("%9d: ...").
    assert keyctl("describe", key).stdout.lstrip().startswith(f"{key}: ")
    assert key in keyctl("rlist", "@s").stdout.split()
    keyctl("unlink", key, "@s")
    assert keyctl("rlist", "@s").stdout.strip() == ""


def test_search_finds_key_in_session(session_keyring: int) -> None:
    key = keyctl("add", "user", "kcont:search", "x", "@s").stdout.strip()
    assert keyctl("search", "@s", "user", "kcont:search").stdout.strip() == key


def test_missing_key_is_enokey(session_keyring: int) -> None:
    result = keyctl("search", "@s", "user", "kcont:absent", check=False)
    assert result.returncode != 0
    assert "Required key not available" in result.stderr


def test_fresh_session_per_test_starts_empty(session_keyring: int) -> None:
    assert keyctl("rlist", "@s").stdout.strip() == ""
