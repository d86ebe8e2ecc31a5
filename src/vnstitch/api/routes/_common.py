"""Helpers shared by the resource routes: tenant scoping, selectors, pagination, writes."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Iterable

from fastapi.responses import JSONResponse

from vnstitch.api.auth import Principal
from vnstitch.api.context import ApiContext
from vnstitch.api.schemas import ErrorBody
from vnstitch.controller.service import terminated
from vnstitch.domain.resources import API_VERSION, NAME_PATTERN, WIRE_TIMES, Resource
from vnstitch.errors import Conflict, InvalidInput, NotFound

ERRORS = {"default": {"model": ErrorBody, "description": "Error: {code, message, field}"}}
_NAME = re.compile(NAME_PATTERN)
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_./-]{0,251}[A-Za-z0-9])?$")


def resolve_tenant(who: Principal, tenant: str | None) -> str:
    """The tenant a request acts in. Another tenant answers 404, as if it did not exist."""
    if tenant is None or tenant == who.tenant:
        return who.tenant
    if not _NAME.match(tenant):
        raise InvalidInput(f"bad tenant name '{tenant}'", field="tenant")
    if who.is_admin:
        return tenant
    raise NotFound(f"tenant '{tenant}' not found", field="tenant")


def list_scope(who: Principal, tenant: str | None) -> str | None:
    """Tenant to list: admins see every tenant unless they name one."""
    if tenant is None and who.is_admin:
        return None
    return resolve_tenant(who, tenant)


def place(cls: type[Resource], who: Principal, res: Resource, tenant: str | None) -> None:
    """Put a namespaced resource in the request's tenant; refuse a body naming another one."""
    if not cls.NAMESPACED:
        return
    explicit = "tenant" in res.metadata.model_fields_set
    if tenant is not None:
        target = resolve_tenant(who, tenant)
        if explicit and res.metadata.tenant != target:
            raise InvalidInput(f"metadata.tenant '{res.metadata.tenant}' differs from the request's tenant "
                               f"'{target}'", field="metadata.tenant")
    elif explicit:
        target = resolve_tenant(who, res.metadata.tenant)
    else:
        target = who.tenant
    res.metadata.tenant = target


def check_api_version(res: Resource) -> None:
    if res.api_version != API_VERSION:
        raise InvalidInput(f"unsupported apiVersion '{res.api_version}' (use {API_VERSION})", field="apiVersion")


# label selectors -------------------------------------------------------------------------------
def parse_selector(text: str | None) -> list[tuple[str, str, str | None]]:
    """'a=b,c!=d,e,!f' → [(key, op, value)]; ops: '=', '!=', 'exists', '!exists'."""
    if not text:
        return []
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise InvalidInput("empty term in label selector", field="labelSelector")
        if "!=" in part:
            key, _, value = part.partition("!=")
            op = "!="
        elif "=" in part:
            key, _, value = part.partition("==") if "==" in part else part.partition("=")
            op = "="
        elif part.startswith("!"):
            key, op, value = part[1:], "!exists", None
        else:
            key, op, value = part, "exists", None
        key = key.strip()
        if not _LABEL_KEY.match(key):
            raise InvalidInput(f"bad label key '{key}' in selector", field="labelSelector")
        out.append((key, op, value.strip() if value is not None else None))
    return out


def selector_matches(selector: list[tuple[str, str, str | None]], labels: dict[str, str]) -> bool:
    for key, op, value in selector:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
    return True


# pagination ------------------------------------------------------------------------------------
def encode_continue(namespace: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([namespace, name]).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        namespace, name = json.loads(raw)
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise ValueError
        return namespace, name
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("bad continue token (use the one from the previous page)", field="continue") from None


def paginate(items: list[dict], limit: int | None, continue_: str | None) -> tuple[list[dict], str | None]:
    """Items sorted by (tenant, name) after the continue position; the next token when more remain."""
    def key(obj: dict) -> tuple[str, str]:
        return obj["metadata"].get("tenant") or "", obj["metadata"]["name"]

    if continue_:
        after = decode_continue(continue_)
        items = [obj for obj in items if key(obj) > after]
    if limit is not None and len(items) > limit:
        page = items[:limit]
        return page, encode_continue(*key(page[-1]))
    return items, None


def list_body(kind: str, items: list[dict], revision: int, next_token: str | None) -> dict:
    return {"apiVersion": API_VERSION, "kind": f"{kind}List",
            "metadata": {"resourceVersion": revision, "continue": next_token}, "items": items}


def dump(res: Resource) -> dict:
    """The object as the API shows it: times as RFC 3339 UTC strings (the store keeps unix seconds)."""
    return res.model_dump(by_alias=True, mode="json", context=WIRE_TIMES)


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


# writes ----------------------------------------------------------------------------------------
def write(context: ApiContext, resources: Iterable[Resource], mode: str, dry_run: bool = False) -> list:
    """Apply resources through the controller. mode: 'create' (must not exist), 'replace'
    (create or update; honours metadata.resourceVersion) or 'apply' (create or update)."""
    resources = list(resources)
    namespaces = sorted({r.namespace for r in resources})
    locks = [context.write_lock(ns) for ns in namespaces]
    for lock in locks:
        lock.acquire()
    try:
        controller = context.controller
        controller.refresh()
        stitches_by_tenant: dict[str, list[dict]] = {}
        for res in resources:
            current = controller.cache.get(res.KIND, res.namespace, res.name)
            if mode == "create" and current is not None and not terminated(current.value):
                # a TERMINATED stitch is only kept for inspection: its name may be used again
                raise Conflict(f"{res.KIND} '{res.name}' already exists", field="metadata.name")
            wanted = res.metadata.resource_version
            if mode == "replace" and wanted is not None and current is not None and wanted != current.revision:
                raise Conflict(f"{res.KIND} '{res.name}' is at resourceVersion {current.revision}, not {wanted}; "
                               "read it again", field="metadata.resourceVersion")
            if res.KIND == "Stitch":
                stitches_by_tenant.setdefault(res.namespace, []).append(dump(res))
        settings = context.settings
        for tenant, incoming in stitches_by_tenant.items():
            context.usage.check(tenant, incoming, settings.quota_stitches, settings.quota_bandwidth_bps)
        return controller.apply(resources, dry_run=dry_run)
    finally:
        for lock in reversed(locks):
            lock.release()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out
