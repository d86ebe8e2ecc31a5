"""/v1/policies: a view over VirtualNetwork.spec.policy.

A policy has the name of its virtual network and exists exactly when the network does;
PUT/PATCH change the network's spec.policy, DELETE clears it (back to "same tenant only").
There is no POST: create the network, then PUT its policy.
"""

from typing import Any, Optional

from fastapi import Body, Depends, Path, Query, Request

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import (
    ERRORS, dump, json_response, list_body, list_scope, merge_patch, paginate, parse_selector, resolve_tenant,
    selector_matches, write,
)
from vnstitch.api.routes._crud import tenant_query
from vnstitch.api.schemas import DeleteResult, PolicyList, PolicyView
from vnstitch.domain.resources import API_VERSION, invalid_from_pydantic
from vnstitch.domain.vnet import Policy, VirtualNetwork
from vnstitch.errors import Conflict, InvalidInput

from fastapi import APIRouter
from pydantic import ValidationError

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=ERRORS)


def view(vnet: VirtualNetwork) -> dict:
    policy = vnet.spec.policy
    return {"apiVersion": API_VERSION, "kind": "Policy",
            "metadata": {"name": vnet.name, "tenant": vnet.metadata.tenant,
                         "resourceVersion": vnet.metadata.resource_version},
            "spec": policy.model_dump(by_alias=True, mode="json") if policy else None}


def _set_policy(request: Request, who: Principal, name: str, tenant: Optional[str], policy: Optional[Policy],
                expect_revision: Optional[int], dry_run: bool) -> tuple[VirtualNetwork, str]:
    context = ctx(request)
    who.require("member", "change policies")
    scope = resolve_tenant(who, tenant)
    vnet = context.controller.get("VirtualNetwork", name, scope)
    if expect_revision is not None and expect_revision != vnet.metadata.resource_version:
        raise Conflict(f"policy '{name}' is at resourceVersion {vnet.metadata.resource_version}, not "
                       f"{expect_revision}; read it again", field="metadata.resourceVersion")
    updated = vnet.model_copy(update={"spec": vnet.spec.model_copy(update={"policy": policy})})
    updated.metadata.resource_version = expect_revision
    changes = write(context, [updated], "replace", dry_run)
    fresh = updated if dry_run else context.controller.get("VirtualNetwork", name, scope)
    return fresh, changes[0].action


@router.get("", operation_id="listPolicies", summary="List policies (one per virtual network)",
            responses={200: {"model": PolicyList}})
def list_policies(request: Request, who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                  labelSelector: Optional[str] = Query(None, max_length=1024),
                  limit: Optional[int] = Query(None, ge=1, le=1000),
                  continue_: Optional[str] = Query(None, alias="continue", max_length=1024)):
    context = ctx(request)
    selector = parse_selector(labelSelector)
    revision = context.store.revision()
    vnets = context.controller.list("VirtualNetwork", list_scope(who, tenant))
    items = [view(v) for v in vnets if selector_matches(selector, v.metadata.labels)]
    page, next_token = paginate(items, limit, continue_)
    return json_response(list_body("Policy", page, revision, next_token))


@router.get("/{name}", operation_id="readPolicy", summary="Read the policy of a virtual network",
            responses={200: {"model": PolicyView}})
def read_policy(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                tenant: Optional[str] = tenant_query()):
    return json_response(view(ctx(request).controller.get("VirtualNetwork", name, resolve_tenant(who, tenant))))


@router.put("/{name}", operation_id="replacePolicy", summary="Replace the policy of a virtual network",
            responses={200: {"model": PolicyView}})
def replace_policy(request: Request, body: PolicyView, name: str = Path(max_length=253),
                   who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                   dryRun: bool = Query(False)):
    if body.api_version != API_VERSION:
        raise InvalidInput(f"unsupported apiVersion '{body.api_version}' (use {API_VERSION})", field="apiVersion")
    if body.metadata.name != name:
        raise InvalidInput(f"metadata.name '{body.metadata.name}' differs from the name in the path '{name}'",
                           field="metadata.name")
    if body.metadata.tenant is not None:
        target = resolve_tenant(who, tenant if tenant is not None else body.metadata.tenant)
        if body.metadata.tenant != target:
            raise InvalidInput("metadata.tenant differs from the request's tenant", field="metadata.tenant")
        tenant = target
    vnet, action = _set_policy(request, who, name, tenant, body.spec, body.metadata.resource_version, dryRun)
    return json_response(view(vnet), 200, {"Vnstitch-Change": action})


@router.patch("/{name}", operation_id="patchPolicy", summary="Merge-patch the policy of a virtual network",
              responses={200: {"model": PolicyView}})
def patch_policy(request: Request, name: str = Path(max_length=253),
                 patch: dict[str, Any] = Body(..., media_type="application/merge-patch+json"),
                 who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                 dryRun: bool = Query(False)):
    who.require("member", "change policies")
    current = view(ctx(request).controller.get("VirtualNetwork", name, resolve_tenant(who, tenant)))
    unknown = set(patch) - {"spec", "metadata", "apiVersion", "kind"}
    if unknown:
        raise InvalidInput("unknown key", field=sorted(unknown)[0])
    if "metadata" in patch and not isinstance(patch["metadata"], dict):
        raise InvalidInput("metadata must be an object", field="metadata")
    if set((patch.get("metadata") or {})) - {"resourceVersion"}:
        raise InvalidInput("only metadata.resourceVersion may be given in a policy patch", field="metadata")
    spec = merge_patch(current["spec"] or {}, patch.get("spec")) if "spec" in patch else current["spec"]
    try:
        policy = Policy.model_validate(spec) if spec is not None else None
    except ValidationError as exc:
        raise invalid_from_pydantic(exc, prefix="spec") from None
    expect = (patch.get("metadata") or {}).get("resourceVersion")
    if expect is not None and not isinstance(expect, int):
        raise InvalidInput("must be an integer", field="metadata.resourceVersion")
    vnet, action = _set_policy(request, who, name, tenant, policy, expect, dryRun)
    return json_response(view(vnet), 200, {"Vnstitch-Change": action})


@router.delete("/{name}", operation_id="deletePolicy", summary="Clear the policy (same tenant only)",
               responses={200: {"model": DeleteResult}})
def delete_policy(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                  tenant: Optional[str] = tenant_query()):
    vnet, action = _set_policy(request, who, name, tenant, None, None, False)
    return json_response({"kind": "Policy", "tenant": vnet.metadata.tenant, "name": name, "action": action})
