"""/v1/plan: the ops the server's reconciler would apply now, each with its reason (what `vnstitch plan` shows)."""

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.routes._common import ERRORS, json_response
from vnstitch.controller.services import LocalServices, PlanReport
from vnstitch.domain.resources import API_VERSION
from vnstitch.errors import Conflict

router = APIRouter(prefix="/v1", tags=["reconciler"], responses=ERRORS)


class PlannedOpOut(BaseModel):
    action: str
    target: str
    summary: str
    reason: str


class PlanOut(BaseModel):
    apiVersion: str
    kind: str
    leading: bool
    ops: list[PlannedOpOut]


def plan_body(report: PlanReport) -> dict:
    return {"apiVersion": API_VERSION, "kind": "Plan", "leading": report.leading,
            "ops": [{"action": op.action, "target": op.target, "summary": op.summary, "reason": op.reason}
                    for op in report.ops]}


@router.get("/plan", operation_id="getPlan", summary="What the reconciler would apply now (applies nothing)",
            responses={200: {"model": PlanOut}})
def get_plan(request: Request, who: Principal = Depends(principal)):
    who.require("admin", "see the reconciler's plan")
    context = ctx(request)
    worker = context.worker
    if worker is None:
        raise Conflict("this server runs no reconciler (started with --no-reconcile): there is no plan")
    # A reconciler of its own (its parse caches are not shared with the loop's thread), over the
    # loop's driver (which takes one call at a time).
    report = LocalServices(context.controller, driver=worker.reconciler.driver).plan()
    return json_response(plan_body(PlanReport(report.ops, leading=worker.leading)))
