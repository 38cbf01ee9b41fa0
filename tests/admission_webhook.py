"""A real validating admission webhook for the tests and the benchmark.

HTTPS on the loopback address with a certificate from a CA made here
(openssl, as a cluster's webhook has its caBundle), or plain HTTP on a
Unix socket.  What it answers depends on the path it is called on, so one
server plays every webhook a test needs:

| path | answer |
|---|---|
| ``/allow`` | allowed |
| ``/deny`` | denied, ``status.message`` "denied by the test webhook" |
| ``/deny-type/T`` | denied if the upcall's key type is T, allowed otherwise |
| ``/deny-name/N`` | denied if the object's name is N, allowed otherwise |
| ``/slow`` | allowed after 3 s (past a test's timeout) |
| ``/crash`` | the connection closed with no reply |
| ``/malformed`` | a 200 reply that is not JSON |
| ``/not-bool`` | ``allowed: "yes"`` |
| ``/wrong-uid`` | an AdmissionReview answering another request |
| ``/error`` | HTTP 500 |
| ``/drip`` | a reply dripped a byte every 0.3 s (each read succeeds) |
| ``/nested`` | 200000 nested JSON arrays |
| ``/ansi`` | denied, with terminal escape sequences in the message |

Every review received is kept in ``reviews`` for the test to read.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLOW_SECONDS = 3.0


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for argv in (
        ["req", "-x509", *curve, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=kcont test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *curve, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return Certificates(ca, cert, key)


def _answer(review: dict[str, Any], allowed: bool, message: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": allowed,
                         "status": {"message": message, "code": 200 if allowed else 403}}}


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.owner.reviews.append((self.path, review))
        request = review["request"]
        path = self.path
        if path == "/crash":
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/error":
            self._reply(500, b'{"message": "webhook broke"}')
            return
        if path == "/malformed":
            self._reply(200, b"this is not json")
            return
        if path == "/nested":
            self._reply(200, b"[" * 200000 + b"]" * 200000)
            return
        if path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.3)
            return
        if path == "/slow":
            time.sleep(SLOW_SECONDS)
        answer = _answer(review, path != "/deny", "denied by the test webhook"
                         if path == "/deny" else "allowed by the test webhook")
        if path.startswith("/deny-type/"):
            key_type = request["object"]["spec"]["key"]["type"]
            denied = key_type == path.removeprefix("/deny-type/")
            answer = _answer(review, not denied, f"key type {key_type} is not allowed"
                             if denied else "allowed by the test webhook")
        elif path.startswith("/deny-name/"):
            denied = request["name"] == path.removeprefix("/deny-name/")
            answer = _answer(review, not denied, f"container {request['name']} is refused"
                             if denied else "allowed by the test webhook")
        elif path == "/ansi":
            answer = _answer(review, False, "no\r\x1b[1A\x1b[2Kallowed by the webhook")
        elif path == "/not-bool":
            answer["response"]["allowed"] = "yes"
        elif path == "/wrong-uid":
            answer["response"]["uid"] = "someone-else"
        self._reply(200, json.dumps(answer).encode())


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client that gave up (the timeout tests) is not an error here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, _ = super().get_request()
        return sock, ("unix", 0)


class WebhookServer:
    """The webhook, serving from a thread until closed."""

    def __init__(self, certificates: Certificates | None = None,
                 unix_path: Path | None = None) -> None:
        self.reviews: list[tuple[str, dict[str, Any]]] = []
        self.server: socketserver.BaseServer
        if unix_path is not None:
            unix_path.unlink(missing_ok=True)
            self.server = _UnixHTTPServer(str(unix_path), _Handler)
            self.base = f"unix:{unix_path}:"
        else:
            assert certificates is not None
            http = _QuietHTTPServer(("127.0.0.1", 0), _Handler)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certificates.cert, certificates.key)
            http.socket = context.wrap_socket(http.socket, server_side=True)
            self.server = http
            self.base = f"https://127.0.0.1:{http.server_address[1]}"
        self.server.owner = self    # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
