"""/v1/availability: could X bit/s at ≤ Y s be stitched between two endpoints now? Reserves nothing."""

from typing import Optional

from fastapi import APIRouter, Depends, Request

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, json_response, resolve_tenant
from vnstitch.api.routes._crud import tenant_query
from vnstitch.api.schemas import AvailabilityAnswer, AvailabilityRequest

router = APIRouter(prefix="/v1", tags=["stitches"], responses=ERRORS)


def answer_body(answer) -> dict:
    path = answer.path
    return {"feasible": answer.feasible,
            "path": None if path is None else {
                "nodes": list(path.nodes), "links": list(path.links), "latency": path.latency_s,
                "cost": path.cost, "bottleneckBandwidth": path.bottleneck_bps},
            "bestBandwidth": answer.best_bandwidth_bps, "bestLatency": answer.best_latency_s,
            "reason": answer.reason}


@router.post("/availability", operation_id="queryAvailability", summary="Query stitching availability",
             responses={200: {"model": AvailabilityAnswer}})
def query_availability(request: Request, body: AvailabilityRequest, who: Principal = Depends(principal),
                       tenant: Optional[str] = tenant_query()):
    scope = resolve_tenant(who, tenant)
    answer = ctx(request).controller.availability(scope, body.from_, body.to, body.bandwidth, body.max_latency,
                                                  symmetric=body.symmetric, encrypted=body.encryption == "required")
    return json_response(answer_body(answer))
