"""A small client for etcd's JSON gateway (`/v3/...`, etcd 3.4/3.5) over httpx.

Only what the store needs: unary calls with endpoint failover and one streaming watch.
Keys and values travel base64-encoded; 64-bit integers travel as JSON strings.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
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


class GatewayClient:
    """Unary gateway calls against a list of endpoints, moving on when one fails."""

    def __init__(self, endpoints: list[str], timeout_s: float = 3.0, connect_timeout_s: float = 1.0):
        if not endpoints:
            raise InvalidInput("etcd store needs at least one endpoint", field="--store")
        self.endpoints = [e if e.startswith("http") else f"http://{e}" for e in endpoints]
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._current = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=self.timeout, limits=httpx.Limits(max_connections=64,
                                                                           max_keepalive_connections=32))

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
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                return self._post(endpoint, path, body)
            except Unsent as exc:
                errors.append(f"{endpoint}: {exc}")
                self.rotate(endpoint)
            except StoreUnavailable as exc:
                self.rotate(endpoint)
                if not idempotent:
                    raise
                errors.append(f"{endpoint}: {exc.message}")
        raise StoreUnavailable("etcd unreachable: " + "; ".join(errors))

    def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.post(endpoint + path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unsent(type(exc).__name__) from None
        except httpx.TimeoutException:
            raise StoreUnavailable(f"etcd at {endpoint} did not answer {path} within "
                                   f"{self.timeout.read:g} s (no quorum?); the outcome is unknown") from None
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"etcd at {endpoint}: {type(exc).__name__}: {exc}") from None
        try:
            data = response.json()
        except ValueError:
            raise StoreUnavailable(f"etcd at {endpoint}: HTTP {response.status_code} without JSON") from None
        if response.status_code != 200 or "error" in data:
            raise gateway_error(data, endpoint)
        return data.get("result", data)

    def close(self) -> None:
        self._http.close()


def gateway_error(data: dict[str, Any], endpoint: str) -> Exception:
    """Map an etcd gateway error body to our error tree."""
    message = str(data.get("message") or data.get("error") or data)
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

    def __init__(self, endpoint: str, create_request: dict[str, Any], connect_timeout_s: float = 1.0):
        # No read timeout: a quiet cluster sends nothing; close() ends the stream from outside.
        self._http = httpx.Client(timeout=httpx.Timeout(None, connect=connect_timeout_s))
        self._request = create_request
        self._endpoint = endpoint
        self._response: httpx.Response | None = None
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self._http.stream("POST", self._endpoint + "/v3/watch",
                               json={"create_request": self._request}) as response:
            self._response = response
            if self._closed:  # close() ran before the response existed
                return
            if response.status_code != 200:
                response.read()
                raise StoreUnavailable(f"etcd watch at {self._endpoint}: HTTP {response.status_code}")
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
