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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import Agent, IgnoredSignal
from upcall_fixtures import marked, marking_helper, sysctl, unique

from kcont.container import Container

# The daemon's behaviour (userspace): the perf boot, beside keyutils' suite.
pytestmark = pytest.mark.perf_boot

CONFIG = textwrap.dedent("""\
    create dns_resolver *            *  /sbin/key.dns_resolver %k
    create user         kcont-rkd:*  *  |/bin/cat
    create user         kcont-st:*   *  @static from-the-daemon
    create user         kcont-ki:*   *  /bin/keyctl instantiate %k %c %S
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
    try:
        status = agent.kill(daemon["pid"], signal.SIGTERM)
    except IgnoredSignal as err:
        raise IgnoredSignal(f"the daemon ignored SIGTERM ({err}); its log:\n"
                            + Path(daemon["log"]).read_text()) from None
    finally:
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


@pytest.fixture(scope="module")
def handler_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Container, Agent, dict]]:
    """One container and daemon for every kind of handler: a start costs
    seconds in the debug guest, and each kind is a separate request anyway.
    The daemon must still exit 0 on SIGTERM after serving them all."""
    started = _container("h", "10.3.0.3", tmp_path_factory.mktemp("handlers"))
    yield started
    _stop(*started)


@pytest.mark.parametrize("prefix,expect", [
    ("kcont-rkd:", ("payload", "the-callout")),              # |pipe program
    ("kcont-st:", ("payload", "from-the-daemon")),           # built-in, no fork
    ("kcont-ki:", ("payload", "the-callout")),               # exec'd keyctl instantiate
    ("kcont-neg:", ("errno", errno.ENOKEY)),                 # exec'd keyctl negate
    ("kcont-none:", ("errno", errno.ENOKEY)),                # no line matches
])
def test_handlers(handler_daemon: tuple[Container, Agent, dict], prefix: str,
                  expect: tuple[str, object]) -> None:
    _, agent, daemon = handler_daemon
    desc = prefix + unique()
    result = agent.request("user", desc, callout="the-callout").result()
    field, value = expect
    assert result.get(field) == value, (result, Path(daemon["log"]).read_text())
    assert desc not in marked()


FAULTY = textwrap.dedent("""\
    create user kcont-hang:*  * |/bin/sleep 1000
    create user kcont-crash:* * |{dir}/crash.sh
    create user kcont-big:*   * |{dir}/big.sh
    create user kcont-bad:*   * |/bin/cat %Z
    create user kcont-slow:*  * |{dir}/slow.sh
    create user kcont-ok:*    * @static still-serving
    """)


def _faulty(tmp: Path, *daemon_args: str) -> tuple[Container, Agent, dict, Path]:
    confdir = tmp / "rk-faulty"
    confdir.mkdir(exist_ok=True)
    for name, body in (("crash.sh", "kill -SEGV $$"), ("big.sh", "head -c 1048576 /dev/zero"),
                       ("slow.sh", "sleep 4; cat")):
        script = confdir / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)
    (confdir / "request-key.conf").write_text(FAULTY.format(dir=confdir))
    box = Container("kcont-rkd-faults", trusted=False)
    agent = Agent(box)
    daemon = agent.start_daemon(box.fd, "--config-dir", str(confdir), *daemon_args)
    assert daemon["ready"], Path(daemon["log"]).read_text()
    return box, agent, daemon, confdir


@pytest.fixture(scope="module")
def faulty_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Container, Agent, dict, Path]]:
    """One daemon that every failing handler is thrown at in turn: each
    test also checks it still serves after its failure, so the failures
    accumulate on one daemon, as they would in a container's life."""
    box, agent, daemon, confdir = _faulty(tmp_path_factory.mktemp("faulty"), "--deadline", "3")
    yield box, agent, daemon, confdir
    _stop(box, agent, daemon)


@pytest.mark.parametrize("prefix,bound", [
    ("kcont-hang:", 15.0),     # killed at the daemon's --deadline (3 s here)
    ("kcont-crash:", 10.0),    # SIGSEGV
    ("kcont-big:", 10.0),      # 1 MiB on stdout, over keyutils' 32 KiB
    ("kcont-bad:", 10.0),      # %Z: a configuration error on the matched line
])
def test_a_failing_handler_is_negated_and_the_daemon_keeps_serving(
        faulty_daemon: tuple[Container, Agent, dict, Path], prefix: str, bound: float) -> None:
    _, agent, daemon, _ = faulty_daemon
    failed = agent.request("user", prefix + unique()).result()
    after = agent.request("user", "kcont-ok:" + unique()).result()
    log = Path(daemon["log"]).read_text()
    assert failed.get("errno") == errno.ENOKEY and failed["elapsed"] < bound, (failed, log)
    assert after.get("payload") == "still-serving", (after, log)
    if prefix == "kcont-bad:":     # the error names the file and the line
        assert "request-key.conf:4" in log and "config error" in log, log


def test_kill_9_then_a_restart_serves_what_was_queued(tmp_path: Path) -> None:
    """Requests in flight when the daemon is SIGKILLed stay queued (the
    kernel's timeout bounds them); a new daemon finds the queue keyring by
    name and serves them.  A restarted daemon takes seconds to start under
    TCG, then runs each 4 s program: the kernel's 30 s default is too close,
    so the timeout is 90 s here."""
    with sysctl("kernel.keys.intercept_timeout", "90"):
        box, agent, daemon, confdir = _faulty(tmp_path)
        try:
            pending = agent.request("user", ["kcont-slow:" + unique() for _ in range(3)],
                                    callout="queued")
            pending.namespaces()
            time.sleep(1.0)                       # the daemon has them in hand
            agent.kill(daemon["pid"], signal.SIGKILL)
            second = agent.start_daemon(box.fd, "--config-dir", str(confdir))
            assert second["ready"], Path(second["log"]).read_text()
            results = pending.results(timeout=120)
            log = Path(second["log"]).read_text()
            agent.kill(second["pid"], signal.SIGTERM)
        finally:
            agent.stop()
            box.close()
    assert [r.get("payload") for r in results] == ["queued"] * 3, (results, log)
    assert "serving 3 requests left in the queue" in log, log


def test_kcont_run_daemon_serves_the_command_and_stops(tmp_path: Path) -> None:
    import subprocess
    import sys

    confdir = tmp_path / "rk-run"
    confdir.mkdir()
    (confdir / "request-key.conf").write_text("create user kcont-st:* * @static via-kcont-run\n")
    script = ("from kcont.keys import Keyring, request_key; Keyring.join_session(); "
              "print(request_key('user', 'kcont-st:run', 'x').read().decode())")
    kcont = Path(sys.executable).parent / "kcont"
    done = subprocess.run([str(kcont), "run", "--untrusted", "--daemon", "--daemon-config",
                           str(confdir), "--", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via-kcont-run", done
    assert "type=user desc='kcont-st:run'" in done.stderr and "removed 1 records" in done.stderr


def test_sigterm_with_100_in_flight_answers_or_fails_every_one(tmp_path: Path) -> None:
    """SIGTERM stops taking work, finishes what it took and removes its
    record, which fails whatever was still queued: nobody is left waiting."""
    box, agent, daemon, _ = _faulty(tmp_path, "--workers", "2")
    try:
        pending = agent.request("user", ["kcont-ok:" + unique() for _ in range(100)])
        pending.namespaces()
        time.sleep(2.0)
        status = agent.kill(daemon["pid"], signal.SIGTERM)
        start = time.monotonic()
        results = pending.results(timeout=60)
        took = time.monotonic() - start
        log = Path(daemon["log"]).read_text()
    finally:
        agent.stop()
        box.close()
    assert status == 0, log
    outcomes = [r.get("payload") or r.get("errno") for r in results]
    assert set(outcomes) <= {"still-serving", errno.ENOKEY}, outcomes
    assert len(outcomes) == 100 and took < 30, (took, log)
    assert "removed 1 records" in log


def test_a_policy_that_denies_rejects_with_its_reason(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('default = "allow"\n[[rule]]\naction = "deny"\n'
                      'description = "kcont-ok:secret*"\nreason = "no secrets here"\n')
    box, agent, daemon, _ = _faulty(tmp_path, "--policy", str(policy),
                                    "--policy-debug", str(tmp_path / "decisions.jsonl"))
    try:
        denied = agent.request("user", "kcont-ok:secret-" + unique()).result()
        allowed = agent.request("user", "kcont-ok:" + unique()).result()
    finally:
        log = _stop(box, agent, daemon)
    assert denied.get("errno") == errno.EKEYREJECTED, (denied, log)
    assert allowed.get("payload") == "still-serving", (allowed, log)
    assert "decision='deny (no secrets here)'" in log
    decisions = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(decisions) == 2 and '"allowed": false' in decisions[0]
