"""The composition root of the server: `create_app(settings)` picks the store and driver,
wires auth, limits, metrics and the in-process reconciler, and mounts one router per resource."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time
from typing import Callable

from fastapi import FastAPI, Request

from vnstitch import __version__
from vnstitch.api.audit import install as install_audit
from vnstitch.api.auth import Authenticator, create_token, has_admin
from vnstitch.api.batching import CreateBatcher
from vnstitch.api.context import ApiContext
from vnstitch.api.errors import install_error_handlers
from vnstitch.api.idempotency import IdempotencyKeys
from vnstitch.api.limits import RateLimiter, TenantUsage
from vnstitch.api.metrics import RequestMetrics
from vnstitch.api.middleware import BodyLimitAndMetrics
from vnstitch.api.reads import RenderedReads
from vnstitch.api.settings import Settings
from vnstitch.controller.service import Controller
from vnstitch.errors import InvalidInput
from vnstitch.store import Store, open_store

log = logging.getLogger("vnstitch.api")

DESCRIPTION = """Forecast-driven stitching of virtual networks. Objects are shaped like Kubernetes
resources; errors are `{code, message, field}`; authenticate with `Authorization: Bearer <token>`."""


class MissingAdminToken(InvalidInput):
    """The server refuses to start without an admin token (unless --dev)."""


def create_app(settings: Settings, store: Store | None = None, driver=None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """A ready app. `store`/`driver` may be injected (tests); otherwise chosen from settings."""
    store = store or open_store(settings.store_url)
    dev_token = None
    if not has_admin(store):
        if not settings.dev:
            raise MissingAdminToken("no admin token configured: run `vnstitch token create --tenant <t> "
                                    "--role admin` first (or `vnstitch serve --dev` for a throwaway one)",
                                    field="token")
        dev_token, _ = create_token(store, "default", "admin", description="--dev")
    controller = Controller(store, clock=clock)
    context = ApiContext(
        settings=settings, store=store, controller=controller,
        authenticator=Authenticator(store, settings.token_cache_s, clock=clock),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        idempotency=IdempotencyKeys(store, settings.idempotency_ttl_s, settings.idempotency_wait_s, clock=clock),
        metrics=RequestMetrics(), usage=TenantUsage(store))
    context.reads = RenderedReads(controller, store)
    context.creates = CreateBatcher(context, settings.create_batch_max)
    telemetry = None
    replicate = bool(getattr(store, "replicated", False) and settings.advertise_url)
    if settings.proactive or replicate:
        from vnstitch.telemetry.store import open_telemetry_store

        telemetry = open_telemetry_store(settings.telemetry_url, state_store=store)
    registry = None
    if replicate:  # several replicas: each keeps a full copy of the telemetry (telemetry.replication)
        from vnstitch.controller.election import default_identity
        from vnstitch.controller.membership import ReplicaRegistry
        from vnstitch.telemetry.replication import ReplicatedTelemetryStore

        settings = dataclasses.replace(settings, replica_id=settings.replica_id or default_identity())
        context.settings = settings  # one identity for the election and the replica list
        registry = ReplicaRegistry(store, settings.replica_id, settings.advertise_url, ttl_s=settings.leader_ttl_s)
        telemetry = ReplicatedTelemetryStore(telemetry, registry.peers, registry.secret, clock=clock)
        registry.tick = telemetry.retry
        registry.on_leading = lambda: telemetry.catch_up(3600.0)
    if settings.reconcile:
        context.worker = _make_worker(settings, controller, driver, context.idempotency, clock,
                                      pace=_yield_to_requests(context), telemetry=telemetry, usage=context.usage)
    if registry is not None:
        worker = context.worker
        registry.leading = (lambda: worker.leading) if worker is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Before the first request: load the store into the controller's cache and build the path
        # finder, so that the first creates do not pay for it (about half a second on Abilene).
        await asyncio.to_thread(_warm, controller)
        if settings.gc_freeze:
            # What start-up made (modules, the app, the cache so far) lives as long as the server: keep
            # it out of the cyclic collector's full passes, which otherwise stall every request 50-100 ms.
            gc.collect()
            gc.freeze()
        if registry is not None:  # registered, and caught up with the peers, before this replica leads
            await asyncio.to_thread(registry.start)
            # once every peer's list has us (their lists are at most PEERS_MAX_AGE_S old), what they
            # accept reaches us; what they accepted before, the catch-up copies
            await asyncio.sleep(2 * registry.PEERS_MAX_AGE_S)
            await asyncio.to_thread(telemetry.catch_up)
        if context.worker is not None:
            context.worker.start()
        try:
            yield
        finally:
            context.creates.close()
            if context.worker is not None:
                context.worker.stop()
            if registry is not None:
                registry.stop()
            if settings.gc_freeze:
                gc.unfreeze()

    app = FastAPI(title="vnstitch", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # /docs below, its assets served from the package
    _mount_docs(app)
    context.metrics.watch(controller, context.worker)  # /metrics reads the state at scrape time
    app.state.ctx = context
    app.state.dev_token = dev_token
    app.state.replicas = registry
    if telemetry is not None:
        app.state.telemetry = telemetry  # what POST /v1/telemetry writes is what the loop reads
    install_error_handlers(app)
    from vnstitch.api.routes import (
        anomalies, apply, audit, availability, forecastpolicies, intents, layout, links, nodes, plan, policies,
        predicted, sites, sitestitches, stitches, system, telemetry as telemetry_routes, virtualnetworks,
    )

    for module in (system, virtualnetworks, stitches, policies, nodes, links, layout, sites, sitestitches, availability,
                   apply,
                   predicted, plan, telemetry_routes, forecastpolicies, audit, anomalies):
        app.include_router(module.router)
    for intent_router in (intents.router, intents.probes, intents.parses, intents.proposals, intents.vngraph,
                          anomalies.policies):
        app.include_router(intent_router)
    from vnstitch.api.routes import ui as ui_routes  # the dashboard at /ui/ (static, CSP on every answer)
    app.include_router(ui_routes.router)
    install_audit(app, store, clock)  # every write through a route, with its principal (api/audit.py)
    app.add_middleware(BodyLimitAndMetrics, max_body_bytes=settings.max_body_bytes, metrics=context.metrics)
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the vendored swagger-ui-dist in api/static (no CDN: works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(packages=[("vnstitch.api", "static")]), name="static")
    assets = "/static/swagger-ui"  # api/static/README.md says which release and where from

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy, as FastAPI's own /docs
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js", swagger_css_url=f"{root}{assets}/swagger-ui.css",
            swagger_favicon_url=f"{root}{assets}/favicon-32x32.png",
            oauth2_redirect_url=root + app.swagger_ui_oauth2_redirect_url,
            swagger_ui_parameters={"validatorUrl": None})  # no badge fetched from validator.swagger.io

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    def swagger_ui_redirect():
        return get_swagger_ui_oauth2_redirect_html()


def _warm(controller: Controller) -> None:
    try:
        controller.refresh()
        controller.pathfinder()
    except Exception:  # noqa: BLE001 - e.g. the store is down or holds a bad record: serve anyway,
        log.exception("warming the controller failed")  # the first request meets it, /readyz says so


def _yield_to_requests(context: ApiContext, pause_s: float = 0.001) -> Callable[[], None]:
    """The reconciler's pace: while HTTP requests are in flight or creates wait for the committer, sleep
    a little between items, so requests get the interpreter (and the CPU) first. The pass goes on at
    a slower rate under load; it never stops."""
    def pace() -> None:
        if context.metrics.in_flight or context.creates.waiting():
            time.sleep(pause_s)
    return pace


def _model_dir(settings: Settings, store) -> str:
    import os

    if settings.model_dir:
        return settings.model_dir
    path = getattr(store, "path", None)
    if path:
        return f"{os.path.splitext(os.path.abspath(path))[0]}.models"
    from platformdirs import user_data_dir

    return os.path.join(user_data_dir("vnstitch"), "models")


def _anomaly_engine(controller: Controller, telemetry, driver):
    """The anomaly engine reads what the proactive loop's sources write (none without a telemetry store)."""
    if telemetry is None:
        return None
    from vnstitch.anomaly.engine import AnomalyEngine

    return AnomalyEngine(controller, telemetry, driver)


