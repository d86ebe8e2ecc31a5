"""/v1/telemetry: push samples of traffic between a tenant's networks and VMs; read a series back.

A batch is validated whole (vnstitch.telemetry.validate) and stored in one transaction: a bad
sample answers 422 naming `samples[i].field` and stores nothing. Another tenant's networks are
unknown names here, exactly like names that exist nowhere."""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, json_response, resolve_tenant
from vnstitch.api.routes._crud import tenant_query
from vnstitch.domain.resources import API_VERSION, Strict
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.errors import InvalidInput, NotFound
from vnstitch.telemetry import Sample, validate_batch
from vnstitch.telemetry.replication import PATH as INTERNAL_PATH, SECRET_HEADER, ReplicatedTelemetryStore, from_wire, to_wire
from vnstitch.telemetry.store import TelemetryStore, open_telemetry_store
from vnstitch.telemetry.validate import MAX_RATE_BPS, endpoints_of

router = APIRouter(prefix="/v1", tags=["telemetry"], responses=ERRORS)
MAX_BATCH = 10_000      # samples per request (the 1 MiB body limit usually comes first: ~100 bytes each)
DEFAULT_SINCE_S = 3600.0
WIRE_NAMES = {"src": "from", "dst": "to", "rate_bps": "rateBps", "latency_s": "latency"}
_LAST_TIME = 1e11       # year 5138: a bound that keeps query times finite
COMPACT_EVERY_S = 3600.0  # retention is enforced at most this often, after a push, off the request's thread
_open_lock = threading.Lock()
log = logging.getLogger("vnstitch.api.telemetry")


class TelemetrySampleIn(Strict):
    """One measurement: the mean rate from one endpoint to another over the period ending at `time`."""

    from_: str = Field(alias="from", description="virtual network ('web') or VM ('web/vm-1') of the tenant")
    to: str = Field(description="virtual network or VM of the same tenant")
    time: float = Field(description="unix seconds, the end of the measured period; at most 300 s ahead, "
                                    "within the 14-day retention")
    rate_bps: float = Field(alias="rateBps", description=f"mean bit/s over the period, 0..{MAX_RATE_BPS:g}")
    latency: Optional[float] = Field(default=None, description="seconds, >= 0")
    loss: Optional[float] = Field(default=None, description="fraction of the offered traffic lost, 0..1")


class TelemetryPush(Strict):
    samples: list[TelemetrySampleIn] = Field(max_length=MAX_BATCH)


class TelemetryAccepted(BaseModel):
    accepted: int = Field(description="samples in the batch, all stored")
    changed: int = Field(description="rows new or corrected (a re-sent sample changes nothing)")
    replicatedTo: Optional[int] = Field(default=None, description="with several replicas: how many other "
                                        "replicas confirmed the batch before this answer (the rest retry)")


class TelemetrySampleOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    time: float
    rate_bps: float = Field(alias="rateBps")
    latency: Optional[float] = None
    loss: Optional[float] = None


class TelemetryList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    api_version: str = Field(alias="apiVersion")
    kind: str
    tenant: str
    items: list[TelemetrySampleOut]


def telemetry_store(request: Request) -> TelemetryStore:
    """The server's telemetry store, opened on first use beside the state store (`open_telemetry_store`);
    a test or the composition root may set `app.state.telemetry` first."""
    state = request.app.state
    store = getattr(state, "telemetry", None)
    if store is None:
        with _open_lock:
            store = getattr(state, "telemetry", None)
            if store is None:
                store = state.telemetry = open_telemetry_store(state_store=ctx(request).store)
    return store


def known_endpoints(request: Request, tenant: str) -> frozenset[str]:
    """The tenant's networks and 'network/vm' names, as fresh as the store."""
    context = ctx(request)
    controller = context.controller
    if context.reads is None or not context.reads.fresh():
        controller.refresh()
    networks = {}
    for record in controller.cache.list("VirtualNetwork", tenant):
        vnet = VirtualNetwork.model_validate(record.value)
        networks[vnet.name] = [member.name for member in vnet.spec.members]
    return endpoints_of(networks)


def sample_body(sample: Sample) -> dict:
    return {"from": sample.src, "to": sample.dst, "time": sample.time, "rateBps": sample.rate_bps,
            "latency": sample.latency_s, "loss": sample.loss}


@router.post("/telemetry", operation_id="pushTelemetry", summary="Push a batch of telemetry samples (all or nothing)",
             responses={200: {"model": TelemetryAccepted}})
