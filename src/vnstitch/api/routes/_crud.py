"""The same six routes for every resource kind: list (and watch), create, read, replace,
patch, delete. Operation ids are derived from the kind, so they stay stable."""

import hashlib
import json
from typing import Any, Callable, Optional

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from vnstitch.api import watch as watching
from vnstitch.api.auth import Principal
from vnstitch.api.context import ApiContext, ctx, principal
from vnstitch.api.errors import Forbidden
from vnstitch.api.reads import render
from vnstitch.api.routes._common import (
    ERRORS, check_api_version, decode_continue, dump, encode_continue, json_response, list_body, list_scope,
    merge_patch, paginate, parse_selector, place, resolve_tenant, selector_matches, write,
)
from vnstitch.api.schemas import DeleteResult, WatchEvent, list_model
from vnstitch.domain.registry import parse_resource
from vnstitch.domain.resources import NAME_PATTERN, Resource
from vnstitch.errors import Conflict, InvalidInput, NotFound

NDJSON, SSE = "application/x-ndjson", "text/event-stream"
SERVER_SET_METADATA = ("generation", "creationTimestamp", "deletionTimestamp")


def plural_of(kind: str) -> str:
    return kind + ("es" if kind.endswith(("ch", "s")) else "s")


def tenant_query():
    return Query(None, pattern=NAME_PATTERN, max_length=63,
                 description="tenant to act in (default: the token's; only admins may name another)")


IDEMPOTENCY_MARK = "vnstitch.io/idempotency-key"  # sha256 of token and key, never the key itself

Inbound = Callable[[Resource, str], bool]  # does this object of another tenant land in `tenant`'s networks?
READ, END, CHANGE = "read", "end", "change"


def foreign_lookup(who: Principal, tenant: Optional[str], inbound: Optional[Inbound]) -> bool:
    """Whether naming `tenant` may reach an object of another tenant through `inbound`."""
    return inbound is not None and tenant is not None and tenant != who.tenant and not who.is_admin


def object_scope(context: ApiContext, cls: type[Resource], who: Principal, tenant: Optional[str], name: str,
                 inbound: Optional[Inbound], action: str) -> Optional[str]:
    """The tenant whose object `name` a request addresses. Another tenant's object answers 404 exactly
    as if it did not exist, unless it lands in one of the caller's networks (`inbound`): then the
    caller may read it and end it, and changing it is 403."""
    if not cls.NAMESPACED:
        return None
    try:
        return resolve_tenant(who, tenant)
    except NotFound as hidden:
        if not foreign_lookup(who, tenant, inbound):
            raise
        try:
            record = context.reads.record(cls, name, tenant)
        except NotFound:
            raise hidden from None
        if not inbound(cls.model_validate(record.value), who.tenant):
            raise hidden from None
        if action == CHANGE:
            raise Forbidden(f"{kind_name(cls)} '{name}' of tenant '{tenant}' lands in your network: you may read "
                            "and end it, not change it", field="tenant") from None
        return tenant


def kind_name(cls: type[Resource]) -> str:
    return cls.KIND[0].lower() + cls.KIND[1:]


def landing_query(landing: bool = Query(False, description="list the objects of other tenants that land in this "
                                                           "tenant's networks (instead of its own)")) -> bool:
    return landing


def no_landing() -> bool:
    return False


def watch_response(request: Request, context: ApiContext, cls: type[Resource], visible, items: list[dict],
                   since: int, resource_version: Optional[int], timeout_s: Optional[int]) -> StreamingResponse:
    """A list's watch stream (NDJSON, or SSE on Accept: text/event-stream): `items` first unless the client
    resumes after `resource_version`, then every change `visible(namespace, value)` lets through, rendered
    as a read shows it; it ends after `timeout_s` (at most the server's watch limit)."""
    def render(value: dict, revision: int) -> dict:
        try:  # as a read shows it: times as RFC 3339
            value = dump(cls.model_validate(value))
        except ValueError:
            pass
        return {**value, "metadata": {**value.get("metadata", {}), "resourceVersion": revision}}

    limit_s = context.settings.watch_max_s
    timeout = min(limit_s, timeout_s if timeout_s is not None else limit_s)
    sse = SSE in request.headers.get("accept", "")
    start = resource_version if resource_version is not None else since
    initial = None if resource_version is not None else items
    return StreamingResponse(watching.stream(context.store, cls.KIND, visible, render, initial, start, timeout, sse),
                             media_type=SSE if sse else NDJSON)


