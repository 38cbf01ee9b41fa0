"""Admission review: ask a Kubernetes validating webhook before acting.

A platform that already runs admission webhooks (OPA Gatekeeper, Kyverno,
its own) can have kcont ask them, as ctrdac does for containerd: a
container creation (``kcont run``) or an upcall (request-key-daemon
``--admission-webhook``) is packed into an ``admission.k8s.io/v1``
``AdmissionReview`` and POSTed to the webhook; its ``response.allowed``
and ``response.status.message`` decide and are logged.

Transport: ``https://host:port/path`` verified against a CA bundle (the
webhook's ``caBundle``), or ``unix:/path/to/socket:/path`` (plain HTTP
over a Unix socket, for a webhook on the same machine).  A review that
cannot be had (a timeout, a refused connection, an HTTP error, a reply
that is not an AdmissionReview for this request) is decided by the
failure policy, as Kubernetes' ``failurePolicy``: ``Fail`` (the default,
as in ``admissionregistration.k8s.io/v1``) denies, ``Ignore`` allows; both
say why.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import math
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

API_VERSION = "admission.k8s.io/v1"
GROUP = "kcont.dev"
VERSION = "v1"
DEFAULT_TIMEOUT = 10.0      # Kubernetes' default timeoutSeconds
FAILURE_POLICIES = ("Fail", "Ignore")
MAX_REPLY = 1 << 20


def _plain(text: str, limit: int = 500) -> str:
    """A webhook's text for a log line or a terminal: one line, no control
    characters (an escape sequence could redraw what the user reads)."""
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:limit])
    return out + ("..." if len(text) > limit else "")


class WebhookError(Exception):
    """The review could not be had; the failure policy decides."""


@dataclass(frozen=True)
class Verdict:
    """What the review decided, and why, for the log line."""

    allowed: bool
    message: str
    failed: bool = False    # decided by the failure policy, not the webhook

    def line(self) -> str:
        word = "allowed" if self.allowed else "denied"
        how = "failure policy" if self.failed else "webhook"
        return f"{word} by the {how}: {self.message}"


@functools.lru_cache(maxsize=8)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One verifying context per CA bundle: loading the bundle costs more
    than the handshake it serves."""
    return ssl.create_default_context(cafile=ca_file)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix stream socket (the host part of the URL is unused)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Webhook:
    """A validating webhook: where, how to trust it, how long to wait,
    and what a failed review means."""

    url: str
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    failure_policy: str = "Fail"

    def __post_init__(self) -> None:
        """Every setting is checked here, so that a review itself can only
        fail the ways a webhook can fail."""
        if self.failure_policy not in FAILURE_POLICIES:
            raise ValueError(f"failure policy must be Fail or Ignore, not {self.failure_policy!r}")
        if not math.isfinite(self.timeout) or not 0 < self.timeout <= 3600:
            raise ValueError("webhook timeout must be a number of seconds in (0, 3600]")
        if self.url.startswith("unix:"):
            if self.ca_file is not None:
                raise ValueError("a CA bundle is for https:// webhooks, not unix:")
            if not self._unix_target()[0].startswith("/"):
                raise ValueError(f"want unix:/ABSOLUTE/SOCKET:/PATH, not {self.url!r}")
            return
        if not self.url.startswith("https://"):
            raise ValueError(f"webhook URL must be https://HOST[:PORT]/PATH or "
                             f"unix:/SOCKET:/PATH, not {self.url!r}")
        try:
            parts = urlsplit(self.url)
            if not parts.hostname:
                raise ValueError("no host")
            parts.hostname.encode("idna")
            _ = parts.port
        except (ValueError, UnicodeError) as err:
            raise ValueError(f"webhook URL {self.url!r}: {err}") from None
        try:
            _tls_context(self.ca_file)
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"CA bundle {self.ca_file}: {err}") from None

    def _unix_target(self) -> tuple[str, str]:
        """(socket path, request target) of a unix: URL; the target starts
        at the last ':/', so a socket path may hold ':'."""
        rest = self.url.removeprefix("unix:")
        path, sep, target = rest.rpartition(":/")
        return (path, "/" + target) if sep else (rest, "/")

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        if self.url.startswith("unix:"):
            path, target = self._unix_target()
            return _UnixConnection(path, self.timeout), target
        parts = urlsplit(self.url)
        context = _tls_context(self.ca_file)
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443,
                                                 timeout=self.timeout, context=context)
        return connection, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def post(self, review: dict[str, Any]) -> dict[str, Any]:
        """POST ``review``; the decoded reply.  Raises WebhookError.

        ``timeout`` bounds the whole exchange, not each socket operation: a
        webhook that drips its reply a byte at a time is cut off at the
        deadline (a timer shuts the socket down under the blocked read)."""
        connection, target = self._connection()
        body = json.dumps(review).encode()
        expired = threading.Event()
        held: list[socket.socket] = []   # the socket, which the reply outlives

        def cut_off() -> None:
            expired.set()
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(self.timeout, cut_off)
        timer.daemon = True
        timer.start()
        try:
            connection.connect()
            held.append(connection.sock)
            if expired.is_set():
                raise TimeoutError
            connection.request("POST", target, body=body,
                               headers={"Content-Type": "application/json",
                                        "Accept": "application/json"})
            reply = connection.getresponse()
            data = reply.read(MAX_REPLY + 1)
        except (OSError, http.client.HTTPException) as err:
            what = "timed out" if expired.is_set() or isinstance(
                err, TimeoutError | socket.timeout) else f"{type(err).__name__}: {err}"
            raise WebhookError(f"{self.url}: {what}") from None
        finally:
            timer.cancel()
            connection.close()
        if expired.is_set():
            raise WebhookError(f"{self.url}: timed out")
        if reply.status != 200:
            raise WebhookError(f"{self.url}: HTTP {reply.status} {reply.reason}")
        if len(data) > MAX_REPLY:
            raise WebhookError(f"{self.url}: reply larger than {MAX_REPLY} bytes")
        try:
            answer = json.loads(data)
        except (ValueError, RecursionError):
            raise WebhookError(f"{self.url}: reply is not JSON") from None
        if not isinstance(answer, dict):
            raise WebhookError(f"{self.url}: reply is not an AdmissionReview")
        return answer

    def review(self, kind: str, resource: str, operation: str, name: str,
               obj: dict[str, Any], uid: int, gid: int) -> Verdict:
        """Ask the webhook about ``obj``; never raises: whatever goes wrong
        is decided by the failure policy, and said."""
        request = review_request(kind, resource, operation, name, obj, uid, gid)
        try:
            return parse_response(self.post(request), request["request"]["uid"], self.url)
        except Exception as err:   # every failure of a review is the failure policy's
            why = str(err) if isinstance(err, WebhookError) else \
                f"{self.url}: {type(err).__name__}: {err}"
            return Verdict(self.failure_policy == "Ignore",
                           f"{_plain(why)} (failurePolicy {self.failure_policy})", failed=True)


