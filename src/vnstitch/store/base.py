"""The state-store contract: versioned objects, compare-and-swap transactions, watch, leases.

Shaped after etcd so that an etcd backend fits: one global revision that every successful
transaction bumps by one; each object keeps the revision that created and last modified it;
a transaction is a list of compares (object at revision R, or 0 = absent) and a list of puts
and deletes applied all-or-nothing.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, Union

from vnstitch.errors import Conflict, VnstitchError


@dataclass(frozen=True)
class Record:
    kind: str
    namespace: str
    name: str
    value: dict[str, Any]
    revision: int            # mod revision
    create_revision: int
    lease: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Compare:
    """Holds when the object's mod revision equals `revision` (0: the object is absent)."""

    kind: str
    namespace: str
    name: str
    revision: int


@dataclass(frozen=True)
class Put:
    kind: str
    namespace: str
    name: str
    value: dict[str, Any]
    lease: int | None = None


@dataclass(frozen=True)
class Delete:
    kind: str
    namespace: str
    name: str


Op = Union[Put, Delete]


@dataclass(frozen=True)
class Event:
    type: str        # "PUT" | "DELETE"
    record: Record   # for DELETE: the object as it was, with the deleting revision
    revision: int


class Compacted(VnstitchError):
    """The requested watch revision is older than the retained history: re-list."""

    code = "compacted"
    http_status = 410


class LeaseNotFound(VnstitchError):
    code = "lease_not_found"
    http_status = 404


@dataclass
class TxnResult:
    succeeded: bool
    revision: int
    failed: list[Compare] = field(default_factory=list)


class Store(abc.ABC):
    """Versioned object store. All methods are thread-safe."""

    @abc.abstractmethod
    def get(self, kind: str, namespace: str, name: str) -> Record | None: ...

    @abc.abstractmethod
    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        """Objects of a kind (in one namespace, or all when None), sorted by (namespace, name)."""

    @abc.abstractmethod
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply `ops` atomically iff every compare holds; one new revision on success."""

    @abc.abstractmethod
    def revision(self) -> int: ...

    @abc.abstractmethod
    def events_since(self, revision: int, kinds: Iterable[str] | None = None,
                     limit: int = 10_000) -> list[Event]:
        """Events with revision > `revision`, oldest first; raises Compacted when too old."""

    @abc.abstractmethod
    def wait(self, revision: int, timeout_s: float) -> bool:
        """Block until the store revision exceeds `revision` or the timeout passes."""

    @abc.abstractmethod
    def lease_grant(self, ttl_s: float) -> int: ...

    @abc.abstractmethod
    def lease_keepalive(self, lease: int) -> None:
        """Renew a lease for another TTL; raises LeaseNotFound once it has expired."""

    @abc.abstractmethod
    def lease_revoke(self, lease: int) -> None:
        """End a lease now, deleting the objects attached to it."""

    def close(self) -> None:
        """Release connections."""

    # Conveniences over txn, shared by every backend.
    def put(self, kind: str, namespace: str, name: str, value: dict[str, Any],
            expect_revision: int | None = None, lease: int | None = None) -> int:
        """Write one object; with `expect_revision` a CAS (0 = must not exist). Returns the revision."""
        compares = [] if expect_revision is None else [Compare(kind, namespace, name, expect_revision)]
        result = self.txn(compares, [Put(kind, namespace, name, value, lease)])
        if not result.succeeded:
            current = self.get(kind, namespace, name)
            if expect_revision == 0:
                raise Conflict(f"{kind} '{name}' already exists", field="metadata.name")
            raise Conflict(f"{kind} '{name}' was changed concurrently (expected revision "
                           f"{expect_revision}, found {current.revision if current else 'none'})")
        return result.revision

    def delete(self, kind: str, namespace: str, name: str, expect_revision: int | None = None) -> bool:
        """Delete one object; False when it did not exist."""
        current = self.get(kind, namespace, name)
        if current is None:
            return False
        revision = current.revision if expect_revision is None else expect_revision
        result = self.txn([Compare(kind, namespace, name, revision)], [Delete(kind, namespace, name)])
        if not result.succeeded:
            raise Conflict(f"{kind} '{name}' was changed concurrently")
        return True

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
