"""etcd store: objects under a key prefix, revision = etcd mod_revision, CAS via etcd transactions.

etcd is the Raft store; this module adds no consensus of its own. Each object is one key,
`<prefix>/<kind>/<namespace>/<name>` (components percent-encoded), holding the JSON value.

Events: a watch stream over this prefix (all the etcd role lets us read) feeds a local log of its
events; the last event seen is the revision the log is complete up to. `events_since` first waits
until the log has reached every revision an answer from etcd has shown this process
(read-your-writes, and "every event up to `revision()` is in the answer"). Revisions that changed
only keys outside the prefix never reach the stream (the JSON gateway cannot ask for watch progress
notifications), so when the log stays behind for `SYNC_MARK_AFTER_S`, the store writes its marker key
`<prefix>/_sync` (not an object: never listed) and waits for the stream to deliver that write — every
event before it has then arrived. Older revisions are replayed from etcd's history, and raise
`Compacted` once etcd has compacted them. The stream resumes from the next revision after a
disconnect; after a compaction gap the log restarts, so older readers re-list.

Security: `EtcdSecurity` (TLS files, etcd user; from the etcd:// URL's query or $VNSTITCH_ETCD_*).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
import time
from typing import Any, Iterable, Sequence
from urllib.parse import quote, unquote

from vnstitch.errors import StoreUnavailable
from vnstitch.store.base import (
    Compacted, Compare, Delete, Event, LeaseNotFound, Op, Put, Record, Store, TxnResult,
)
from vnstitch.store.etcd_http import (
    AuthTokenInvalid, EtcdSecurity, GatewayClient, WatchStream, b64, prefix_end, unb64,
)

log = logging.getLogger("vnstitch.store.etcd")

HISTORY_LIMIT = 100_000      # prefix events kept in memory; older ones are replayed from etcd
DEFAULT_PREFIX = "vnstitch"
SYNC_MARK_AFTER_S = 0.05     # the watch still behind after this long: write the marker key
SYNC_KEY = "_sync"


class EtcdStore(Store):
    """Store over an etcd cluster (3.4/3.5) through its JSON gateway."""

    replicated = True  # capability: several controller processes share it (leader election applies)

    def __init__(self, endpoints: list[str], prefix: str = DEFAULT_PREFIX, timeout_s: float = 3.0,
                 sync_timeout_s: float = 5.0, history_limit: int = HISTORY_LIMIT,
                 security: EtcdSecurity | None = None):
        self._client = GatewayClient(endpoints, timeout_s, security=security)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._prefix = (self.prefix + "/").encode()
        self._mark_lock = threading.Lock()
        self._sync_timeout_s = sync_timeout_s
        self._history_limit = history_limit
        self._cond = threading.Condition()
        self._events: list[Event] = []   # this prefix's events in (log_start, synced], oldest first
        self._event_revs: list[int] = []
        self._closed = False
        self._stream: WatchStream | None = None
        self.watch_error: str | None = None
        self._known = 0  # the highest revision any answer from etcd has shown this process
        start = self._header_revision(self._client.call("/v3/kv/range", self._count_body(), idempotent=True))
        self._log_start = self._synced = self._known = start
        self._watcher = threading.Thread(target=self._watch_loop, name="vnstitch-etcd-watch", daemon=True)
        self._watcher.start()

    # keys ------------------------------------------------------------------------------
    def _key(self, kind: str, namespace: str, name: str) -> bytes:
        return self._prefix + "/".join(quote(part, safe="") for part in (kind, namespace, name)).encode()

    def _kind_prefix(self, kind: str, namespace: str | None) -> bytes:
        parts = [quote(kind, safe="")] + ([] if namespace is None else [quote(namespace, safe="")])
        return self._prefix + ("/".join(parts) + "/").encode()

    def _record(self, kv: dict[str, Any], value_kv: dict[str, Any] | None = None) -> Record | None:
        key = unb64(kv["key"])
        if not key.startswith(self._prefix):
            return None
        parts = key[len(self._prefix):].decode().split("/")
        if len(parts) != 3:
            return None
        kind, namespace, name = (unquote(p) for p in parts)
        source = value_kv if value_kv is not None else kv
        raw = unb64(source.get("value"))
        lease = int(source.get("lease", 0)) or None
        return Record(kind, namespace, name, json.loads(raw) if raw else {}, int(kv.get("mod_revision", 0)),
                      int(source.get("create_revision", 0)), lease if value_kv is None else None)

    def _count_body(self) -> dict[str, Any]:
        return {"key": b64(self._prefix), "range_end": b64(prefix_end(self._prefix)), "count_only": True}

    def _header_revision(self, answer: dict[str, Any]) -> int:
        revision = int(answer.get("header", {}).get("revision", 0))
        with self._cond:
            if revision > self._known:
                self._known = revision
        return revision

    # reads -----------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> Record | None:
        answer = self._client.call("/v3/kv/range", {"key": b64(self._key(kind, namespace, name))}, idempotent=True)
        self._header_revision(answer)
        kvs = answer.get("kvs") or []
        return self._record(kvs[0]) if kvs else None

    def list(self, kind: str, namespace: str | None = None) -> list[Record]:
        start = self._kind_prefix(kind, namespace)
        answer = self._client.call("/v3/kv/range", {"key": b64(start), "range_end": b64(prefix_end(start))},
                                   idempotent=True)
        self._header_revision(answer)
        records = [r for r in (self._record(kv) for kv in answer.get("kvs") or []) if r is not None]
        return sorted(records, key=lambda r: (r.namespace, r.name))

    def snapshot(self, kinds: Iterable[str] | None = None) -> tuple[int, list[Record]]:
        """Every object (of `kinds`) as of one revision: for consistency checks and backups."""
        revision = self.revision()
        answer = self._client.call("/v3/kv/range", {"key": b64(self._prefix), "range_end": b64(prefix_end(self._prefix)),
                                                    "revision": str(revision)}, idempotent=True)
        wanted = set(kinds) if kinds is not None else None
        records = [r for r in (self._record(kv) for kv in answer.get("kvs") or [])
                   if r is not None and (wanted is None or r.kind in wanted)]
        return revision, records

    def revision(self) -> int:
        """The cluster's current revision (a linearizable read: fails with 503 without quorum)."""
        return self._header_revision(self._client.call("/v3/kv/range", self._count_body(), idempotent=True))

    # writes ----------------------------------------------------------------------------
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        by_key: dict[bytes, Op] = {}
        for op in ops:  # etcd refuses two ops on one key in a txn; the last one wins, as in sequence
            by_key[self._key(op.kind, op.namespace, op.name)] = op
        success = []
        for key, op in by_key.items():
            if isinstance(op, Put):
                put = {"key": b64(key), "value": b64(json.dumps(op.value, separators=(",", ":")).encode())}
                if op.lease is not None:
                    put["lease"] = str(op.lease)
                success.append({"request_put": put})
            elif isinstance(op, Delete):
                success.append({"request_delete_range": {"key": b64(key)}})
        compare_keys = {c: self._key(c.kind, c.namespace, c.name) for c in compares}
        body = {
            "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(c.revision)}
                        for c, key in compare_keys.items()],
            "success": success,
            # on failure, read the compared keys in the same transaction to say which compares failed
            "failure": [{"request_range": {"key": b64(key), "keys_only": True}}
                        for key in dict.fromkeys(compare_keys.values())],
        }
        answer = self._client.call("/v3/kv/txn", body, idempotent=False)
        revision = self._header_revision(answer)
        if answer.get("succeeded"):
            return TxnResult(True, revision)
        current: dict[str, int] = {}
        for response in answer.get("responses") or []:
            for kv in response.get("response_range", {}).get("kvs") or []:
                current[kv["key"]] = int(kv.get("mod_revision", 0))
        failed = [c for c, key in compare_keys.items() if current.get(b64(key), 0) != c.revision]
        return TxnResult(False, revision, failed)

    def compact(self, revision: int) -> None:
        """Drop etcd's history before `revision` (operators run etcd's auto-compaction instead)."""
        self._client.call("/v3/kv/compaction", {"revision": str(revision), "physical": True}, idempotent=True)

    # events ----------------------------------------------------------------------------
    def events_since(self, revision: int, kinds: Iterable[str] | None = None,
                     limit: int = 10_000) -> list[Event]:
        with self._cond:
            target = self._known
        self._await_sync(target)
        with self._cond:
            log_start = self._log_start
            first = bisect.bisect_right(self._event_revs, max(revision, log_start))
            recent = self._events[first:]
        older = self._history(revision, log_start) if revision < log_start else []
        wanted = set(kinds) if kinds is not None else None
        out = [e for e in older + recent if wanted is None or e.record.kind in wanted]
        return out[:limit]

    def wait(self, revision: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._synced <= revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def synced_revision(self) -> int:
        """The revision up to which this process has seen every event."""
        with self._cond:
            return self._synced

    def _await_sync(self, target: int) -> None:
        deadline = time.monotonic() + self._sync_timeout_s
        with self._cond:
            self._cond.wait_for(lambda: self._synced >= target, SYNC_MARK_AFTER_S)
            behind = self._synced < target
        if behind:  # revisions outside the prefix, which the stream never delivers: pass them with a write
            self._mark(target)
        restarted = False
        with self._cond:
            while self._synced < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreUnavailable(f"etcd watch is behind: seen revision {self._synced}, need {target}"
                                           + (f" ({self.watch_error})" if self.watch_error else ""))
                if not restarted and remaining < self._sync_timeout_s / 2:
                    restarted = True  # a stream on a member cut off from the quorum: try another
                    self._restart_watch()
                self._cond.wait(min(remaining, 0.1))

    def _mark(self, target: int = 0) -> int:
        """Write the marker key (one writer at a time; none when the log has reached `target` meanwhile);
        the revision of the write, which the stream will deliver like any event of the prefix."""
        with self._mark_lock:
            with self._cond:
                if target and self._synced >= target:
                    return self._synced
            answer = self._client.call("/v3/kv/put", {"key": b64(self._prefix + SYNC_KEY.encode()),
                                                      "value": b64(b"")}, idempotent=True)
            return self._header_revision(answer)

    def _watch_request(self, start: int) -> dict[str, Any]:
        return {"key": b64(self._prefix), "range_end": b64(prefix_end(self._prefix)),
                "start_revision": str(start), "prev_kv": True}

    def _history(self, after: int, upto: int) -> list[Event]:
        """This prefix's events in (after, upto], replayed from etcd (raises Compacted)."""
        if upto <= max(after, 1):  # revision 1 is the empty cluster: no event
            return []
        self._mark()  # a write after `upto` in the prefix: the replay knows when it has passed `upto`
        stream = WatchStream(self._client.endpoint, self._watch_request(after + 1), client=self._client)
        timer = threading.Timer(self._sync_timeout_s, stream.close)
        timer.start()
        out: list[Event] = []
        try:
            for response in stream:
                if response.get("canceled"):
                    if int(response.get("compact_revision", 0)):
                        raise Compacted(f"revision {after} is compacted (oldest kept: "
                                        f"{response['compact_revision']})")
                    raise StoreUnavailable(f"etcd watch canceled: {response.get('cancel_reason', '')}")
                newest = 0
                for raw in response.get("events") or []:
                    newest = int(raw["kv"].get("mod_revision", 0))
                    if newest <= upto:
                        event = self._event(raw)
                        if event is not None:
                            out.append(event)
                if newest >= upto:
                    return out
        except Exception as exc:  # noqa: BLE001 - re-raised as ours below
            if isinstance(exc, (Compacted, StoreUnavailable)):
                raise
            raise StoreUnavailable(f"replaying etcd history failed: {type(exc).__name__}: {exc}") from None
        finally:
            timer.cancel()
            stream.close()
        raise StoreUnavailable(f"replaying etcd history from {after} did not reach {upto} "
                               f"within {self._sync_timeout_s:g} s")

    def _event(self, raw: dict[str, Any]) -> Event | None:
        kv = raw["kv"]
        if raw.get("type") == "DELETE":
            record = self._record(kv, raw.get("prev_kv") or {})
            return Event("DELETE", record, record.revision) if record else None
        record = self._record(kv)
        return Event("PUT", record, record.revision) if record else None

    # the watch stream ----------------------------------------------------------------------
    def _watch_loop(self) -> None:
        backoff = 0.05
        while not self._closed:
            endpoint = self._client.endpoint
            with self._cond:
                start = self._synced + 1
            stream = WatchStream(endpoint, self._watch_request(start), client=self._client)
            with self._cond:
                if self._closed:
                    break
                self._stream = stream
            try:
                for response in stream:
                    if response.get("canceled"):
                        if int(response.get("compact_revision", 0)):
                            self._restart_after_gap(int(response["compact_revision"]))
                            break
                        raise StoreUnavailable(f"watch canceled: {response.get('cancel_reason', '')}")
                    self.watch_error = None
                    backoff = 0.05
                    if response.get("events"):
                        self._ingest(response["events"])
            except Exception as exc:  # noqa: BLE001 - the stream broke: note it, reconnect elsewhere
                if self._closed:
                    break
                if isinstance(exc, AuthTokenInvalid):
                    self._client.drop_token()
                self.watch_error = f"{endpoint}: {type(exc).__name__}: {exc}"
                log.debug("etcd watch on %s broke: %s", endpoint, exc)
                self._client.rotate(endpoint)
                time.sleep(backoff)
                backoff = min(1.0, backoff * 2)
            finally:
                stream.close()

    def _ingest(self, raw_events: list[dict[str, Any]]) -> None:
        with self._cond:
            for raw in raw_events:
                revision = int(raw["kv"].get("mod_revision", 0))
                if revision < self._synced:
                    continue  # already seen (the stream resumes at synced + 1; defensive)
                event = self._event(raw)
                if event is not None:
                    self._events.append(event)
                    self._event_revs.append(revision)
                self._synced = max(self._synced, revision)
            if len(self._events) > self._history_limit * 1.1:
                drop = len(self._events) - self._history_limit
                self._log_start = self._event_revs[drop - 1]
                del self._events[:drop]
                del self._event_revs[:drop]
            if self._synced > self._known:
                self._known = self._synced
            self._cond.notify_all()

    def _restart_after_gap(self, compact_revision: int) -> None:
        """The stream cannot resume (history compacted): restart the log at the current revision."""
        while not self._closed:
            try:
                current = self.revision()
                break
            except StoreUnavailable:
                time.sleep(0.2)
        else:
            return
        log.warning("etcd history compacted at %d past our revision %d: readers older than %d re-list",
                    compact_revision, self._synced, current)
        with self._cond:
            self._events.clear()
            self._event_revs.clear()
            self._log_start = self._synced = current
            self._cond.notify_all()

    def _restart_watch(self) -> None:
        stream = self._stream
        if stream is not None:
            stream.close()  # the watch loop moves to the next endpoint and resumes

    # leases ----------------------------------------------------------------------------
    def lease_grant(self, ttl_s: float) -> int:
        """etcd counts TTLs in whole seconds (and raises very short ones to its minimum)."""
        answer = self._client.call("/v3/lease/grant", {"TTL": str(max(1, math.ceil(ttl_s)))}, idempotent=True)
        return int(answer["ID"])

    def lease_keepalive(self, lease: int) -> None:
        answer = self._client.call("/v3/lease/keepalive", {"ID": str(lease)}, idempotent=True)
        if int(answer.get("TTL", 0)) <= 0:
            raise LeaseNotFound(f"lease {lease} does not exist or has expired")

    def lease_revoke(self, lease: int) -> None:
        try:
            answer = self._client.call("/v3/lease/revoke", {"ID": str(lease)}, idempotent=True)
            self._header_revision(answer)
        except LeaseNotFound:
            pass

    def lease_ttl(self, lease: int) -> float:
        """Seconds the lease has left (0 when gone)."""
        answer = self._client.call("/v3/lease/timetolive", {"ID": str(lease)}, idempotent=True)
        return max(0.0, float(answer.get("TTL", 0)))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            stream = self._stream
        if stream is not None:
            stream.close()
        self._watcher.join(5.0)
        self._client.close()

    @property
    def endpoint(self) -> str:
        return self._client.endpoint


def parse_url(rest: str) -> tuple[list[str], str]:
    """'h1:2379,h2:2379/prefix' → (['h1:2379', 'h2:2379'], 'prefix') (a '?query' is `parse_options`')."""
    hosts, _, prefix = rest.partition("?")[0].partition("/")
    endpoints = [h.strip() for h in hosts.split(",") if h.strip()]
    return endpoints, prefix.strip("/") or DEFAULT_PREFIX


def parse_options(rest: str) -> EtcdSecurity:
    """'h1:2379/prefix?cacert=/ca.pem&cert=/c.pem&key=/c.key&user=vnstitch&password-file=/pw' → EtcdSecurity
    (options left out come from $VNSTITCH_ETCD_CACERT, _CERT, _KEY, _USER, _PASSWORD_FILE)."""
    from urllib.parse import parse_qsl

    query = rest.partition("?")[2]
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        from vnstitch.errors import InvalidInput

        raise InvalidInput(f"bad etcd URL options '{query}' (use ?cacert=…&cert=…&key=…)", field="--store") from None
    return EtcdSecurity.from_options(dict(pairs))