def _make_worker(settings: Settings, controller: Controller, driver, idempotency: IdempotencyKeys, clock,
                 pace: Callable[[], None] | None = None, telemetry=None, usage=None):
    from vnstitch.api.background import ReconcileWorker
    from vnstitch.controller.reconciler import Reconciler
    from vnstitch.domain.substrate import Link
    from vnstitch.drivers import create_driver

    if driver is None:
        controller.refresh()
        links = [Link.model_validate(r.value) for r in controller.cache.list("Link")]
        driver = create_driver(settings.driver, settings.driver_state,
                               topology=links if settings.driver == "sim" else None)
    election = None
    elect = settings.leader_election
    if elect is None:
        elect = bool(getattr(controller.store, "replicated", False))
    if elect:
        from vnstitch.controller.election import LeaderElection

        election = LeaderElection(controller.store, settings.replica_id, settings.leader_ttl_s)
        controller.fence = election.fence()  # nothing the reconciler writes lands before it leads
    from vnstitch.controller.services import SerializedDriver

    # the loop and GET /v1/plan share the driver: one call at a time
    reconciler = Reconciler(controller, SerializedDriver(driver), pace=pace)
    from vnstitch.intent.engine import IntentEngine

    proactive = None
    if telemetry is not None:
        from vnstitch.controller.proactive import ModelStore, ProactiveLoop

        sources = []
        if settings.telemetry_from_driver and settings.driver == "linux":
            from vnstitch.telemetry.linux import LinuxCountersSource

            sources.append(LinuxCountersSource(reconciler.driver))  # serialized: never mid-apply
        elif settings.telemetry_from_driver and settings.driver == "sim" and hasattr(driver, "pair_bytes"):
            # (an injected test driver without counters gets no source)
            from vnstitch.telemetry.sim import SimCountersSource

            sources.append(SimCountersSource(driver))
        if settings.prometheus_config:
            from vnstitch.telemetry.prometheus import load_source

            sources.append(load_source(settings.prometheus_config))
        def quota(tenant: str, values: list[dict]) -> None:  # forecast stitches count like the tenant's own
            usage.check(tenant, values, settings.quota_stitches, settings.quota_bandwidth_bps)
        proactive = ProactiveLoop(controller, telemetry, ModelStore(_model_dir(settings, controller.store)),
                                  sources=sources, quota=quota if usage is not None else None)
    return ReconcileWorker(reconciler, settings.tick_s, settings.reconcile_min_interval_s, clock=clock,
                           housekeeping=idempotency.purge, election=election, relist_s=settings.relist_s,
                           proactive=proactive, intents=IntentEngine(controller),
                           anomalies=_anomaly_engine(controller, telemetry, reconciler.driver))
