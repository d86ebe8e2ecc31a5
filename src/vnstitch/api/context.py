"""What every route needs, built once by create_app and reached through `ctx(request)`."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vnstitch.api.auth import Authenticator, Principal
from vnstitch.api.idempotency import IdempotencyKeys
from vnstitch.api.limits import RateLimiter, TenantUsage
from vnstitch.api.metrics import RequestMetrics
from vnstitch.api.settings import Settings
from vnstitch.controller.service import Controller
from vnstitch.store import Store


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    controller: Controller
    authenticator: Authenticator
    limiter: RateLimiter
    idempotency: IdempotencyKeys
    metrics: RequestMetrics
    usage: TenantUsage
    worker: object | None = None
    _locks: dict = field(default_factory=lambda: defaultdict(threading.Lock))
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def write_lock(self, namespace: str) -> threading.Lock:
        """Serialises this process's check-then-write sequences (create-only, resourceVersion,
        quotas) per tenant; the controller's transaction stays the source of truth."""
        with self._locks_guard:
            return self._locks[namespace]


def ctx(request: Request) -> ApiContext:
    return request.app.state.ctx


bearer = HTTPBearer(auto_error=False, description="API token from `vnstitch token create`")


def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
    """The caller: authenticated by bearer token, then charged one request of its rate limit."""
    context = ctx(request)
    who = context.authenticator.verify(credentials.credentials if credentials else None)
    context.limiter.take(who.token_id)
    return who
