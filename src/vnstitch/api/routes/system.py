"""Health, readiness, metrics and whoami."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.errors import NotReady
from vnstitch.api.metrics import CONTENT_TYPE
from vnstitch.api.routes._common import ERRORS, json_response

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    revision: int
    reconciler: str
    replica: str | None = None      # this replica's identity (with leader election)
    leader: str | None = None       # the identity of the replica that leads now
    leading: bool | None = None     # whether this replica leads


class WhoAmI(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    tenant: str
    role: str
    token_id: str = Field(alias="tokenId")


@router.get("/healthz", operation_id="health", summary="The process is up", responses={200: {"model": Health}})
def healthz():
    return json_response({"status": "ok"})


@router.get("/readyz", operation_id="ready", summary="Store reachable and reconciler running",
            responses={200: {"model": Readiness}, **ERRORS})
def readyz(request: Request):
    context = ctx(request)
    revision = context.store.revision()  # raises StoreUnavailable → 503
    worker = context.worker
    election = getattr(worker, "election", None)
    body: dict = {"status": "ok", "revision": revision}
    if election is not None:  # every replica serves the API; one reconciles
        leading = election.is_leader()
        body.update(replica=election.identity, leading=leading,
                    leader=election.identity if leading else election.current_leader())
    if worker is None:
        state = "disabled"
    elif not worker.alive:
        raise NotReady("the reconciler thread is not running")
    elif election is not None and not body["leading"]:
        state = "standby"
    elif worker.passes == 0:
        raise NotReady("the reconciler has not finished its first pass")
    else:
        state = "failing: " + worker.last_error if worker.last_error else "ok"
    body["reconciler"] = state
    return json_response(body)


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics",
            response_class=PlainTextResponse, responses={200: {"content": {CONTENT_TYPE: {}}}})
def metrics(request: Request):
    return Response(ctx(request).metrics.exposition(), media_type=CONTENT_TYPE)


@router.get("/v1/whoami", operation_id="whoAmI", summary="The tenant and role of the calling token",
            responses={200: {"model": WhoAmI}, **ERRORS})
def whoami(who: Principal = Depends(principal)):
    return json_response({"tenant": who.tenant, "role": who.role, "tokenId": who.token_id})
