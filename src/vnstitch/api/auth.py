"""Bearer tokens stored hashed in the store (kind ApiToken), each with a tenant and a role."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

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


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, tenant: str, role: str, description: str = "",
                 now: float | None = None) -> tuple[str, str]:
    """A new random token (returned once, never stored) and its id."""
    if role not in ROLES:
        raise InvalidInput(f"unknown role '{role}' (valid: {', '.join(ROLES)})", field="--role")
    if not re.match(NAME_PATTERN, tenant):
        raise InvalidInput(f"bad tenant name '{tenant}'", field="--tenant")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = hash_token(token)
    store.put(TOKEN_KIND, "", digest, {"sha256": digest, "tenant": tenant, "role": role,
                                       "description": description,
                                       "created": time.time() if now is None else now}, expect_revision=0)
    return token, digest[:12]


def list_tokens(store: Store) -> list[dict]:
    """Token ids (hash prefixes) with tenant and role; never the token itself."""
    return [{"id": r.name[:12], "tenant": r.value["tenant"], "role": r.value["role"],
             "description": r.value.get("description", ""), "created": r.value.get("created")}
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


def has_admin(store: Store) -> bool:
    return any(r.value.get("role") == "admin" for r in store.list(TOKEN_KIND, ""))


class Authenticator:
    """Token → Principal, remembering answers for `cache_s` so a GET costs no store read."""

    def __init__(self, store: Store, cache_s: float = 1.0):
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> Principal | None:
        """The answer without touching the store (raises like `verify`); None when a read is due."""
        if not token:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        hit = self._cache.get(hash_token(token))
        if hit is None or time.monotonic() - hit[0] >= self.cache_s:
            return None
        if hit[1] is None:
            raise Unauthenticated("unknown or revoked token")
        return hit[1]

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.cache_s:
            principal = hit[1]
        else:
            record = self.store.get(TOKEN_KIND, "", digest)
            principal = None if record is None else Principal(digest[:12], record.value["tenant"],
                                                              record.value["role"])
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (now, principal)
        if principal is None:
            raise Unauthenticated("unknown or revoked token")
        return principal
