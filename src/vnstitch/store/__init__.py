"""State stores behind one contract; `open_store(url)` is the only place that picks one."""

from __future__ import annotations

import os

from vnstitch.errors import InvalidInput
from vnstitch.store.base import (
    Compacted, Compare, Delete, Event, LeaseNotFound, Put, Record, Store, TxnResult,
)

STORE_SCHEMES = ("sqlite", "memory", "etcd")


def default_store_url() -> str:
    """sqlite under the user's data directory (or $VNSTITCH_STORE)."""
    if os.environ.get("VNSTITCH_STORE"):
        return os.environ["VNSTITCH_STORE"]
    from platformdirs import user_data_dir

    return f"sqlite:///{os.path.join(user_data_dir('vnstitch'), 'state.db')}"


def open_store(url: str | None = None) -> Store:
    """'sqlite:///abs/path.db', 'sqlite://rel/path.db', 'memory://' or
    'etcd://host:port[,host:port...]/prefix[?cacert=&cert=&key=&user=&password-file=]' (several
    controller replicas share one etcd cluster; TLS and etcd auth in docs/SCALE_OUT.md)."""
    url = url or default_store_url()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in STORE_SCHEMES:
        raise InvalidInput(f"unknown store '{url}' (use one of: "
                           + ", ".join(f"{s}://" for s in STORE_SCHEMES) + ")", field="--store")
    if scheme == "memory":
        from vnstitch.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "etcd":
        from vnstitch.store.etcd import EtcdStore, parse_options, parse_url

        endpoints, prefix = parse_url(rest)
        if not endpoints:
            raise InvalidInput("etcd store needs endpoints: etcd://host:port[,host:port...]/prefix",
                               field="--store")
        return EtcdStore(endpoints, prefix, security=parse_options(rest))  # ?cacert=&cert=&key=&user=&password-file=
    from vnstitch.store.sqlite import SQLiteStore

    path = rest  # sqlite:///abs/path → /abs/path; sqlite://rel/path → rel/path
    if not path:
        raise InvalidInput("sqlite store needs a path: sqlite:///path/to/state.db", field="--store")
    return SQLiteStore(path)


__all__ = ["Store", "Record", "Compare", "Put", "Delete", "Event", "TxnResult", "Compacted",
           "LeaseNotFound", "open_store", "default_store_url"]
