"""/v1/predictedgraph: the pairs, bandwidths and paths the proactive loop expects next horizon, with the
decisions of that interval and their reasons; `?at=` reads the kept history. /v1/suggestions: decisions
of a policy in `suggest` mode, waiting for an operator's approval."""

from typing import Optional

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, json_response, resolve_tenant
from vnstitch.api.routes._crud import tenant_query
from vnstitch.controller.proactive import SUGGESTION_KIND, approve_suggestion, predicted_graph_at
from vnstitch.domain.resources import API_VERSION, NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["forecast"], responses=ERRORS)
EMPTY = {"step": None, "stitches": [], "links": [], "decisions": []}


@router.get("/predictedgraph", operation_id="getPredictedGraph",
            summary="Predicted network graph: expected stitches, link loads and decisions of an interval")
def get_predicted_graph(request: Request, who: Principal = Depends(principal),
                        tenant: Optional[str] = tenant_query(),
                        at: Optional[float] = Query(None, ge=0, le=1e11,
                                                    description="unix time: the graph in force then"),
                        policy: Optional[str] = Query(None, pattern=NAME_PATTERN, max_length=63)):
    scope = resolve_tenant(who, tenant)
    record = predicted_graph_at(ctx(request).controller.store, scope, at, policy)
    return json_response({"apiVersion": API_VERSION, "kind": "PredictedGraph",
                          "metadata": {"name": record.name if record else "current", "tenant": scope,
                                       "resourceVersion": record.revision if record else None},
                          "spec": record.value if record else EMPTY})


@router.get("/suggestions", operation_id="listSuggestions", summary="Decisions awaiting approval (suggest mode)")
def list_suggestions(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                     state: Optional[str] = Query(None, pattern="^(pending|approved)$")):
    scope = resolve_tenant(who, tenant)
    items = [{"apiVersion": API_VERSION, "kind": "Suggestion",
              "metadata": {"name": r.name, "tenant": scope, "resourceVersion": r.revision}, "spec": r.value}
             for r in ctx(request).controller.store.list(SUGGESTION_KIND, scope)
             if state is None or r.value.get("state") == state]
    return json_response({"apiVersion": API_VERSION, "kind": "SuggestionList", "items": items})


@router.post("/suggestions/{name}/approve", operation_id="approveSuggestion",
             summary="Apply one suggested decision now")
async def approve(request: Request, name: str = Path(pattern=NAME_PATTERN, max_length=63),
                  who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    scope = resolve_tenant(who, tenant)
    who.require("member", "approve a suggestion")
    run = await run_in_threadpool(approve_suggestion, ctx(request).controller, scope, name)
    return json_response({"apiVersion": API_VERSION, "kind": "Approval",
                          "metadata": {"name": name, "tenant": scope},
                          "status": {"applied": run.applied, "refused": run.refused}})
