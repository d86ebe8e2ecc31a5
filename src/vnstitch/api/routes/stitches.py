"""/v1/stitches: the CRUD routes plus monitoring (status with measured metrics, history)."""

from typing import Optional

from fastapi import Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import json_response
from vnstitch.api.routes._crud import CHANGE, READ, object_scope, resource_router, tenant_query
from vnstitch.controller.services import request_key_rotation
from vnstitch.api.schemas import TransitionList
from vnstitch.domain.stitch import Stitch, StitchStatus
from vnstitch.domain.resources import WIRE_TIMES
from vnstitch.domain.resources import API_VERSION, format_timestamp


def lands_in(stitch: Stitch, tenant: str) -> bool:
    """Is this a stitch of another tenant with an end in one of `tenant`'s networks?"""
    return stitch.namespace != tenant and any(end.tenant == tenant for end in (stitch.spec.from_, stitch.spec.to))


router = resource_router(Stitch, "stitches", "stitches", inbound=lands_in)


def _stitch(request: Request, who: Principal, name: str, tenant: Optional[str]) -> Stitch:
    context = ctx(request)
    return context.controller.get("Stitch", name, object_scope(context, Stitch, who, tenant, name, lands_in, READ))


@router.get("/{name}/status", operation_id="readStitchStatus", summary="State, path, reservation, measured metrics",
            responses={200: {"model": StitchStatus}})
def read_status(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                tenant: Optional[str] = tenant_query()):
    stitch = _stitch(request, who, name, tenant)
    return json_response(stitch.status.model_dump(by_alias=True, mode="json", context=WIRE_TIMES))


@router.get("/{name}/history", operation_id="readStitchHistory", summary="Lifecycle transitions with times and reasons",
            responses={200: {"model": TransitionList}})
def read_history(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                 tenant: Optional[str] = tenant_query()):
    stitch = _stitch(request, who, name, tenant)
    return json_response({"items": [t.model_dump(by_alias=True, mode="json", context=WIRE_TIMES) for t in stitch.status.history]})


class KeyRotation(BaseModel):
    """The answer to a rotate-keys request: when it was recorded; the reconciler rotates the keys."""

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = "KeyRotation"
    metadata: dict
    status: dict


@router.post("/{name}/rotate-keys", status_code=202, operation_id="rotateStitchKeys",
             summary="Ask for new WireGuard keys on both ends (the reconciler replaces them without loss)",
             responses={202: {"model": KeyRotation, "description": "recorded; status.keysRotatedAt says when done"}})
async def rotate_keys(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                      tenant: Optional[str] = tenant_query()):
    context = ctx(request)
    who.require("member", "rotate a stitch's keys")
    scope = await run_in_threadpool(object_scope, context, Stitch, who, tenant, name, lands_in, CHANGE)
    requested = await run_in_threadpool(request_key_rotation, context.controller, scope, name)
    return json_response({"apiVersion": API_VERSION, "kind": "KeyRotation", "metadata": {"name": name, "tenant": scope},
                          "status": {"requestedAt": format_timestamp(requested)}}, 202)
