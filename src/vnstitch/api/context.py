"""What every route needs, built once by create_app and reached through `ctx(request)`."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from vnstitch.api.auth import Authenticator, Principal
from vnstitch.api.idempotency import IdempotencyKeys
from vnstitch.api.limits import RateLimiter, TenantUsage
from vnstitch.api.metrics import RequestMetrics
from vnstitch.api.settings import Settings
from vnstitch.controller.service import Controller
from vnstitch.store import Store

if TYPE_CHECKING:
    from vnstitch.api.batching import CreateBatcher
    from vnstitch.api.reads import RenderedReads


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
    reads: RenderedReads | None = None      # set by create_app
    creates: CreateBatcher | None = None    # set by create_app
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


async def principal(request: Request,
                    credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
    """The caller: authenticated by bearer token, then charged one request of its rate limit.

    Runs on the event loop (no thread hop) when the token's answer is cached; the store read
    of a cache miss goes to the thread pool."""
    context = ctx(request)
    token = credentials.credentials if credentials else None
    who = context.authenticator.cached(token)
    if who is None:
        who = await run_in_threadpool(context.authenticator.verify, token)
    context.limiter.take(who.token_id)
    return who
