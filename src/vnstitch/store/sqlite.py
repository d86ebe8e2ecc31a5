"""SQLite store: the embedded default. WAL, synchronous=FULL, one revision per transaction.

Several processes may share one file: writes serialise on SQLite's write lock
(BEGIN IMMEDIATE) and `wait` polls the revision.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Iterable, Sequence

from vnstitch.errors import StoreUnavailable
from vnstitch.store.sqlite_files import ThreadConnections
from vnstitch.store.base import (
    Compacted, Compare, Delete, Event, LeaseNotFound, Op, Put, Record, Store, TxnResult,
)

HISTORY_LIMIT = 100_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
  kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
  value TEXT NOT NULL, create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL, lease INTEGER,
  PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  rev INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, kind TEXT NOT NULL,
  namespace TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, create_rev INTEGER NOT NULL,
  PRIMARY KEY (rev, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted_before', 0);
"""


class SQLiteStore(Store):
    def __init__(self, path: str, history_limit: int = HISTORY_LIMIT, poll_interval_s: float = 0.02):
        self.path = str(path)
        self._files = ThreadConnections(self.path, "FULL", "store")
        self._history_limit = history_limit
        self._poll_interval_s = poll_interval_s
        self._write_lock = threading.RLock()
        self.write_timeout_s = 30.0  # waiting for the lock, as long as SQLite's own busy timeout
        try:
            self._db().executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot initialise store {self.path}: {exc}") from None

    # connection handling -------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        return self._files.get()

    class _Txn:
        """BEGIN IMMEDIATE … COMMIT, holding the store's in-process writer lock throughout.

        Writers in other processes meet SQLite's busy handler, which sleeps 1, 2, 5, … up to 100 ms
        between retries; threads of this process queue on the lock instead, so the API's committer
        does not sleep while the reconciler writes statuses (or the other way round)."""

        def __init__(self, db: sqlite3.Connection, lock: threading.RLock, timeout_s: float):
            self.db = db
            self.lock = lock
            self.timeout_s = timeout_s

        def __enter__(self) -> sqlite3.Connection:
            if not self.lock.acquire(timeout=self.timeout_s):
                raise StoreUnavailable(f"store is busy: another writer in this process held it for "
                                       f"{self.timeout_s:g} s")
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.lock.release()
                raise
            return self.db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                if exc_type is None:
                    self.db.execute("COMMIT")
                else:
                    self.db.execute("ROLLBACK")
            finally:
                self.lock.release()

    def _write(self) -> "_Txn":
        return self._Txn(self._db(), self._write_lock, self.write_timeout_s)

    def close(self) -> None:
        self._files.close()

    # reads -----------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Record | None:
        self._expire_leases_if_due()
        row = self._db().execute(
            "SELECT kind, namespace, name, value, mod_rev, create_rev, lease FROM objects "
            "WHERE kind=? AND namespace=? AND name=?", (kind, namespace, name)).fetchone()
        return _record(row) if row else None

    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        self._expire_leases_if_due()
        sql = "SELECT kind, namespace, name, value, mod_rev, create_rev, lease FROM objects WHERE kind=?"
        args: tuple = (kind,)
        if namespace is not None:
            sql += " AND namespace=?"
            args += (namespace,)
        # Decoded row by row: a large kind never holds every row's JSON text and its value at once.
        return [_record(row) for row in self._db().execute(sql + " ORDER BY namespace, name", args)]

    def revision(self) -> int:
        return self._db().execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]

    def events_since(self, revision: int, kinds: Iterable[str] | None = None,
                     limit: int = 10_000) -> list[Event]:
        db = self._db()
        db.execute("BEGIN")  # one read snapshot: a compaction cannot fall between the check and the read
        try:
            compacted_before = db.execute("SELECT value FROM meta WHERE key='compacted_before'").fetchone()[0]
            rows = db.execute("SELECT type, kind, namespace, name, value, rev, create_rev FROM events "
                              "WHERE rev > ? ORDER BY rev, seq", (revision,)).fetchall()
        finally:
            db.execute("COMMIT")
        if revision < compacted_before:
            raise Compacted(f"revision {revision} is compacted (oldest kept: {compacted_before})")
        wanted = set(kinds) if kinds is not None else None
        out = []
        for typ, kind, namespace, name, value, rev, create_rev in rows:
            if wanted is None or kind in wanted:
                out.append(Event(typ, Record(kind, namespace, name, json.loads(value), rev, create_rev), rev))
                if len(out) >= limit:
                    break
        return out

    def wait(self, revision: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.revision() > revision:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self._poll_interval_s, max(0.0, deadline - time.monotonic())))

    # writes ----------------------------------------------------------------------------
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        try:
            with self._write() as db:
                self._expire_leases(db)
                revision = db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]
                failed = [c for c in compares if _mod_rev(db, c) != c.revision]
                if failed:
                    return TxnResult(False, revision, failed)
                if not ops:
                    return TxnResult(True, revision)
                for op in ops:
                    if isinstance(op, Put) and op.lease is not None and not db.execute(
                            "SELECT 1 FROM leases WHERE id=?", (op.lease,)).fetchone():
                        raise LeaseNotFound(f"lease {op.lease} does not exist or has expired")
                revision += 1
                self._apply(db, ops, revision)
                return TxnResult(True, revision)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"store {self.path}: {exc}") from None

    def _apply(self, db: sqlite3.Connection, ops: Sequence[Op], revision: int) -> None:
        for seq, op in enumerate(ops):
            if isinstance(op, Put):
                value = json.dumps(op.value, separators=(",", ":"))
                row = db.execute("SELECT create_rev FROM objects WHERE kind=? AND namespace=? AND name=?",
                                 (op.kind, op.namespace, op.name)).fetchone()
                create_rev = row[0] if row else revision
                db.execute("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?,?,?)",
                           (op.kind, op.namespace, op.name, value, create_rev, revision, op.lease))
                db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                           (revision, seq, "PUT", op.kind, op.namespace, op.name, value, create_rev))
            elif isinstance(op, Delete):
                row = db.execute("SELECT value, create_rev FROM objects WHERE kind=? AND namespace=? AND name=?",
                                 (op.kind, op.namespace, op.name)).fetchone()
                if row is None:
                    continue
                db.execute("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                           (op.kind, op.namespace, op.name))
                db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
                           (revision, seq, "DELETE", op.kind, op.namespace, op.name, row[0], row[1]))
        db.execute("UPDATE meta SET value=? WHERE key='revision'", (revision,))
        if revision % 1000 == 0:
            self._compact(db, revision)

    def _compact(self, db: sqlite3.Connection, revision: int) -> None:
        keep_from = revision - self._history_limit
        if keep_from > 0:
            db.execute("DELETE FROM events WHERE rev <= ?", (keep_from,))
            db.execute("UPDATE meta SET value=? WHERE key='compacted_before'", (keep_from,))

    # leases ----------------------------------------------------------------------------
    def lease_grant(self, ttl_s: float) -> int:
        with self._write() as db:
            cursor = db.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl_s, time.time() + ttl_s))
            return int(cursor.lastrowid)

    def lease_keepalive(self, lease: int) -> None:
        with self._write() as db:
            self._expire_leases(db)
            row = db.execute("SELECT ttl FROM leases WHERE id=?", (lease,)).fetchone()
            if row is None:
                raise LeaseNotFound(f"lease {lease} does not exist or has expired")
            db.execute("UPDATE leases SET expires_at=? WHERE id=?", (time.time() + row[0], lease))

    def lease_revoke(self, lease: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM leases WHERE id=?", (lease,))
            self._drop_lease_objects(db, [lease])

    def _expire_leases_if_due(self) -> None:
        db = self._db()
        if db.execute("SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (time.time(),)).fetchone():
            with self._write() as wdb:
                self._expire_leases(wdb)

    def _expire_leases(self, db: sqlite3.Connection) -> None:
        expired = [row[0] for row in db.execute("SELECT id FROM leases WHERE expires_at <= ?", (time.time(),))]
        if expired:
            db.executemany("DELETE FROM leases WHERE id=?", [(lease,) for lease in expired])
            self._drop_lease_objects(db, expired)

    def _drop_lease_objects(self, db: sqlite3.Connection, leases: list[int]) -> None:
        marks = ",".join("?" * len(leases))
        keys = db.execute(f"SELECT kind, namespace, name FROM objects WHERE lease IN ({marks})", leases).fetchall()
        if keys:
            revision = db.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0] + 1
            self._apply(db, [Delete(*key) for key in keys], revision)

    def integrity_check(self) -> str:
        return self._db().execute("PRAGMA integrity_check").fetchone()[0]


def _mod_rev(db: sqlite3.Connection, compare: Compare) -> int:
    row = db.execute("SELECT mod_rev FROM objects WHERE kind=? AND namespace=? AND name=?",
                     (compare.kind, compare.namespace, compare.name)).fetchone()
    return row[0] if row else 0


def _record(row: tuple) -> Record:
    kind, namespace, name, value, mod_rev, create_rev, lease = row
    return Record(kind, namespace, name, json.loads(value), mod_rev, create_rev, lease)
