"""Digests of applied documents, so that re-applying an unchanged file need not parse it again.

As `kubectl apply` keeps the last applied configuration, an apply keeps, for each VirtualNetwork and
Stitch it read from a file, the digest of the document's text and the fingerprint of the object that
text produced (its spec, labels and annotations as stored). The next apply of the same text finds the
object by the digest and, when the stored object still has that fingerprint, knows it unchanged
without parsing the document. It is only a cache: an entry that no longer matches its object just
means the document is parsed as before, so nothing depends on it being complete or current.

Stored as APPLIED_KIND objects, one per shard of the object keys, so each stays small (etcd's value
limit) and an apply rewrites only the shards of the objects it read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from typing import Iterable, Mapping

from vnstitch.store.base import Compare, Put, Record, Store

APPLIED_KIND = "AppliedDocuments"
SHARDS = 256
Key = tuple[str, str, str]


def fingerprint(value: Mapping) -> str:
    """What decides whether a stored object is unchanged by an apply (Controller._envelope compares the
    same three parts), as a digest of their canonical JSON: equal fingerprints imply equal parts."""
    metadata = value.get("metadata") or {}
    parts = [value.get("spec"), metadata.get("labels") or {}, metadata.get("annotations") or {}]
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def shard_of(key: Key) -> str:
    """The shard (an APPLIED_KIND object's name) that holds the entry of object `key`."""
    return f"{zlib.crc32('/'.join(key).encode()) % SHARDS:02x}"


def _entry(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 3


def _name(key: Key) -> str:
    return "/".join(key)


def _key(name: str) -> Key:
    kind, namespace, rest = name.split("/", 2)
    return (kind, namespace, rest)


class AppliedTable:
    """Every shard as read once from the store: digest → (object key, fingerprint), and the records to
    guard and merge into when an apply writes new entries."""

    def __init__(self, records: Iterable[Record]):
        self.records: dict[str, Record] = {record.name: record for record in records}

    @functools.cached_property
    def by_digest(self) -> dict[str, tuple[Key, str, int]]:
        """digest → (object key, fingerprint, revision of the object that had it)."""
        out = {}
        for record in self.records.values():
            for name, entry in record.value.get("entries", {}).items():
                if _entry(entry) and name.count("/") >= 2:  # else not one of ours: unused
                    digest, print_, revision = entry
                    out[digest] = (_key(name), print_, revision or record.revision)
        return out

    @classmethod
    def read(cls, store: Store) -> "AppliedTable":
        return cls(store.list(APPLIED_KIND))

    def writes(self, entries: Mapping[Key, tuple[str, str, int | None]]) -> tuple[list[Compare], list[Put]]:
        """Compares and puts that record `entries` (key → (digest, fingerprint, revision of the object that
        has it; None: the revision this very transaction writes it at, which is the shard's own)), one put
        per shard whose entries change, each guarded by the revision it was read at."""
        by_shard: dict[str, dict[str, list]] = {}
        for key, entry in entries.items():
            by_shard.setdefault(shard_of(key), {})[_name(key)] = list(entry)
        compares, puts = [], []
        for shard, new in sorted(by_shard.items()):
            record = self.records.get(shard)
            old = record.value.get("entries", {}) if record is not None else {}

            def in_full(entry):  # an entry with its revision written out
                return [*entry[:2], record.revision] if _entry(entry) and entry[2] is None else entry

            if all(entry[2] is not None and in_full(old.get(name)) == entry for name, entry in new.items()):
                continue
            kept = {name: in_full(entry) for name, entry in old.items()}
            compares.append(Compare(APPLIED_KIND, "", shard, record.revision if record is not None else 0))
            puts.append(Put(APPLIED_KIND, "", shard, {"entries": {**kept, **new}}))
        return compares, puts


__all__ = ["APPLIED_KIND", "AppliedTable", "fingerprint", "shard_of"]
