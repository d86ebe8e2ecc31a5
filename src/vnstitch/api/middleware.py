"""Pure-ASGI middleware: request body size limit (413) and request latency metrics."""

from __future__ import annotations

import time

from vnstitch.api.errors import PayloadTooLarge, error_response
from vnstitch.api.metrics import RequestMetrics


class BodyLimitAndMetrics:
    def __init__(self, app, max_body_bytes: int, metrics: RequestMetrics):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}
        # In flight until the response starts: a watch stream, which may stay open an hour, only counts
        # while its request is being decided (this is the reconciler's hint to pace itself).
        self.metrics.in_flight += 1
        counted = True

        def done() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.metrics.in_flight -= 1

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                done()
            await send(message)

        try:
            receive = await self._limited(scope, receive)
            if receive is None:
                too_large = PayloadTooLarge(f"request body is larger than {self.max_body_bytes} bytes")
                await error_response(too_large)(scope, _empty_receive, send_and_record)
                return
            await self.app(scope, receive, send_and_record)
        finally:
            done()
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status["code"], time.perf_counter() - started)

    async def _limited(self, scope, receive):
        """`receive` unchanged when the declared length fits; a buffered one for chunked
        bodies that fit; None when the body is too large."""
        length = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return None
        if length is not None:
            return receive if length <= self.max_body_bytes else None
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return receive
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return replay


async def _empty_receive():
    return {"type": "http.request", "body": b"", "more_body": False}
