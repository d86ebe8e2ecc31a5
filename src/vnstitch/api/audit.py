"""The audit log: one row per write that reached an API route — who (token id, tenant, role; never the
token), what (method, path, resource), the outcome (status code) — in a bounded, append-only SQLite table.

It lives in a file of its own beside a SQLite state store (`state.db` → `state.audit.db`), so that
recording never competes with the state's write lock; in memory beside a memory store; and, with an
etcd store, in a replica-local file under the user data dir: each replica records the writes it served
(etcd keeps the state, not a second copy of every request). `$VNSTITCH_AUDIT` names another file.
Rows are queued by the request and written by one thread in batches; `query` first waits for the queue.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import threading
import weakref
from dataclasses import asdict, dataclass
from typing import Optional

log = logging.getLogger("vnstitch.api.audit")

MAX_ROWS = 100_000          # the oldest rows beyond this are dropped (in steps of MAX_ROWS // 10)
MEMORY = ":memory:"
WRITER_IDLE_S = 1.0         # the writer thread ends after this long without entries (and restarts on the next)
_open_logs: "weakref.WeakSet[AuditLog]" = weakref.WeakSet()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,               -- unix seconds
    time TEXT NOT NULL,             -- the same instant, RFC 3339 (UTC)
    token_id TEXT,                  -- sha256 prefix of the token; NULL when no known token was sent
    tenant TEXT,                    -- the token's tenant
    role TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT,                      -- the resource written, where known
    name TEXT,
    resource_tenant TEXT,
    status INTEGER NOT NULL,
    outcome TEXT NOT NULL,          -- ok (2xx/3xx), refused (4xx), failed (5xx)
    error TEXT,                     -- the error code of a refused or failed write
    request_id TEXT,                -- the client's X-Request-Id, if it sent one
    detail TEXT                     -- e.g. 'samples=120' for a telemetry batch, the objects of an apply
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
_COLUMNS = ("ts", "time", "token_id", "tenant", "role", "method", "path", "kind", "name", "resource_tenant",
            "status", "outcome", "error", "request_id", "detail")


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    time: str
    token_id: Optional[str]
    tenant: Optional[str]
    role: Optional[str]
    method: str
    path: str
    kind: Optional[str]
    name: Optional[str]
    resource_tenant: Optional[str]
    status: int
    outcome: str
    error: Optional[str] = None
    request_id: Optional[str] = None
    detail: Optional[str] = None

    def wire(self) -> dict:
        """The JSON form of GET /v1/audit and `vnstitch audit -o json`."""
        body = asdict(self)
        return {"time": body["time"], "unixTime": body["ts"],
                "principal": {"tokenId": self.token_id, "tenant": self.tenant, "role": self.role},
                "method": self.method, "path": self.path,
                "resource": {"kind": self.kind, "tenant": self.resource_tenant, "name": self.name},
                "status": self.status, "outcome": self.outcome, "error": self.error,
                "requestId": self.request_id, "detail": self.detail}


def outcome_of(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "failed"


def default_audit_path(state_store=None) -> str:
    """$VNSTITCH_AUDIT; else beside a SQLite state store, in memory beside a memory store, and a
    replica-local file under the user data dir otherwise (etcd)."""
    from vnstitch.store.memory import MemoryStore
    from vnstitch.store.sqlite import SQLiteStore

    if os.environ.get("VNSTITCH_AUDIT"):
        return os.environ["VNSTITCH_AUDIT"]
    if isinstance(state_store, SQLiteStore):
        return _beside(state_store.path)
    if isinstance(state_store, MemoryStore):
        return MEMORY
    return _replica_local()


def audit_path_for_url(store_url: str) -> str | None:
    """The audit file a server on `store_url` writes (None for memory://: nothing outlives the process)."""
    if os.environ.get("VNSTITCH_AUDIT"):
        return os.environ["VNSTITCH_AUDIT"]
    scheme, _, rest = store_url.partition("://")
    if scheme == "memory":
        return None
    if scheme == "sqlite":
        return _beside(rest)
    return _replica_local()


def _beside(state_path: str) -> str:
    stem, _ = os.path.splitext(os.path.abspath(state_path))
    return f"{stem}.audit.db"


def _replica_local() -> str:
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("vnstitch"), "audit.db")


