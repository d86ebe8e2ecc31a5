"""A small client for etcd's JSON gateway (`/v3/...`, etcd 3.4/3.5) over httpx.

Only what the store needs: unary calls with endpoint failover and one streaming watch.
Keys and values travel base64-encoded; 64-bit integers travel as JSON strings.

Security (docs/SCALE_OUT.md): HTTPS with a CA bundle and a client certificate (`EtcdSecurity`), and
etcd's own auth as a user whose role may only touch vnstitch's prefix. The gateway cannot carry a
certificate's CN to etcd's auth (it refuses client certificates that have one), so the etcd user
authenticates with its password (`/v3/auth/authenticate`) and sends the token it gets on every call.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import httpx

from vnstitch.errors import InvalidInput, StoreUnavailable
from vnstitch.store.base import Compacted, LeaseNotFound

ALL_KEYS = "AA=="  # b"\0": as key and range_end, the whole keyspace


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class Unsent(Exception):
    """The request never reached a member: safe to retry elsewhere."""


class StorePermissionDenied(StoreUnavailable):
    """etcd refused the request: the user's role may not touch these keys (or auth is misconfigured)."""


class AuthTokenInvalid(StoreUnavailable):
    """etcd no longer knows our auth token (it expired, or the member restarted): authenticate again."""


ENV = {"cacert": "VNSTITCH_ETCD_CACERT", "cert": "VNSTITCH_ETCD_CERT", "key": "VNSTITCH_ETCD_KEY",
       "user": "VNSTITCH_ETCD_USER", "password_file": "VNSTITCH_ETCD_PASSWORD_FILE"}
URL_OPTIONS = {"cacert": "cacert", "cert": "cert", "key": "key", "user": "user", "password-file": "password_file"}


