"""Bearer tokens stored hashed in the store (kind ApiToken), each with a tenant, a role and an
optional expiry (`expiresAt`, unix seconds; absent: the token never expires)."""

from __future__ import annotations

import contextvars
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from vnstitch.api.errors import Forbidden, Unauthenticated
from vnstitch.domain.resources import NAME_PATTERN
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.store import Store

TOKEN_KIND = "ApiToken"
ROLES = ("reader", "member", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
TOKEN_PREFIX = "vns_"


@dataclass(frozen=True)
class Principal:
    token_id: str
    tenant: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require(self, role: str, action: str) -> None:
        if _RANK[self.role] < _RANK[role]:
            raise Forbidden(f"role '{self.role}' may not {action} (needs {role})")


class TokenExpired(Unauthenticated):
    """A known token past its `expiresAt` (401, like an unknown one, but saying when it expired)."""

    def __init__(self, token_id: str, expires_at: float):
        super().__init__(f"token {token_id} expired at {rfc3339(expires_at)}; make a new one "
                         "(`vnstitch token create`)")


def rfc3339(unix_s: float) -> str:
    """1700000000.5 → '2023-11-14T22:13:20.500Z' (UTC, milliseconds)."""
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# Who made the request being served: the audit middleware sets a fresh holder per request, the
# authenticator fills it (a mutable holder, so a verify in the thread pool reaches it too).
_seen: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vnstitch_principal_seen", default=None)


def watch_principal() -> tuple[dict, contextvars.Token]:
    """A holder that the authenticator fills for the current request; `reset` with the token after."""
    holder: dict = {}
    return holder, _seen.set(holder)


def stop_watching(token: contextvars.Token) -> None:
    _seen.reset(token)


def _note(principal: Principal | None = None, token_id: str | None = None) -> None:
    holder = _seen.get()
    if holder is not None:
        if principal is not None:
            holder["principal"] = principal
        if token_id is not None:
            holder["token_id"] = token_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, tenant: str, role: str, description: str = "",
                 now: float | None = None, ttl_s: float | None = None) -> tuple[str, str]:
    """A new random token (returned once, never stored) and its id; with `ttl_s` it expires then."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role '{role}' (valid: {', '.join(ROLES)})", field="--role")
    if not re.match(NAME_PATTERN, tenant):
        raise InvalidInput(f"bad tenant name '{tenant}'", field="--tenant")
    if ttl_s is not None and not ttl_s > 0:
        raise InvalidInput("a token's TTL must be positive (leave --ttl out for a token that never expires)",
                           field="--ttl")
    created = time.time() if now is None else now
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    value = {"sha256": digest, "tenant": tenant, "role": role, "description": description, "created": created}
    if ttl_s is not None:
        value["expiresAt"] = created + ttl_s
    store.put(TOKEN_KIND, "", digest, value, expect_revision=0)
    return token, digest[:12]


def list_tokens(store: Store) -> list[dict]:
    """Token ids (hash prefixes) with tenant, role and expiry (None: never); never the token itself."""
    return [{"id": r.name[:12], "tenant": r.value["tenant"], "role": r.value["role"],
             "description": r.value.get("description", ""), "created": r.value.get("created"),
             "expiresAt": r.value.get("expiresAt")}
            for r in store.list(TOKEN_KIND, "")]


def revoke_token(store: Store, token_id: str) -> int:
    """Delete the tokens whose id starts with `token_id` (at least 6 characters)."""
    if len(token_id) < 6:
        raise InvalidInput("give at least 6 characters of the token id", field="ID")
    matches = [r for r in store.list(TOKEN_KIND, "") if r.name.startswith(token_id)]
    if not matches:
        raise NotFound(f"no token with id '{token_id}'", field="ID")
    for record in matches:
        store.delete(TOKEN_KIND, "", record.name)
    return len(matches)


def has_admin(store: Store, now: float | None = None) -> bool:
    """Whether an admin token exists that has not expired."""
    now = time.time() if now is None else now
    return any(r.value.get("role") == "admin" and not _expired(r.value.get("expiresAt"), now)
               for r in store.list(TOKEN_KIND, ""))


def _expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and now >= expires_at


class Authenticator:
    """Token → Principal, remembering answers for `cache_s` so a GET costs no store read. The expiry
    is checked against `clock` on every request, cached or not: a cached answer never outlives it."""

    def __init__(self, store: Store, cache_s: float = 1.0, clock: Callable[[], float] = time.time):
        self.store = store
        self.cache_s = cache_s
        self.clock = clock
        # digest → (monotonic time of the store read, principal or None, expiresAt or None)
        self._cache: dict[str, tuple[float, Principal | None, float | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> Principal | None:
        """The answer without touching the store (raises like `verify`); None when a read is due."""
        if not token:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        hit = self._cache.get(hash_token(token))
        if hit is None or time.monotonic() - hit[0] >= self.cache_s:
            return None
        return self._answer(hit[1], hit[2])

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_s:
            principal, expires_at = hit[1], hit[2]
        else:
            record = self.store.get(TOKEN_KIND, "", digest)
            principal = None if record is None else Principal(digest[:12], record.value["tenant"],
                                                              record.value["role"])
            expires_at = None if record is None else record.value.get("expiresAt")
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal, expires_at)
        return self._answer(principal, expires_at)

    def _answer(self, principal: Principal | None, expires_at: float | None) -> Principal:
        if principal is None:
            raise Unauthenticated("unknown or revoked token")
        if _expired(expires_at, self.clock()):
            _note(token_id=principal.token_id)
            raise TokenExpired(principal.token_id, expires_at)
        _note(principal)
        return principal
