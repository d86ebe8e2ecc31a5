"""Pure-ASGI middleware: request body size limit (413), request latency metrics, and the audit trail."""

from __future__ import annotations

import logging
import time

from vnstitch.api.errors import PayloadTooLarge, error_response
from vnstitch.api.metrics import RequestMetrics

log = logging.getLogger("vnstitch.api.audit")


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


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUDIT_CAPTURE_BYTES = 64 * 1024   # of a request and a response body, to name the resource written
# first path segment after /v1 → kind, where it is not a resource's plural
_ROUTE_KINDS = {"policies": "Policy", "telemetry": "Telemetry", "apply": "Apply", "suggestions": "Suggestion",
                "availability": "Availability"}


class AuditTrail:
    """Records every write (POST/PUT/PATCH/DELETE) that reached a route in the audit log, with its
    principal and outcome, after the answer has gone out. Bodies are read only for the resource's
    kind, name and tenant (and a telemetry batch's sample count, an apply's objects): nothing else
    from them, and never a header but X-Request-Id, is kept. Reads are not recorded."""

    def __init__(self, app, audit, clock=time.time):
        self.app = app
        self.audit = audit
        self.clock = clock

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            return await self.app(scope, receive, send)
        from vnstitch.api.auth import stop_watching, watch_principal

        seen, watching = watch_principal()
        request_body, response_body = bytearray(), bytearray()
        response = {"status": 500, "json": False}

        async def receive_and_keep():
            message = await receive()
            if message["type"] == "http.request" and len(request_body) < AUDIT_CAPTURE_BYTES:
                request_body.extend(message.get("body", b"")[:AUDIT_CAPTURE_BYTES - len(request_body)])
            return message

        async def send_and_keep(message):
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["json"] = any(k == b"content-type" and b"json" in v for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body" and response["json"]:
                if len(response_body) < AUDIT_CAPTURE_BYTES:
                    response_body.extend(message.get("body", b"")[:AUDIT_CAPTURE_BYTES - len(response_body)])
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_keep)
        finally:
            stop_watching(watching)
            route = scope.get("route")
            if route is not None and getattr(route, "include_in_schema", True) and response["status"] != 405:
                try:
                    self.audit.record(audit_entry(scope, self.clock(), seen, response["status"],
                                                  _json(request_body), _json(response_body)))
                except Exception:  # noqa: BLE001 - the answer has gone; say what was not recorded
                    log.exception("audit: could not record %s %s", scope["method"], scope.get("path"))


def audit_entry(scope, now: float, seen: dict, status: int, request: dict | None, answer: dict | None):
    """The audit row of one write: who, what, and how it ended."""
    from urllib.parse import parse_qs

    from vnstitch.api.audit import AuditEntry, outcome_of
    from vnstitch.api.auth import rfc3339

    principal = seen.get("principal")
    route_path = getattr(scope.get("route"), "path", "") or ""
    segments = [s for s in route_path.split("/") if s and s not in ("v1", "substrate")]
    kind = _route_kind(segments[0]) if segments else None
    name = (scope.get("path_params") or {}).get("name")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    tenant = (query.get("tenant") or [None])[0]
    detail = None
    ok = status < 400 and answer is not None and "code" not in answer
    for body in ((answer if ok else None), request):
        if not isinstance(body, dict):
            continue
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if isinstance(body.get("kind"), str) and not body["kind"].endswith("List"):
            kind = body["kind"]
        name = name or _text(meta.get("name")) or _text(body.get("name"))
        tenant = tenant or _text(meta.get("tenant")) or _text(body.get("tenant"))
    if ok and isinstance(answer.get("accepted"), int):  # telemetry: one row per batch, with its size
        detail = f"samples={answer['accepted']}"
    elif ok and isinstance(answer.get("changes"), list):  # apply: the objects and what happened to each
        detail = "; ".join(f"{c.get('kind')} {(c.get('tenant') + '/') if c.get('tenant') else ''}{c.get('name')} "
                           f"{c.get('action')}" for c in answer["changes"] if isinstance(c, dict))[:1000]
    elif isinstance(request, dict) and isinstance(request.get("items"), list):
        detail = f"items={len(request['items'])}"
    headers = dict(scope.get("headers") or ())
    request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or None
    error = _text(answer.get("code")) if status >= 400 and isinstance(answer, dict) else None
    return AuditEntry(
        ts=now, time=rfc3339(now),
        token_id=principal.token_id if principal is not None else seen.get("token_id"),
        tenant=principal.tenant if principal is not None else None,
        role=principal.role if principal is not None else None,
        method=scope["method"], path=scope.get("path", "")[:1000], kind=kind, name=name, resource_tenant=tenant,
        status=status, outcome=outcome_of(status), error=error,
        request_id="".join(ch for ch in request_id if ch.isprintable()) if request_id else None, detail=detail)


def _route_kind(segment: str) -> str:
    from vnstitch.domain.registry import kind_class
    from vnstitch.errors import InvalidInput

    if segment in _ROUTE_KINDS:
        return _ROUTE_KINDS[segment]
    try:
        return kind_class(segment).KIND
    except InvalidInput:
        return segment


def _text(value) -> str | None:
    return value[:253] if isinstance(value, str) and value else None


def _json(raw: bytearray) -> dict | None:
    import json

    if not raw or len(raw) >= AUDIT_CAPTURE_BYTES:
        return None  # empty, or cut short: not parsed
    try:
        value = json.loads(bytes(raw))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