@dataclass(frozen=True)
class EtcdSecurity:
    """How to reach etcd: CA bundle, client certificate and key (PEM paths), etcd user and the file
    holding its password. Unset fields come from $VNSTITCH_ETCD_CACERT, _CERT, _KEY, _USER, _PASSWORD_FILE."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    user: str | None = None
    password_file: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, str] | None = None) -> "EtcdSecurity":
        options = options or {}
        unknown = set(options) - set(URL_OPTIONS)
        if unknown:
            raise InvalidInput(f"unknown etcd URL option '{sorted(unknown)[0]}' (valid: "
                               + ", ".join(URL_OPTIONS) + ")", field="--store")
        given = {URL_OPTIONS[k]: v for k, v in options.items() if v}
        values = {f: given.get(f) or os.environ.get(env) or None for f, env in ENV.items()}
        security = cls(**values)
        if (security.cert is None) != (security.key is None):
            raise InvalidInput("an etcd client certificate needs both cert and key", field="--store")
        if security.password_file and not security.user:
            raise InvalidInput("an etcd password file needs the user it belongs to (user=…)", field="--store")
        return security

    @property
    def tls(self) -> bool:
        return bool(self.cacert or self.cert)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx verifies with: the CA bundle and our certificate, or True (system CAs) without them."""
        if not self.tls:
            return True
        try:
            context = ssl.create_default_context(cafile=self.cacert)
            if self.cert:
                context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(f"etcd TLS files: {exc}", field="--store") from None
        return context

    def password(self) -> str:
        try:
            with open(self.password_file, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise InvalidInput(f"etcd password file: {exc}", field="--store") from None


class GatewayClient:
    """Unary gateway calls against a list of endpoints, moving on when one fails."""

    def __init__(self, endpoints: list[str], timeout_s: float = 3.0, connect_timeout_s: float = 1.0,
                 security: EtcdSecurity | None = None):
        if not endpoints:
            raise InvalidInput("etcd store needs at least one endpoint", field="--store")
        self.security = security or EtcdSecurity.from_options()
        scheme = "https" if self.security.tls else "http"
        self.endpoints = [e if e.startswith("http") else f"{scheme}://{e}" for e in endpoints]
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.verify = self.security.ssl_context()
        self._current = 0
        self._lock = threading.Lock()
        self._token: str | None = None
        self._http = httpx.Client(timeout=self.timeout, verify=self.verify,
                                  limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    def headers(self) -> dict[str, str]:
        """The auth token header (authenticating first when a user is configured)."""
        if not self.security.user:
            return {}
        token = self._token
        if token is None:
            token = self.authenticate()
        return {"Authorization": token}

    def drop_token(self) -> None:
        """Forget the auth token (etcd refused it): the next call authenticates again."""
        self._token = None

    def authenticate(self) -> str:
        """A fresh etcd auth token for our user (etcd's simple tokens expire when idle)."""
        body = {"name": self.security.user, "password": self.security.password()}
        errors = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                answer = self._post(endpoint, "/v3/auth/authenticate", body, {})
                self._token = answer["token"]
                return self._token
            except (Unsent, StoreUnavailable) as exc:
                if isinstance(exc, StorePermissionDenied):
                    raise
                errors.append(f"{endpoint}: {exc}")
                self.rotate(endpoint)
        raise StoreUnavailable("etcd authentication failed: " + "; ".join(errors))

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    def rotate(self, failed: str) -> None:
        with self._lock:
            if self.endpoints[self._current] == failed:
                self._current = (self._current + 1) % len(self.endpoints)

    def call(self, path: str, body: dict[str, Any], idempotent: bool) -> dict[str, Any]:
        """POST to the current endpoint; on failure try the others once each.

        Writes (`idempotent=False`) move on only when the request was never sent, so a
        transaction is never applied twice; otherwise its outcome is unknown → 503.
        """
        errors = []
        reauthenticated = False
        attempt = 0
        while attempt < len(self.endpoints):
            attempt += 1
            endpoint = self.endpoint
            try:
                return self._post(endpoint, path, body, self.headers())
            except AuthTokenInvalid:
                if reauthenticated:
                    raise
                reauthenticated = True  # a token etcd refused never applied anything: safe to send again
                self._token = None
                attempt -= 1
            except StorePermissionDenied:
                raise  # the same answer on every member
            except Unsent as exc:
                errors.append(f"{endpoint}: {exc}")
                self.rotate(endpoint)
            except StoreUnavailable as exc:
                self.rotate(endpoint)
                if not idempotent:
                    raise
                errors.append(f"{endpoint}: {exc.message}")
        raise StoreUnavailable("etcd unreachable: " + "; ".join(errors))

    def _post(self, endpoint: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        try:
            response = self._http.post(endpoint + path, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unsent(_connect_error(exc)) from None
        except httpx.TimeoutException:
            raise StoreUnavailable(f"etcd at {endpoint} did not answer {path} within "
                                   f"{self.timeout.read:g} s (no quorum?); the outcome is unknown") from None
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"etcd at {endpoint}: {_connect_error(exc)}") from None
        try:
            data = response.json()
        except ValueError:
            text = response.text.strip()[:200]
            if "CommonName" in text:  # the gateway refuses certificates with a CN (it cannot pass it on)
                raise StorePermissionDenied(f"etcd at {endpoint}: {text}: use a client certificate without a "
                                            "CN and an etcd user (user=…&password-file=…)") from None
            raise StoreUnavailable(f"etcd at {endpoint}: HTTP {response.status_code} without JSON"
                                   + (f": {text}" if text else "")) from None
        if response.status_code != 200 or "error" in data:
            raise gateway_error(data, endpoint)
        return data.get("result", data)

    def close(self) -> None:
        self._http.close()


def _connect_error(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "SSL" in text or "CERTIFICATE" in text.upper():
        return f"TLS handshake failed ({text}): check the CA bundle and the client certificate"
    return type(exc).__name__ if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout,
                                                   httpx.PoolTimeout)) else text


def gateway_error(data: dict[str, Any], endpoint: str) -> Exception:
    """Map an etcd gateway error body to our error tree."""
    message = str(data.get("message") or data.get("error") or data)
    if "permission denied" in message or "user name is empty" in message or "authentication failed" in message:
        return StorePermissionDenied(f"etcd at {endpoint} refused: {message} (the etcd user's role must grant "
                                     "readwrite on this store's key prefix; see docs/SCALE_OUT.md)")
    if "invalid auth token" in message:
        return AuthTokenInvalid(f"etcd at {endpoint}: {message}")
    if "lease not found" in message:
        return LeaseNotFound(message)
    if "compacted" in message:
        return Compacted(message)
    if "too many operations in txn" in message or "request is too large" in message:
        return InvalidInput(f"transaction too large for this etcd cluster ({message}); raise its "
                            "--max-txn-ops / --max-request-bytes")
    return StoreUnavailable(f"etcd at {endpoint}: {message}")


class WatchStream:
    """One streaming watch: yields each WatchResponse (the gateway's `result`) as a dict."""

    def __init__(self, endpoint: str, create_request: dict[str, Any], connect_timeout_s: float = 1.0,
                 client: GatewayClient | None = None):
        # No read timeout: a quiet cluster sends nothing; close() ends the stream from outside.
        self._http = httpx.Client(timeout=httpx.Timeout(None, connect=connect_timeout_s),
                                  verify=client.verify if client is not None else True)
        self._gateway = client
        self._request = create_request
        self._endpoint = endpoint
        self._response: httpx.Response | None = None
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        headers = self._gateway.headers() if self._gateway is not None else {}
        with self._http.stream("POST", self._endpoint + "/v3/watch",
                               json={"create_request": self._request}, headers=headers) as response:
            self._response = response
            if self._closed:  # close() ran before the response existed
                return
            if response.status_code != 200:
                response.read()
                try:
                    raise gateway_error(response.json(), self._endpoint)
                except ValueError:
                    raise StoreUnavailable(f"etcd watch at {self._endpoint}: HTTP {response.status_code}") from None
            for line in response.iter_lines():
                if not line:
                    continue
                data = json.loads(line)
                if "error" in data:
                    raise gateway_error(data.get("error") if isinstance(data["error"], dict) else data,
                                        self._endpoint)
                yield data.get("result", data)

    def close(self) -> None:
        """End the stream from any thread: shut the socket down so a blocked read returns."""
        self._closed = True
        response = self._response
        if response is not None:
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        try:
            self._http.close()
        except Exception:  # noqa: BLE001 - the reader thread may be closing it too
            pass