def review_request(kind: str, resource: str, operation: str, name: str,
                   obj: dict[str, Any], uid: int, gid: int) -> dict[str, Any]:
    """An ``AdmissionReview`` request for ``obj`` (a kcont.dev/v1 ``kind``)."""
    group_version = {"group": GROUP, "version": VERSION}
    return {
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {**group_version, "kind": kind},
            "resource": {**group_version, "resource": resource},
            "requestKind": {**group_version, "kind": kind},
            "requestResource": {**group_version, "resource": resource},
            "name": name,
            "operation": operation,
            "userInfo": {"username": f"uid:{uid}", "uid": str(uid),
                         "groups": [f"gid:{gid}"]},
            "object": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
                       "metadata": {"name": name}, **obj},
            "oldObject": None,
            "dryRun": False,
            "options": None,
        },
    }


def parse_response(answer: dict[str, Any], uid: str, url: str) -> Verdict:
    """The webhook's verdict; WebhookError if the reply is not a v1
    AdmissionReview answering request ``uid`` with a boolean ``allowed``."""
    response = answer.get("response")
    if answer.get("apiVersion") != API_VERSION or answer.get("kind") != "AdmissionReview" \
            or not isinstance(response, dict):
        raise WebhookError(f"{url}: reply is not an {API_VERSION} AdmissionReview")
    if response.get("uid") != uid:
        raise WebhookError(f"{url}: reply answers another request, not ours ({uid})")
    allowed = response.get("allowed")
    if not isinstance(allowed, bool):
        raise WebhookError(f"{url}: response.allowed is not a boolean")
    status = response.get("status") or {}
    message = status.get("message") if isinstance(status, dict) else None
    if not isinstance(message, str) or not message:
        message = "allowed" if allowed else "denied (no message)"
    return Verdict(allowed, _plain(message))
