"""Server settings; the composition root fills them from flags. No default secrets live here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    store_url: str | None = None        # None: vnstitch.store.default_store_url()
    driver: str = "sim"
    driver_state: str | None = None
    dev: bool = False                   # make and print an admin token when none exists
    reconcile: bool = True              # run the reconciler inside the server
    tick_s: float = 5.0                 # reconcile at least this often (and on store changes)
    reconcile_min_interval_s: float = 0.5   # debounce passes triggered by bursts of writes
    create_batch_max: int = 64          # concurrent creates committed in one transaction
    max_body_bytes: int = 1 << 20
    rate_limit_per_s: float = 200.0     # per token; 0 disables
    rate_limit_burst: int = 400
    quota_stitches: int = 1000          # per tenant
    quota_bandwidth_bps: float = 1e12   # per tenant, sum of spec.bandwidth of its stitches
    idempotency_ttl_s: float = 24 * 3600.0
    idempotency_wait_s: float = 10.0    # how long a duplicate waits for the first request
    token_cache_s: float = 1.0          # a revoked token stops working within this time
    watch_max_s: int = 3600
    leader_election: bool | None = None  # None: on when the store is shared by replicas (etcd)
    leader_ttl_s: float = 10.0          # lease TTL of the leader key (failover ≈ TTL + 1 s)
    replica_id: str | None = None       # None: host:pid:random
    relist_s: float = 300.0             # the leader re-lists the whole cache this often
    proactive: bool = False             # run the proactive loop (ForecastPolicies) in the leader's reconciler
    telemetry_url: str | None = None    # None: beside the state store (vnstitch.telemetry.store)
    model_dir: str | None = None        # trained model artifacts; None: `<state store>.models/` or user data dir
    telemetry_from_driver: bool = True  # with --proactive: the driver's per-pair counters are a telemetry source
    prometheus_config: str | None = None  # with --proactive: a Prometheus source (telemetry.prometheus.load_source)
    advertise_url: str | None = None    # where the other replicas reach this one's API (telemetry replication);
                                        # None with a replicated store: telemetry stays replica-local
    gc_freeze: bool = False             # freeze the start-up heap out of full GC passes (`vnstitch serve`:
                                        # on; off for apps made and dropped within one process, as in tests)
