"""/v1/audit: the audit log of this server (admins only); what `vnstitch --server … audit` prints."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from vnstitch.api.auth import Principal
from vnstitch.api.context import principal
from vnstitch.api.routes._common import ERRORS, json_response
from vnstitch.domain.resources import API_VERSION, NAME_PATTERN

router = APIRouter(prefix="/v1", tags=["audit"], responses=ERRORS)


class AuditPrincipal(BaseModel):
    tokenId: Optional[str] = Field(None, description="the token's id (a sha256 prefix), never the token")
    tenant: Optional[str] = None
    role: Optional[str] = None


class AuditResource(BaseModel):
    kind: Optional[str] = None
    tenant: Optional[str] = None
    name: Optional[str] = None


class AuditItem(BaseModel):
    time: str = Field(description="RFC 3339, UTC")
    unixTime: float
    principal: AuditPrincipal
    method: str
    path: str
    resource: AuditResource
    status: int
    outcome: str = Field(description="ok, refused (4xx) or failed (5xx)")
    error: Optional[str] = Field(None, description="the error code of a refused or failed write")
    requestId: Optional[str] = Field(None, description="the client's X-Request-Id")
    detail: Optional[str] = None


class AuditList(BaseModel):
    apiVersion: str
    kind: str
    items: list[AuditItem]


def audit_log(request: Request):
    return request.app.state.audit


@router.get("/audit", operation_id="listAudit", summary="Writes through the API, oldest first (admins only)",
            responses={200: {"model": AuditList}})
def list_audit(request: Request, who: Principal = Depends(principal),
               since: Optional[float] = Query(None, ge=0, le=1e11, allow_inf_nan=False,
                                              description="unix seconds (default: all that is kept)"),
               tenant: Optional[str] = Query(None, pattern=NAME_PATTERN, max_length=63,
                                             description="writes by this tenant's tokens or on its objects"),
               principal_id: Optional[str] = Query(None, alias="principal", pattern="^[0-9a-f]{1,64}$",
                                                   description="a token id, or a prefix of one"),
               limit: int = Query(1000, ge=1, le=10_000, description="the newest this many")):
    who.require("admin", "read the audit log")
    entries = audit_log(request).query(since=since, tenant=tenant, principal=principal_id, limit=limit)
    return json_response({"apiVersion": API_VERSION, "kind": "AuditList", "items": [e.wire() for e in entries]})
