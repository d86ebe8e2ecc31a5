"""The error tree: stable codes, one HTTP/CLI mapping lives at the edges."""

from __future__ import annotations


class VnstitchError(Exception):
    """Base of every error vnstitch raises on purpose; carries a stable code."""

    code = "internal"
    http_status = 500

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # one line: "field: message"
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidInput(VnstitchError):
    """Malformed or semantically invalid input (unknown key, bad quantity, bad reference)."""

    code = "invalid"
    http_status = 422


class NotFound(VnstitchError):
    code = "not_found"
    http_status = 404


class Conflict(VnstitchError):
    """Already exists, or a compare-and-swap lost a race."""

    code = "conflict"
    http_status = 409


class PolicyDenied(VnstitchError):
    """A security policy of one side refuses the stitch."""

    code = "policy_denied"
    http_status = 403


class InsufficientCapacity(VnstitchError):
    """No path with the requested bandwidth/latency exists now."""

    code = "insufficient_capacity"
    http_status = 409


class IllegalTransition(VnstitchError):
    code = "illegal_transition"
    http_status = 409


class StoreUnavailable(VnstitchError):
    code = "store_unavailable"
    http_status = 503


class DriverError(VnstitchError):
    """A data-plane operation failed; keeps the OS errno when there is one."""

    code = "driver_error"
    http_status = 502

    def __init__(self, message: str, field: str | None = None, errno: int | None = None):
        super().__init__(message, field)
        self.errno = errno


class MissingDependency(VnstitchError):
    """An optional package is not installed; the message names the extra that brings it."""

    code = "missing_dependency"
    http_status = 500
