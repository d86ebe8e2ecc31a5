"""/v1/predictedgraph: the pairs, bandwidths and paths the proactive allocator expects next horizon."""

from typing import Optional

from fastapi import APIRouter, Depends, Request

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, json_response, resolve_tenant
from vnstitch.api.routes._crud import tenant_query
from vnstitch.domain.resources import API_VERSION

router = APIRouter(prefix="/v1", tags=["forecast"], responses=ERRORS)
EMPTY = {"step": None, "stitches": [], "links": [], "decisions": []}


@router.get("/predictedgraph", operation_id="getPredictedGraph", summary="Predicted network graph (scaffolding)")
def get_predicted_graph(request: Request, who: Principal = Depends(principal),
                        tenant: Optional[str] = tenant_query()):
    scope = resolve_tenant(who, tenant)
    record = ctx(request).controller.store.get("PredictedGraph", scope, "current")
    return json_response({"apiVersion": API_VERSION, "kind": "PredictedGraph",
                          "metadata": {"name": "current", "tenant": scope,
                                       "resourceVersion": record.revision if record else None},
                          "spec": record.value if record else EMPTY})
