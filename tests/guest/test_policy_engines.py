"""The daemon's policy in the languages platforms already write: a Rego
policy in the daemon's process, and an admission webhook asked about each
upcall and about a container's creation, end to end on the real kernel.

The webhook is a real HTTPS server on the guest's loopback address with a
certificate from a CA made for the test (tests/admission_webhook.py).
"""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from admission_webhook import Certificates, WebhookServer, make_certificates
from agents import Agent
from upcall_fixtures import unique as unique_desc

from kcont import proc
from kcont.container import Container

# Policy engines in the daemon (userspace): the perf boot, beside keyutils'.
pytestmark = pytest.mark.perf_boot

REGO = textwrap.dedent("""\
    package kcont.request_key

    import rego.v1

    default allow := false

    allow if input.key.type != "logon"

    reason := "logon keys are not made in this container" if input.key.type == "logon"
    """)
CONFIG = "create * * * @static 10.9.8.7\n"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return make_certificates(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def webhook(certificates: Certificates) -> Iterator[WebhookServer]:
    with WebhookServer(certificates) as server:
        yield server


def unique(tag: str) -> str:
    """A fresh name usable as a host name and a container name."""
    return unique_desc(tag).replace(":", "-")


def _daemon(tmp: Path, *args: str) -> tuple[Container, Agent, dict]:
    confdir = tmp / "rk"
    confdir.mkdir(exist_ok=True)
    (confdir / "request-key.conf").write_text(CONFIG)
    box = Container(f"kcont-policy-{tmp.name[-12:]}", trusted=False)
    agent = Agent(box)
    daemon = agent.start_daemon(box.fd, "--config-dir", str(confdir), *args)
    assert daemon["ready"], Path(daemon["log"]).read_text()
    return box, agent, daemon


def _stop(box: Container, agent: Agent, daemon: dict) -> str:
    try:
        status = agent.kill(daemon["pid"], signal.SIGTERM)
    finally:
        agent.stop()
        box.close()
    log = Path(daemon["log"]).read_text()
    assert status == 0, log
    return log


def test_rego_policy_denies_one_key_type_and_replays(tmp_path: Path) -> None:
    policy, decisions = tmp_path / "policy.rego", tmp_path / "decisions.jsonl"
    policy.write_text(REGO)
    box, agent, daemon = _daemon(tmp_path, "--policy", str(policy),
                                 "--policy-debug", str(decisions))
    try:
        user = agent.request("user", unique("rego-user")).result()
        logon = agent.request("logon", f"kcont:{unique('rego-logon')}").result()
    finally:
        log = _stop(box, agent, daemon)
    assert user.get("payload") == "10.9.8.7", (user, log)
    assert logon.get("errno") == errno.EKEYREJECTED, (logon, log)
    assert "decision='deny (logon keys are not made in this container)'" in log
    replayed = subprocess.run([sys.executable, "-m", "request_key_daemon.cli",
                               "--check-policy", str(policy), str(decisions)],
                              capture_output=True, text=True, check=False)
    assert replayed.returncode == 0, replayed
    assert "2 decisions replayed, 0 differ" in replayed.stdout


def test_webhook_reviews_each_upcall(tmp_path: Path, webhook: WebhookServer,
                                     certificates: Certificates) -> None:
    """Denied by the webhook: rejected with its message; allowed: served;
    the webhook gets the same input document as the policy."""
    box, agent, daemon = _daemon(
        tmp_path, "--admission-webhook", webhook.url("/deny-type/logon"),
        "--admission-ca", str(certificates.ca), "--admission-timeout", "5")
    try:
        user = agent.request("user", unique("wh-user")).result()
        logon = agent.request("logon", f"kcont:{unique('wh-logon')}").result()
    finally:
        log = _stop(box, agent, daemon)
    assert user.get("payload") == "10.9.8.7", (user, log)
    assert logon.get("errno") == errno.EKEYREJECTED, (logon, log)
    assert "deny (denied by the webhook: key type logon is not allowed)" in log, log
    assert "allow (allowed by the webhook: allowed by the test webhook)" in log, log
    kinds = [review["request"]["object"]["spec"]["key"]["type"]
             for path, review in webhook.reviews if path == "/deny-type/logon"]
    assert kinds[-2:] == ["user", "logon"]


@pytest.mark.parametrize(("policy", "served"), [("Fail", False), ("Ignore", True)])
def test_a_dead_webhook_is_decided_by_the_failure_policy(
        tmp_path: Path, webhook: WebhookServer, certificates: Certificates, policy: str,
        served: bool) -> None:
    """A webhook that closes the connection: Fail rejects every request,
    Ignore serves every one, and each log line says the failure policy
    decided; the daemon serves request after request either way."""
    box, agent, daemon = _daemon(
        tmp_path, "--admission-webhook", webhook.url("/crash"),
        "--admission-ca", str(certificates.ca), "--admission-timeout", "2",
        "--admission-failure-policy", policy)
    try:
        results = [agent.request("user", unique("dead")).result() for _ in range(3)]
    finally:
        log = _stop(box, agent, daemon)
    if served:
        assert [r.get("payload") for r in results] == ["10.9.8.7"] * 3, (results, log)
        assert log.count("allowed by the failure policy") == 3, log
    else:
        assert [r.get("errno") for r in results] == [errno.EKEYREJECTED] * 3, (results, log)
        assert log.count("denied by the failure policy") == 3, log
    assert log.count(f"failurePolicy {policy}") == 3, log


def test_webhook_refuses_a_container(webhook: WebhookServer,
                                     certificates: Certificates) -> None:
    """kcont run asks before creating: the refused container never exists,
    an allowed one runs its command."""
    kcont = str(Path(sys.executable).parent / "kcont")
    refused = unique("refused").replace(":", "-")[:30]
    common = ["--admission-ca", str(certificates.ca), "--admission-webhook",
              webhook.url(f"/deny-name/{refused}")]
    script = "from kcont import proc; print(sorted(r.name for r in proc.read()))"
    done = subprocess.run([kcont, "run", "--name", refused, *common, "--", sys.executable,
                           "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 125, done  # kcont run itself failed: env(1)'s code
    assert f"admission webhook refused the container: container {refused} is refused" \
        in done.stderr
    assert refused not in [row.name for row in proc.read()]
    allowed = subprocess.run([kcont, "run", "--name", "kcont-admitted", *common, "--",
                              sys.executable, "-c", script],
                             capture_output=True, text=True, check=False)
    assert allowed.returncode == 0, allowed
    assert "kcont-admitted" in allowed.stdout
    names = [review["request"]["name"] for _, review in webhook.reviews[-2:]]
    assert names == [refused, "kcont-admitted"]
