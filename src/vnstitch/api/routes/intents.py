"""/v1/intents (CRUD, watch, reports, probe), /v1/proposals (read, accept, reject) and /v1/vngraph."""

from typing import Optional

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, dump, json_response, list_body, list_scope, place, resolve_tenant
from vnstitch.api.routes._crud import resource_router, tenant_query
from vnstitch.domain.intent import Intent, IntentReport, Proposal
from vnstitch.domain.resources import WIRE_TIMES
from vnstitch.errors import NotFound
from vnstitch.intent.engine import answer_proposal, graph_of, probe
from vnstitch.intent.language import parse_intent_text

router = resource_router(Intent, "intents", "intents")


class ReportList(BaseModel):
    items: list[IntentReport]
    report_count: int = Field(alias="reportCount")


@router.get("/{name}/reports", operation_id="readIntentReports", summary="The intent's numbered reports (the last 20)",
            responses={200: {"model": ReportList}})
def read_reports(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                 tenant: Optional[str] = tenant_query()):
    intent = ctx(request).controller.get("Intent", name, resolve_tenant(who, tenant))
    return json_response({"items": [r.model_dump(by_alias=True, mode="json", context=WIRE_TIMES)
                                    for r in intent.status.reports], "reportCount": intent.status.report_count})


class ProbeReport(BaseModel):
    """TMF921 ProbeIntent's answer: could it be met now, and if not the best on offer (nothing changes)."""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict
    feasible: bool
    conflicts: list[str]
    expectations: list[dict]


probes = APIRouter(prefix="/v1/probeintents", tags=["intents"], responses=ERRORS)


@probes.post("", operation_id="probeIntent", summary="Could this intent be met now? (TMF921 ProbeIntent; changes "
             "nothing)", responses={200: {"model": ProbeReport}})
def probe_intent(request: Request, body: Intent, who: Principal = Depends(principal),
                 tenant: Optional[str] = tenant_query()):
    place(Intent, who, body, tenant)
    return json_response(probe(ctx(request).controller, body))


class ParseRequest(BaseModel):
    text: str = Field(max_length=20_000)


parses = APIRouter(prefix="/v1/parsedintents", tags=["intents"], responses=ERRORS)


@parses.post("", operation_id="parseIntentText", summary="The structured spec of an intent text (changes nothing)",
             responses={200: {"description": "the spec: expectations, priority, validity"}})
def parse_text(body: ParseRequest, who: Principal = Depends(principal)):
    return json_response(parse_intent_text(body.text))


# --- proposals ------------------------------------------------------------------------------------
proposals = APIRouter(prefix="/v1/proposals", tags=["proposals"], responses=ERRORS)


def _visible(proposal: Proposal, tenant: Optional[str]) -> bool:
    return tenant is None or proposal.metadata.tenant == tenant or proposal.spec.requester == tenant


@proposals.get("", operation_id="listproposals", summary="Proposals sent to this tenant, and the ones it sent",
               responses={200: {"description": "ProposalList"}})
def list_proposals(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    context = ctx(request)
    scope = list_scope(who, tenant)
    since = context.store.revision()
    items = [dump(p) for p in context.controller.list("Proposal") if _visible(p, scope)]
    return json_response(list_body("Proposal", items, since, None))


def _find(request: Request, who: Principal, name: str, tenant: Optional[str]) -> Proposal:
    context = ctx(request)
    scope = list_scope(who, tenant)
    for proposal in context.controller.list("Proposal"):
        if proposal.metadata.name == name and _visible(proposal, scope):
            return proposal
    raise NotFound(f"proposal '{name}' not found", field="metadata.name")


@proposals.get("/{name}", operation_id="readProposal", summary="One proposal with its history",
               responses={200: {"model": Proposal}})
def read_proposal(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                  tenant: Optional[str] = tenant_query()):
    return json_response(dump(_find(request, who, name, tenant)))


class Answer(BaseModel):
    note: str = Field(default="", max_length=1000)


def _answer(request: Request, who: Principal, name: str, tenant: Optional[str], accept: bool, note: str):
    context = ctx(request)
    who.require("member", "answer a proposal")
    proposal = _find(request, who, name, tenant)
    if proposal.metadata.tenant != who.tenant and not who.is_admin:
        from vnstitch.api.errors import Forbidden

        raise Forbidden(f"proposal '{name}' was sent to tenant {proposal.metadata.tenant}, not to {who.tenant}: "
                        "only the asked tenant answers it", field="tenant")
    answered = answer_proposal(context.controller, proposal.metadata.tenant, name, accept, who.tenant, note)
    return json_response(dump(answered))


@proposals.post("/{name}/accept", operation_id="acceptProposal", summary="Agree: the requester's group may reach "
                "the network (its policy gains the entry)", responses={200: {"model": Proposal}})
async def accept(request: Request, name: str = Path(max_length=253), body: Answer = Body(default_factory=Answer),
                 who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    return await run_in_threadpool(_answer, request, who, name, tenant, True, body.note)


@proposals.post("/{name}/reject", operation_id="rejectProposal", summary="Refuse: nothing crosses",
                responses={200: {"model": Proposal}})
async def reject(request: Request, name: str = Path(max_length=253), body: Answer = Body(default_factory=Answer),
                 who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    return await run_in_threadpool(_answer, request, who, name, tenant, False, body.note)


# --- the virtual network graph -------------------------------------------------------------------------
vngraph = APIRouter(prefix="/v1/vngraph", tags=["intents"], responses=ERRORS)


@vngraph.get("", operation_id="readVirtualNetworkGraph", summary="Every network this tenant knows, with services, "
             "capabilities, labels, trust level, and the stitches between them",
             responses={200: {"description": "VirtualNetworkGraph"}})
def read_vngraph(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query()):
    context = ctx(request)
    context.controller.refresh()
    graph, _ = graph_of(context.controller)
    viewer = None if who.is_admin and tenant is None else resolve_tenant(who, tenant)
    return json_response(graph.view(viewer))


__all__ = ["router", "probes", "parses", "proposals", "vngraph"]
