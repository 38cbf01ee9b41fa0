"""The classic request_key upcall: the kernel runs /sbin/request-key.

Debian's /etc/request-key.conf (the guest sees the host's /etc) serves
``user debug:*`` keys with /usr/share/keyutils/request-key-debug.sh, which
instantiates "Debug <callout>", and ``debug:loop:*`` with ``|/bin/cat``.
"""

from __future__ import annotations

from conftest import keyctl


def test_upcall_instantiates_through_helper(session_keyring: int) -> None:
    key = keyctl("request2", "user", "debug:kcont-upcall", "hello", "@s").stdout.strip()
    assert keyctl("print", key).stdout == "Debug hello\n"


def test_upcall_pipe_handler(session_keyring: int) -> None:
    key = keyctl("request2", "user", "debug:loop:kcont", "through-a-pipe", "@s").stdout.strip()
    assert keyctl("print", key).stdout == "through-a-pipe\n"


def test_upcall_negated(session_keyring: int) -> None:
    result = keyctl("request2", "user", "debug:kcont-neg", "negate", "@s", check=False)
    assert result.returncode != 0
    assert "Required key not available" in result.stderr


def test_second_request_finds_the_key_without_upcall(session_keyring: int) -> None:
    first = keyctl("request2", "user", "debug:kcont-again", "x", "@s").stdout.strip()
    assert keyctl("request", "user", "debug:kcont-again").stdout.strip() == first