def push_telemetry(request: Request, body: TelemetryPush, who: Principal = Depends(principal),
                   tenant: Optional[str] = tenant_query()):
    scope = resolve_tenant(who, tenant)
    who.require("member", "push telemetry")
    samples = [Sample(scope, s.from_, s.to, s.time, s.rate_bps, s.latency, s.loss) for s in body.samples]
    now = ctx(request).controller.clock()
    kept = validate_batch(samples, now, {scope: known_endpoints(request, scope)}, names=WIRE_NAMES)
    store = telemetry_store(request)
    body = {"accepted": len(samples)}
    if isinstance(store, ReplicatedTelemetryStore):  # this batch's count: concurrent pushes share the store
        body["changed"], body["replicatedTo"] = store.insert_counted(kept)
    else:
        body["changed"] = store.insert(kept)
    _compact_if_due(request, store, now)
    return json_response(body)


def _compact_if_due(request: Request, store: TelemetryStore, now: float) -> None:
    """Retention (store.compact with its defaults) once per COMPACT_EVERY_S, in a thread of its own."""
    state = request.app.state
    with _open_lock:
        if now - getattr(state, "telemetry_compacted_at", float("-inf")) < COMPACT_EVERY_S:
            return
        state.telemetry_compacted_at = now

    def run() -> None:
        try:
            result = store.compact(now)
            if result.folded or result.deleted:
                log.info("telemetry retention: %d samples folded into hourly means, %d rows dropped",
                         result.folded, result.deleted)
        except Exception:  # noqa: BLE001 - logged, never swallowed silently; the next push retries
            log.exception("telemetry compaction failed")
            with _open_lock:
                state.telemetry_compacted_at = float("-inf")
    threading.Thread(target=run, name="telemetry-compact", daemon=True).start()


@router.get("/telemetry", operation_id="readTelemetry",
            summary="Read one series (from, to, since) or the latest sample of every series",
            responses={200: {"model": TelemetryList}})
def get_telemetry(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                  from_: Optional[str] = Query(None, alias="from", min_length=1, max_length=253,
                                               description="source network or VM (with `to`)"),
                  to: Optional[str] = Query(None, min_length=1, max_length=253, description="destination"),
                  since: Optional[float] = Query(None, ge=0, le=_LAST_TIME, allow_inf_nan=False,
                                                 description="unix seconds (default: an hour ago)"),
                  until: Optional[float] = Query(None, ge=0, le=_LAST_TIME, allow_inf_nan=False,
                                                 description="unix seconds (default: no bound)"),
                  limit: int = Query(10_000, ge=1, le=100_000, description="samples at most, oldest first")):
    scope = resolve_tenant(who, tenant)
    store = telemetry_store(request)
    if from_ is None and to is None:
        samples = store.latest(scope)[:limit]
    elif from_ is None or to is None:
        missing = "from" if from_ is None else "to"
        raise InvalidInput("give both `from` and `to` for a series, or neither for the latest of every series",
                           field=missing)
    else:
        if since is None:
            since = max(0.0, ctx(request).controller.clock() - DEFAULT_SINCE_S)
        samples = store.series(scope, from_, to, since, until, limit)
    return json_response({"apiVersion": API_VERSION, "kind": "TelemetryList", "tenant": scope,
                          "items": [sample_body(s) for s in samples]})


# --- between replicas (not part of the public API: no token, the cluster's replication secret) ------

def _replicated(request: Request) -> ReplicatedTelemetryStore:
    """The replicated store, if the caller proves it is a replica; otherwise 404 as for any unknown path."""
    store = getattr(request.app.state, "telemetry", None)
    given = request.headers.get(SECRET_HEADER, "")
    if not isinstance(store, ReplicatedTelemetryStore) or not hmac.compare_digest(given.encode(), store.secret.encode()):
        raise NotFound("not found")
    return store


@router.post(INTERNAL_PATH.removeprefix("/v1"), include_in_schema=False)
async def replicated_push(request: Request):
    store = _replicated(request)
    try:
        body = await request.json()
        samples = from_wire(body["samples"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"bad replicated batch: {exc}", field="samples") from None
    changed = await run_in_threadpool(store.insert_local, samples)
    return json_response({"accepted": len(samples), "changed": changed})


@router.get(INTERNAL_PATH.removeprefix("/v1"), include_in_schema=False)
def replicated_export(request: Request, since: float = Query(0.0, ge=0, le=_LAST_TIME, allow_inf_nan=False),
                      after: Optional[str] = Query(None, max_length=1000),
                      limit: int = Query(10_000, ge=1, le=100_000)):
    store = _replicated(request)
    key = None
    if after is not None:
        parts = after.split("\x1f")
        if len(parts) != 4 or not parts[3].lstrip("-").isdigit():
            raise InvalidInput("after must be tenant, src, dst and time_ms joined by U+001F", field="after")
        key = (parts[0], parts[1], parts[2], int(parts[3]))
    return json_response({"samples": to_wire(store.export(since, key, limit))})