def listed_response(context: ApiContext, cls: type[Resource], kind: str, scope: Optional[str], selector,
                    limit: Optional[int], continue_: Optional[str], since: int) -> Response:
    """The same bytes as json_response(list_body(kind, paginate([dump(r) …]), …)), spliced from each object's
    memoised JSON (api/reads.py) instead of validating and dumping every object on every list."""
    after = decode_continue(continue_) if continue_ else None
    page: list[bytes] = []
    next_token = None
    for record, body in context.reads.listed(cls, scope):
        position = (record.namespace or "", record.name)
        if after is not None and position <= after:
            continue
        if not selector_matches(selector, (record.value.get("metadata") or {}).get("labels") or {}):
            continue
        if limit is not None and len(page) == limit:
            next_token = encode_continue(*last)
            break
        page.append(body)
        last = position
    envelope = render(list_body(kind, [], since, next_token))  # ends with '"items":[]}'
    return Response(envelope[:-2] + b",".join(page) + b"]}", media_type="application/json")


def resource_router(cls: type[Resource], path: str, tag: str, inbound: Optional[Inbound] = None) -> APIRouter:
    """The six routes of `cls`. With `inbound`, another tenant's object that lands in the caller's
    networks can be listed (`?landing=true`), read and ended (`?tenant=<its tenant>`), not changed."""
    kind, plural = cls.KIND, plural_of(cls.KIND)
    namespaced = cls.NAMESPACED
    write_role = "member" if namespaced else "admin"
    router = APIRouter(prefix=f"/v1/{path}", tags=[tag], responses=ERRORS)
    list_schema = list_model(cls)

    def tenant_of(who: Principal, tenant: Optional[str]) -> Optional[str]:
        return resolve_tenant(who, tenant) if namespaced else None

    def scope_of(context: ApiContext, who: Principal, tenant: Optional[str], name: str, action: str) -> Optional[str]:
        return object_scope(context, cls, who, tenant, name, inbound, action)

    @router.get("", operation_id=f"list{plural}", summary=f"List or watch {cls.PLURAL}",
                responses={200: {"model": list_schema, "description": f"{kind}List, or a watch stream",
                                 "content": {NDJSON: {"schema": WatchEvent.model_json_schema()},
                                             SSE: {"schema": {"type": "string"}}}}})
    def list_objects(request: Request, who: Principal = Depends(principal),
                     tenant: Optional[str] = tenant_query(),
                     labelSelector: Optional[str] = Query(None, max_length=1024,
                                                          description="a=b,c!=d,e,!f"),
                     limit: Optional[int] = Query(None, ge=1, le=1000),
                     continue_: Optional[str] = Query(None, alias="continue", max_length=1024),
                     watch: bool = Query(False, description="stream changes (NDJSON, or SSE with "
                                                           "Accept: text/event-stream)"),
                     resourceVersion: Optional[int] = Query(None, ge=0,
                                                            description="watch: start after this revision"),
                     timeoutSeconds: Optional[int] = Query(None, ge=0, le=3600,
                                                           description="watch: end the stream after this"),
                     landing: bool = Depends(landing_query if inbound is not None else no_landing)):
        context = ctx(request)
        owner = resolve_tenant(who, tenant) if landing else None  # whose networks the listed objects land in
        scope = list_scope(who, tenant) if namespaced and not landing else None
        selector = parse_selector(labelSelector)
        since = context.store.revision()
        if not watch and owner is None and context.reads is not None:  # each object rendered once a revision
            return listed_response(context, cls, kind, scope, selector, limit, continue_, since)
        items = []
        if not (watch and resourceVersion is not None):  # a watch resumed after a revision sends no list first
            items = [dump(r) for r in context.controller.list(kind, scope) if owner is None or inbound(r, owner)]
            items = [o for o in items if selector_matches(selector, o["metadata"].get("labels", {}))]
        if watch:
            def visible(namespace: str, value: dict) -> bool:
                if owner is not None:
                    in_scope = namespace != owner and inbound(cls.model_validate(value), owner)
                else:
                    in_scope = scope is None or namespace == scope
                return in_scope and selector_matches(selector, value.get("metadata", {}).get("labels", {}))

            return watch_response(request, context, cls, visible, items, since, resourceVersion, timeoutSeconds)
        page, next_token = paginate(items, limit, continue_)
        return json_response(list_body(kind, page, since, next_token))

    @router.post("", status_code=201, operation_id=f"create{kind}", summary=f"Create a {kind}",
                 responses={201: {"model": cls, "description": "created"}})
    async def create_object(request: Request, body: cls, who: Principal = Depends(principal),
                            tenant: Optional[str] = tenant_query(),
                            dryRun: bool = Query(False),
                            idempotency_key: Optional[str] = Header(None, alias="Idempotency-Key", max_length=255,
                                                                    description="retries with the same key create "
                                                                                "one object")):
        context = ctx(request)
        who.require(write_role, f"create {cls.PLURAL}")
        check_api_version(body)
        place(cls, who, body, tenant)

        if idempotency_key is None and not dryRun:
            # The common case stays on the event loop: it waits for its batch (group commit with
            # concurrent creates) without holding a thread.
            change = await context.creates.acreate(body)
            response = await context.reads.respond(cls, body.name, body.namespace or None)
            response.status_code = 201
            response.headers["Vnstitch-Change"] = change.action
            return response
        return await run_in_threadpool(create_blocking, context, who, body, dryRun, idempotency_key)

    def create_blocking(context, who: Principal, body: Resource, dryRun: bool,
                        idempotency_key: Optional[str]) -> Response:
        """Dry runs and creates with an Idempotency-Key (which read and write the key's record).

        With a key, the object itself carries the key's hash (annotation), so the key is recorded
        in the same transaction that admits the object and reserves its capacity: a retry after a
        lost answer finds the object by that mark even if the key's own record never said "done".
        """
        key_mark = None if idempotency_key is None or dryRun else \
            context.idempotency.record_name(who.token_id, idempotency_key)

        def existing() -> tuple[int, dict, dict] | None:
            """This request's object, if an earlier attempt with the same key already made it."""
            record = context.controller.store.get(cls.KIND, body.namespace, body.name)
            if record is None or record.value["metadata"].get("annotations", {}).get(IDEMPOTENCY_MARK) != key_mark:
                return None
            return 201, json.loads(context.reads.body(cls, body.name, body.namespace or None)), {"Vnstitch-Change": "created"}

        def create() -> tuple[int, dict, dict]:
            if dryRun:
                changes = write(context, [body], "create", dryRun)
                return 201, dump(body), {"Vnstitch-Change": changes[0].action}
            try:
                change = context.creates.create(body)  # group commit with concurrent creates
            except Conflict:
                found = existing() if key_mark else None
                if found is None:
                    raise
                return found
            return 201, json.loads(context.reads.body(cls, body.name, body.namespace or None)), \
                {"Vnstitch-Change": change.action}

        if idempotency_key is None:
            status, obj, headers = create()
            return json_response(obj, status, headers)
        canonical = json.dumps([kind, body.namespace, dryRun, dump(body)], sort_keys=True)
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        if key_mark:
            body.metadata.annotations[IDEMPOTENCY_MARK] = key_mark
        status, obj, headers, replayed = context.idempotency.run(body.namespace, who.token_id, idempotency_key,
                                                                 fingerprint, create,
                                                                 recover=existing if key_mark else None)
        if replayed:
            headers = {**headers, "Idempotent-Replayed": "true"}
        return json_response(obj, status, headers)

    @router.get("/{name}", operation_id=f"read{kind}", summary=f"Read a {kind}",
                responses={200: {"model": cls}})
    async def read_object(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                          tenant: Optional[str] = tenant_query()):
        context = ctx(request)
        if foreign_lookup(who, tenant, inbound):  # reads the mirror: off the event loop
            scope = await run_in_threadpool(scope_of, context, who, tenant, name, READ)
        else:
            scope = tenant_of(who, tenant)
        return await context.reads.respond(cls, name, scope)

    @router.put("/{name}", operation_id=f"replace{kind}", summary=f"Create or replace a {kind}",
                responses={200: {"model": cls, "description": "replaced"},
                           201: {"model": cls, "description": "created"}})
    def replace_object(request: Request, body: cls, name: str = Path(max_length=253),
                       who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                       dryRun: bool = Query(False)):
        context = ctx(request)
        who.require(write_role, f"change {cls.PLURAL}")
        check_api_version(body)
        if body.metadata.name != name:
            raise InvalidInput(f"metadata.name '{body.metadata.name}' differs from the name in the path '{name}'",
                               field="metadata.name")
        named = tenant if tenant is not None else \
            (body.metadata.tenant if "tenant" in body.metadata.model_fields_set else None)
        if foreign_lookup(who, named, inbound):
            scope_of(context, who, named, name, CHANGE)  # another tenant's object: 404, or 403 where it lands here
        place(cls, who, body, tenant)
        changes = write(context, [body], "replace", dryRun)
        obj = dump(body) if dryRun else dump(context.controller.get(kind, name, body.namespace or None))
        return json_response(obj, 201 if changes[0].action == "created" else 200,
                             {"Vnstitch-Change": changes[0].action})

    @router.patch("/{name}", operation_id=f"patch{kind}", summary=f"Merge-patch a {kind} (RFC 7386)",
                  responses={200: {"model": cls}})
    def patch_object(request: Request, name: str = Path(max_length=253),
                     patch: dict[str, Any] = Body(..., media_type="application/merge-patch+json"),
                     who: Principal = Depends(principal), tenant: Optional[str] = tenant_query(),
                     dryRun: bool = Query(False)):
        context = ctx(request)
        who.require(write_role, f"change {cls.PLURAL}")
        current = dump(context.controller.get(kind, name, scope_of(context, who, tenant, name, CHANGE)))
        meta = current["metadata"]
        base = {"apiVersion": current["apiVersion"], "kind": kind, "spec": current["spec"],
                "metadata": {k: v for k, v in meta.items() if k not in SERVER_SET_METADATA + ("resourceVersion",)}}
        merged = merge_patch(base, patch)
        if not isinstance(merged.get("metadata"), dict):
            raise InvalidInput("metadata must be an object", field="metadata")
        merged.pop("status", None)  # status is written by the controller only
        for key in SERVER_SET_METADATA:
            merged["metadata"].pop(key, None)
        if merged["metadata"].get("name") != name:
            raise InvalidInput("a patch cannot rename an object", field="metadata.name")
        if namespaced and merged["metadata"].get("tenant") != meta.get("tenant"):
            raise InvalidInput("a patch cannot move an object to another tenant", field="metadata.tenant")
        res = parse_resource(merged)
        if namespaced:
            res.metadata.tenant = meta["tenant"]
        changes = write(context, [res], "replace", dryRun)
        obj = dump(res) if dryRun else dump(context.controller.get(kind, name, res.namespace or None))
        return json_response(obj, 200, {"Vnstitch-Change": changes[0].action})

    @router.delete("/{name}", operation_id=f"delete{kind}", summary=f"Delete a {kind}",
                   responses={200: {"model": DeleteResult}})
    def delete_object(request: Request, name: str = Path(max_length=253), who: Principal = Depends(principal),
                      tenant: Optional[str] = tenant_query()):
        context = ctx(request)
        who.require(write_role, f"delete {cls.PLURAL}")
        scope = scope_of(context, who, tenant, name, END)
        with context.write_lock(scope or ""):
            if foreign_lookup(who, tenant, inbound):
                scope_of(context, who, tenant, name, END)  # still lands here, now that its tenant's writes wait
            change = context.controller.delete(kind, name, scope)
        return json_response({"kind": kind, "tenant": change.namespace or None, "name": name,
                              "action": change.action})

    return router
