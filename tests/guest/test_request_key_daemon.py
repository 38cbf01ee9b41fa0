"""request-key-daemon end to end: each container's upcalls served inside it.

Two containers with their own mount, net and uts namespaces and different
/etc/hosts each run the daemon; ``request_key("dns_resolver",
"db.internal")`` from each is served by that container's daemon running
the real /sbin/key.dns_resolver in that container, and each gets its own
container's address.  The host's request-key.conf is replaced (bind
mount, init mount namespace) by one whose first line sends *every*
request to a marking script, so any run of the host's helper is seen.
"""

from __future__ import annotations

import errno
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Agent
from upcall_fixtures import marked, marking_helper, unique

from kcont.container import Container

CONFIG = textwrap.dedent("""\
    create dns_resolver *            *  /sbin/key.dns_resolver %k
    create user         kcont-rkd:*  *  |/bin/cat
    create user         kcont-st:*   *  @static from-the-daemon
    create user         kcont-ki:*   *  /bin/keyctl instantiate %k %c-by-keyctl %S
    create user         kcont-neg:*  *  /bin/keyctl negate %k 30 %S
    """)


@pytest.fixture(scope="module", autouse=True)
def mark_everything() -> Iterator[None]:
    with marking_helper("*"):
        yield


def _container(name: str, address: str, tmp: Path) -> tuple[Container, Agent, dict]:
    hosts = tmp / f"hosts-{name}"
    hosts.write_text(f"127.0.0.1 localhost\n{address} db.internal\n")
    confdir = tmp / f"rk-{name}"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text(CONFIG)
    box = Container(f"kcont-rkd-{name}", ns={"mnt", "net", "uts"}, trusted=False)
    agent = Agent(box)
    for argv in (["mount", "--make-rprivate", "/"],
                 ["mount", "--bind", str(hosts), "/etc/hosts"],
                 ["hostname", f"{name}-box"]):
        done = agent.sh(*argv)
        assert done["rc"] == 0, done
    daemon = agent.start_daemon(box.fd, "--config-dir", str(confdir))
    assert daemon["ready"], Path(daemon["log"]).read_text()
    return box, agent, daemon


def _stop(box: Container, agent: Agent, daemon: dict) -> str:
    status = agent.kill(daemon["pid"], signal.SIGTERM)
    agent.stop()
    box.close()
    assert status == 0, f"daemon exit status {status}"
    return Path(daemon["log"]).read_text()


def test_each_container_resolves_through_its_own_daemon(tmp_path: Path) -> None:
    red = _container("red", "10.1.0.1", tmp_path)
    blue = _container("blue", "10.2.0.2", tmp_path)
    try:
        got_red = red[1].request("dns_resolver", "db.internal", callout="").result()
        got_blue = blue[1].request("dns_resolver", "db.internal", callout="").result()
    finally:
        log_red = _stop(*red)
        log_blue = _stop(*blue)
    assert "10.1.0.1" in got_red.get("payload", ""), (got_red, log_red)
    assert "10.2.0.2" in got_blue.get("payload", ""), (got_blue, log_blue)
    assert "db.internal" not in marked(), "the host's /sbin/request-key ran"
    assert "type=dns_resolver" in log_red and "type=dns_resolver" in log_blue


@pytest.mark.parametrize("prefix,expect", [
    ("kcont-rkd:", ("payload", "the-callout")),              # |pipe program
    ("kcont-st:", ("payload", "from-the-daemon")),           # built-in, no fork
    ("kcont-ki:", ("payload", "the-callout-by-keyctl")),     # exec'd keyctl instantiate
    ("kcont-neg:", ("errno", errno.ENOKEY)),                 # exec'd keyctl negate
    ("kcont-none:", ("errno", errno.ENOKEY)),                # no line matches
])
def test_handlers(tmp_path: Path, prefix: str, expect: tuple[str, object]) -> None:
    box, agent, daemon = _container("h", "10.3.0.3", tmp_path)
    desc = prefix + unique()
    try:
        result = agent.request("user", desc, callout="the-callout").result()
    finally:
        log = _stop(box, agent, daemon)
    field, value = expect
    assert result.get(field) == value, (result, log)
    assert desc not in marked()