class AuditLog:
    """Append-only rows in SQLite, bounded to `max_rows`; `record` never blocks on the disk."""

    def __init__(self, path: str = MEMORY, max_rows: int = MAX_ROWS):
        self.path = path
        self.max_rows = max_rows
        if path != MEMORY:
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 10000")
        if path != MEMORY:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._queue: queue.Queue[AuditEntry | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_guard = threading.Lock()
        self._closed = False
        _open_logs.add(self)

    def record(self, entry: AuditEntry) -> None:
        if self._closed:
            log.warning("audit log closed: dropped %s %s (%d)", entry.method, entry.path, entry.status)
            return
        with self._writer_guard:
            self._queue.put(entry)
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="vnstitch-audit", daemon=True)
                self._writer.start()

    def flush(self) -> None:
        """Wait until every recorded entry is in the table."""
        if self._writer is not None:
            self._queue.join()

    def query(self, since: float | None = None, tenant: str | None = None, principal: str | None = None,
              limit: int = 1000) -> list[AuditEntry]:
        """The newest `limit` entries matching, oldest first. `tenant` matches the token's tenant or the
        resource's; `principal` is a token id or a prefix of one."""
        self.flush()
        where, args = [], []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if tenant is not None:
            where.append("(tenant = ? OR resource_tenant = ?)")
            args += [tenant, tenant]
        if principal is not None:
            where.append("substr(token_id, 1, ?) = ?")
            args += [len(principal), principal]
        sql = (f"SELECT {', '.join(_COLUMNS)} FROM audit" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY id DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, [*args, limit]).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._writer_guard:
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join(10.0)
        with self._lock:
            self._db.close()

    def _write_loop(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=WRITER_IDLE_S)]
            except queue.Empty:
                with self._writer_guard:
                    if self._queue.empty():
                        self._writer = None
                        return
                continue
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [e for e in batch if e is not None]
            try:
                if entries:
                    self._insert(entries)
            except Exception:  # noqa: BLE001 - never silent: the rows are named in the log
                log.exception("audit log: could not write %d entries to %s (first: %s %s)", len(entries),
                              self.path, entries[0].method, entries[0].path)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(entries) != len(batch):
                return

    def _insert(self, entries: list[AuditEntry]) -> None:
        marks = ", ".join("?" * len(_COLUMNS))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({marks})",
                                     [tuple(getattr(e, c) for c in _COLUMNS) for e in entries])
                newest = self._db.execute("SELECT MAX(id) FROM audit").fetchone()[0] or 0
                oldest = self._db.execute("SELECT MIN(id) FROM audit").fetchone()[0] or 0
                if newest - oldest + 1 > self.max_rows + max(1, self.max_rows // 10):
                    self._db.execute("DELETE FROM audit WHERE id <= ?", (newest - self.max_rows,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise


@atexit.register
def _close_open_logs() -> None:
    """Write what is queued before the process ends (a server stopped by SIGTERM exits through here)."""
    for audit in list(_open_logs):
        audit.close()


def read_audit_file(path: str, **filters) -> list[AuditEntry]:
    """Entries from an audit file on disk (for `vnstitch audit --store`); [] when there is none yet."""
    if not os.path.exists(path):
        return []
    audit = AuditLog(path)
    try:
        return audit.query(**filters)
    finally:
        audit.close()


def open_audit_log(state_store=None, path: str | None = None) -> AuditLog:
    return AuditLog(path or default_audit_path(state_store))


def install(app, state_store, clock) -> AuditLog:
    """The composition root's one call: the audit log beside the state store, and the middleware that fills it."""
    from vnstitch.api.middleware import AuditTrail

    audit = open_audit_log(state_store)
    app.state.audit = audit
    app.add_middleware(AuditTrail, audit=audit, clock=clock)
    return audit
