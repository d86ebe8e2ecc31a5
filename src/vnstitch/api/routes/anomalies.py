"""/v1/anomalies (list, watch, read; approve and keep: the anomaly engine records them, nobody creates one)
and /v1/anomalypolicies (which detector scores a tenant's pairs, and whether remediation acts on its own)."""

from typing import Optional

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, dump, json_response, list_body, list_scope, resolve_tenant
from vnstitch.api.routes._crud import NDJSON, SSE, resource_router, tenant_query, watch_response
from vnstitch.api.schemas import WatchEvent, list_model
from vnstitch.domain.anomaly import Anomaly, AnomalyPolicy

router = APIRouter(prefix="/v1/anomalies", tags=["anomalies"], responses=ERRORS)
policies = resource_router(AnomalyPolicy, "anomalypolicies", "anomalies")


@router.get("", operation_id="listanomalies", summary="List or watch anomalies (recorded by the anomaly engine)",
            responses={200: {"model": list_model(Anomaly), "description": "AnomalyList, or a watch stream",
                             "content": {NDJSON: {"schema": WatchEvent.model_json_schema()},
                                         SSE: {"schema": {"type": "string"}}}}})
def list_anomalies(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                   state: Optional[str] = Query(None, pattern="^(Open|Ended|Kept)$", description="only this state"),
                   watch: bool = Query(False, description="stream changes (NDJSON, or SSE with Accept: "
                                                          "text/event-stream)"),
                   resourceVersion: Optional[int] = Query(None, ge=0, description="watch: start after this revision"),
                   timeoutSeconds: Optional[int] = Query(None, ge=0, le=3600,
                                                         description="watch: end the stream after this")):
    context = ctx(request)
    scope = list_scope(who, tenant)
    since = context.store.revision()
    items = [dump(a) for a in context.controller.list("Anomaly", scope)
             if state is None or a.status.state == state]
    if watch:
        def visible(namespace: str, value: dict) -> bool:
            return (scope is None or namespace == scope) and (
                state is None or value.get("status", {}).get("state") == state)

        return watch_response(request, context, Anomaly, visible, items, since, resourceVersion, timeoutSeconds)
    return json_response(list_body("Anomaly", items, since, None))


@router.get("/{name}", operation_id="readAnomaly", summary="One anomaly: what was seen, the evidence, what was done",
            responses={200: {"model": Anomaly}})
def read_anomaly(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                 tenant: Optional[str] = tenant_query()):
    return json_response(dump(ctx(request).controller.get("Anomaly", name, resolve_tenant(who, tenant))))


class KeepRequest(BaseModel):
    keep: bool = True       # false: release kept actions (undone at the next pass)
    note: str = Field(default="", max_length=1000)


def _answer(request: Request, who: Principal, name: str, tenant: Optional[str], what: str, value: bool) -> dict:
    from vnstitch.anomaly.engine import answer_anomaly

    who.require("member", f"{what} an anomaly's actions")
    return dump(answer_anomaly(ctx(request).store, resolve_tenant(who, tenant), name, what, value))


@router.post("/{name}/approve", operation_id="approveAnomaly", summary="Apply an open anomaly's suggested actions "
             "(mode suggest)", responses={200: {"model": Anomaly}})
def approve(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
            tenant: Optional[str] = tenant_query()):
    return json_response(_answer(request, who, name, tenant, "approve", True))


@router.post("/{name}/keep", operation_id="keepAnomaly", summary="Keep an anomaly's actions after it ends "
             "(keep false: release them)", responses={200: {"model": Anomaly}})
def keep(request: Request, name: str = Path(max_length=253), body: KeepRequest = Body(default_factory=KeepRequest),
         who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    return json_response(_answer(request, who, name, tenant, "keep", body.keep))


__all__ = ["router", "policies"]
