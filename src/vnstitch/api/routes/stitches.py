"""/v1/stitches: the CRUD routes plus monitoring (status with measured metrics, history)."""

from typing import Optional

from fastapi import Depends, Path, Request

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import json_response
from vnstitch.api.routes._crud import READ, object_scope, resource_router, tenant_query
from vnstitch.api.schemas import TransitionList
from vnstitch.domain.stitch import Stitch, StitchStatus


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
    return json_response(stitch.status.model_dump(by_alias=True, mode="json"))


@router.get("/{name}/history", operation_id="readStitchHistory", summary="Lifecycle transitions with times and reasons",
            responses={200: {"model": TransitionList}})
def read_history(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                 tenant: Optional[str] = tenant_query()):
    stitch = _stitch(request, who, name, tenant)
    return json_response({"items": [t.model_dump(by_alias=True, mode="json") for t in stitch.status.history]})
