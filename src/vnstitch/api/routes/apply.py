"""/v1/apply: create or update several resources all-or-nothing (what `vnstitch apply` sends)."""

from typing import Optional

from fastapi import APIRouter, Depends, Request

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, check_api_version, json_response, place, write
from vnstitch.api.routes._crud import tenant_query
from vnstitch.api.schemas import ApplyRequest, ApplyResult

router = APIRouter(prefix="/v1", tags=["apply"], responses=ERRORS)


@router.post("/apply", operation_id="applyResources", summary="Create or update resources, all or nothing",
             responses={200: {"model": ApplyResult}})
def apply_resources(request: Request, body: ApplyRequest, who: Principal = Depends(principal),
                    tenant: Optional[str] = tenant_query()):
    for res in body.items:
        who.require("member" if res.NAMESPACED else "admin", f"change {res.PLURAL}")
        check_api_version(res)
        place(type(res), who, res, tenant)
    changes = write(ctx(request), body.items, "apply", body.dry_run)
    return json_response({"dryRun": body.dry_run,
                          "changes": [{"kind": c.kind, "tenant": c.namespace or None, "name": c.name,
                                       "action": c.action} for c in changes]})
