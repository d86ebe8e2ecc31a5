"""API-only errors, and the one place where any error becomes an HTTP response."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

import vnstitch.errors as core_errors
from vnstitch.domain.resources import describe_error, first_error
from vnstitch.errors import InvalidInput, VnstitchError
from vnstitch.store import Compacted, LeaseNotFound

log = logging.getLogger("vnstitch.api")


class Unauthenticated(VnstitchError):
    """No bearer token, or one the server does not know (revoked, mistyped)."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(VnstitchError):
    """Authenticated, but the token's role may not do this."""

    code = "forbidden"
    http_status = 403


class QuotaExceeded(VnstitchError):
    """A per-tenant quota (stitch count or reserved bandwidth) would be exceeded."""

    code = "quota_exceeded"
    http_status = 403


class RateLimited(VnstitchError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(VnstitchError):
    code = "payload_too_large"
    http_status = 413


class IdempotencyKeyReused(VnstitchError):
    """The same Idempotency-Key was sent with a different request."""

    code = "idempotency_key_reused"
    http_status = 422


class MethodNotAllowed(VnstitchError):
    code = "method_not_allowed"
    http_status = 405


class NotReady(VnstitchError):
    code = "not_ready"
    http_status = 503


class ServerUnreachable(VnstitchError):
    """Client side: the API server could not be reached or answered garbage."""

    code = "unreachable"
    http_status = 503


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def error_classes() -> dict[str, type[VnstitchError]]:
    """Stable code → error class, for the client to raise what the server raised."""
    known = [c for c in _subclasses(VnstitchError)] + [Compacted, LeaseNotFound]
    out: dict[str, type[VnstitchError]] = {}
    for cls in known:
        out.setdefault(cls.code, cls)
    for name in dir(core_errors):  # core classes win over look-alikes
        obj = getattr(core_errors, name)
        if isinstance(obj, type) and issubclass(obj, VnstitchError):
            out[obj.code] = obj
    return out


_STATUS_CODES = {400: InvalidInput, 404: core_errors.NotFound, 405: MethodNotAllowed,
                 413: PayloadTooLarge, 401: Unauthenticated, 403: Forbidden}


def error_response(exc: VnstitchError) -> JSONResponse:
    headers = {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, int(exc.retry_after_s + 0.999)))
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


def validation_error(exc: RequestValidationError, body_model: type | None = None) -> InvalidInput:
    """FastAPI's request validation errors → one InvalidInput naming the first bad field (dotted) and saying
    what is allowed, in the words `vnstitch validate` uses; `body_model` is the request body's model."""
    errors = exc.errors()
    if not errors:
        return InvalidInput("invalid request")
    err = first_error(errors)
    loc = tuple(err.get("loc", ()))
    where = loc[0] if loc else ""
    if err.get("type") == "json_invalid":
        return InvalidInput("request body is not valid JSON")
    field, message = describe_error({**err, "loc": loc[1:]}, body_model if where == "body" else None)
    if where in ("query", "header", "path"):
        field = field or str(where)
        message = f"{where} parameter: {message}"
    return InvalidInput(message, field=field or None)


def _body_model(request: Request) -> type | None:
    """The pydantic model of the matched route's request body, where it has one."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed_methods(request: Request) -> list[str]:
    """Every documented method for this path (Starlette names only the first route's)."""
    parts = request.url.path.strip("/").split("/")
    allowed: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = template.strip("/").split("/")
        if len(pattern) == len(parts) and all(p == q or p.startswith("{") for p, q in zip(pattern, parts)):
            allowed |= {method.upper() for method in operations}
    return sorted(allowed)


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as JSON {code, message, field}; tracebacks only go to the log."""

    async def on_vnstitch(request: Request, exc: VnstitchError) -> JSONResponse:
        if exc.http_status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc, _body_model(request)))

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = _STATUS_CODES.get(exc.status_code)
        if cls is None:
            err = VnstitchError(str(exc.detail))
            err.code, err.http_status = "http_error", exc.status_code  # type: ignore[misc]
        else:
            detail = exc.detail if isinstance(exc.detail, str) else "request refused"
            err = cls("no such route" if exc.status_code == 404 else detail)
        response = error_response(err)
        response.status_code = exc.status_code
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"code": "internal", "message": f"internal error (incident {incident})", "field": None},
                            status_code=500)

    app.add_exception_handler(VnstitchError, on_vnstitch)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
