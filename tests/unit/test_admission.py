"""Admission review against a real webhook: HTTPS on loopback with its own
CA, and HTTP on a Unix socket; the webhook that allows, denies, is slow,
crashes, or answers garbage, under both failure policies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from admission_webhook import Certificates, WebhookServer, make_certificates

from kcont.admission import API_VERSION, Verdict, Webhook


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def https(certificates: Certificates) -> Iterator[WebhookServer]:
    with WebhookServer(certificates) as server:
        yield server


@pytest.fixture
def unix(tmp_path: Path) -> Iterator[WebhookServer]:
    with WebhookServer(unix_path=tmp_path / "webhook.sock") as server:
        yield server


def review(webhook: Webhook, name: str = "web") -> Verdict:
    return webhook.review("Container", "containers", "CREATE", name,
                          {"spec": {"namespaces": ["uts"]}}, 1000, 1000)


def test_allow_and_deny_over_https(https: WebhookServer, certificates: Certificates) -> None:
    allowed = review(Webhook(https.url("/allow"), str(certificates.ca)))
    assert allowed == Verdict(True, "allowed by the test webhook")
    denied = review(Webhook(https.url("/deny"), str(certificates.ca)))
    assert denied == Verdict(False, "denied by the test webhook")
    assert denied.line() == "denied by the webhook: denied by the test webhook"
    path, sent = https.reviews[-1]
    assert path == "/deny" and sent["apiVersion"] == API_VERSION
    assert sent["kind"] == "AdmissionReview"
    request = sent["request"]
    assert request["operation"] == "CREATE" and request["name"] == "web"
    assert request["kind"] == {"group": "kcont.dev", "version": "v1", "kind": "Container"}
    assert request["userInfo"]["uid"] == "1000"
    assert request["object"]["spec"] == {"namespaces": ["uts"]}


def test_an_unknown_ca_is_a_failure_not_an_answer(https: WebhookServer) -> None:
    """Without the webhook's CA the TLS handshake fails: the failure
    policy decides, and the webhook's 'allowed' is never believed."""
    verdict = review(Webhook(https.url("/allow")))
    assert not verdict.allowed and verdict.failed
    assert "CERTIFICATE_VERIFY_FAILED" in verdict.message


@pytest.mark.parametrize(("path", "why"), [
    ("/slow", "timed out"),
    ("/crash", "RemoteDisconnected"),
    ("/malformed", "not JSON"),
    ("/not-bool", "not a boolean"),
    ("/wrong-uid", "not ours"),
    ("/error", "HTTP 500"),
    ("/drip", "timed out"),
    ("/nested", "not JSON"),
])
@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_a_broken_webhook_is_decided_by_the_failure_policy(
        https: WebhookServer, certificates: Certificates, path: str, why: str,
        policy: str) -> None:
    webhook = Webhook(https.url(path), str(certificates.ca), timeout=1.0, failure_policy=policy)
    verdict = review(webhook)
    assert verdict.failed and verdict.allowed == (policy == "Ignore")
    assert why in verdict.message and f"failurePolicy {policy}" in verdict.message


def test_unix_socket_transport(unix: WebhookServer) -> None:
    assert review(Webhook(unix.url("/deny-name/web"))).allowed is False
    assert review(Webhook(unix.url("/deny-name/web")), "db").allowed is True
    assert [path for path, _ in unix.reviews] == ["/deny-name/web"] * 2


def test_nobody_listening_is_a_failure(tmp_path: Path) -> None:
    verdict = review(Webhook(f"unix:{tmp_path}/nothing.sock:/allow"))
    assert verdict.failed and not verdict.allowed and "FileNotFoundError" in verdict.message


@pytest.mark.parametrize(("url", "policy", "timeout"), [
    ("http://127.0.0.1/plain-http", "Fail", 1.0),
    ("https://127.0.0.1/", "Sometimes", 1.0),
    ("https://127.0.0.1/", "Fail", 0.0),
])
def test_bad_settings_are_refused(url: str, policy: str, timeout: float) -> None:
    with pytest.raises(ValueError):
        Webhook(url, None, timeout, policy)


def test_the_timeout_bounds_the_whole_review(https: WebhookServer,
                                            certificates: Certificates) -> None:
    """A reply dripped a byte at a time never trips a per-read timeout; the
    review is cut off at the timeout all the same."""
    import time

    start = time.monotonic()
    verdict = review(Webhook(https.url("/drip"), str(certificates.ca), timeout=1.0))
    assert verdict.failed and "timed out" in verdict.message
    assert time.monotonic() - start < 3.0


def test_a_certificate_for_another_name_is_refused(https: WebhookServer,
                                                   certificates: Certificates) -> None:
    """The certificate names 127.0.0.1; asked as localhost, TLS refuses it."""
    url = https.url("/allow").replace("127.0.0.1", "localhost")
    verdict = review(Webhook(url, str(certificates.ca), timeout=2.0))
    assert verdict.failed and not verdict.allowed
    assert "CERTIFICATE_VERIFY_FAILED" in verdict.message or "mismatch" in verdict.message


def test_a_message_cannot_redraw_the_terminal(https: WebhookServer,
                                              certificates: Certificates) -> None:
    verdict = review(Webhook(https.url("/ansi"), str(certificates.ca)))
    assert not verdict.allowed and "\x1b" not in verdict.message and "\r" not in verdict.message
    assert verdict.message == "no\\x0d\\x1b[1A\\x1b[2Kallowed by the webhook"


def test_a_socket_path_may_hold_a_colon(tmp_path: Path) -> None:
    directory = tmp_path / "a:b"
    directory.mkdir()
    with WebhookServer(unix_path=directory / "hook.sock") as server:
        assert review(Webhook(server.url("/deny"))).message == "denied by the test webhook"


@pytest.mark.parametrize(("url", "ca", "timeout", "message"), [
    ("https://127.0.0.1:99999/", None, 1.0, "Port out of range"),
    ("https://127.0.0.1/", "/nonexistent/ca.pem", 1.0, "CA bundle"),
    ("https://127.0.0.1/", None, float("nan"), "timeout"),
    ("https://127.0.0.1/", None, float("inf"), "timeout"),
    ("unix:relative.sock:/x", None, 1.0, "ABSOLUTE"),
    ("unix:/run/hook.sock:/x", "/etc/ssl/certs/ca-certificates.crt", 1.0, "CA bundle is for"),
])
def test_settings_that_could_only_fail_later_are_refused_now(
        url: str, ca: str | None, timeout: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Webhook(url, ca, timeout)
