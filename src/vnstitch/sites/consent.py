"""The route managers' consent API: a small JSON-over-HTTP endpoint on the site's route-manager address
(docs/SITES.md, "Stitches across sites"), served from inside the site's namespace.

    GET    /v1/site                         → {"site", "asNumber"}      (what latency is measured with)
    POST   /v1/consents   {request}         → 200 {"accepted": true, …} | 403/404/400 {"accepted": false, "reason"}
    DELETE /v1/consents?site=S&stitch=T/N   → 200 {"removed": bool}

The standard library's HTTP server and client are enough for three routes of small JSON; the sockets are
made in the site's namespace (setns is per thread), so the server listens on, and the client connects
from, the site's own address.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from vnstitch.drivers.linux.kernel import in_netns

log = logging.getLogger("vnstitch.route_manager")

CONSENT_PORT = 7179
MAX_BODY = 64 * 1024

Handler = Callable[[str, str, dict, dict, str], tuple[int, dict]]   # (method, path, query, body, peer) → answer


def _in(netns: str | None, fn):
    return in_netns(netns, fn) if netns else fn()


MAX_CONNECTIONS = 16   # requests answered at once; more are closed at once (a peer's pass asks a few)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per request, at most MAX_CONNECTIONS of them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class ConsentServer:
    """A threading HTTP server on (address, port) in `netns`, each request answered by `handler`."""

    def __init__(self, netns: str | None, address: str, port: int, handler: Handler):
        sock = _in(netns, lambda: socket.create_server((address, port), backlog=64))
        outer = handler

        class _Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body, sort_keys=True).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                body: dict = {}
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    self.close_connection = True
                    self._answer(413 if length > MAX_BODY else 400,
                                 {"accepted": False, "reason": f"Content-Length must be 0..{MAX_BODY}"})
                    return
                if length:
                    try:
                        body = json.loads(self.rfile.read(length))
                    except ValueError:
                        self._answer(400, {"accepted": False, "reason": "the body is not JSON"})
                        return
                    if not isinstance(body, dict):
                        self._answer(400, {"accepted": False, "reason": "the body is not a JSON object"})
                        return
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                try:
                    code, answer = outer(method, url.path, query, body, self.client_address[0])
                except Exception as exc:   # an answer, never a dropped connection; logged with its cause
                    log.exception("consent API: %s %s failed", method, url.path)
                    code, answer = 500, {"accepted": False, "reason": f"internal error: {exc}"}
                self._answer(code, answer)

            def do_GET(self) -> None:   # noqa: N802 (http.server's names)
                self._handle("GET")

            def do_POST(self) -> None:   # noqa: N802
                self._handle("POST")

            def do_DELETE(self) -> None:   # noqa: N802
                self._handle("DELETE")

            def log_message(self, format: str, *args) -> None:   # noqa: A002 (http.server's signature)
                log.debug("consent API: %s %s", self.client_address[0], format % args)

        self.httpd = _BoundedServer((address, port), _Request, bind_and_activate=False)
        self.httpd.socket.close()
        self.httpd.socket = sock
        self.httpd.server_address = sock.getsockname()
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="consent-api", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def call(netns: str | None, address: str, port: int, method: str, path: str, body: dict | None = None,
         timeout_s: float = 2.0, source: str | None = None) -> tuple[int | None, dict, float]:
    """One request from the site's namespace (from address `source`, this site's route-manager address, which
    the peer checks): (status or None when unreachable, answer, seconds taken)."""
    started = time.monotonic()
    try:
        sock = _in(netns, lambda: socket.create_connection((address, port), timeout=timeout_s,
                                                           source_address=(source, 0) if source else None))
    except OSError as exc:
        return None, {"reason": f"{address}:{port} does not answer ({exc.strerror or exc})"}, time.monotonic() - started
    conn = http.client.HTTPConnection(address, port, timeout=timeout_s)
    conn.sock = sock
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        raw = response.read(MAX_BODY + 1)
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"reason": f"the answer of {address} is not JSON"}
        return response.status, answer if isinstance(answer, dict) else {}, time.monotonic() - started
    except (OSError, http.client.HTTPException) as exc:
        return None, {"reason": f"{address}:{port}: {exc}"}, time.monotonic() - started
    finally:
        conn.close()


__all__ = ["CONSENT_PORT", "ConsentServer", "call"]
