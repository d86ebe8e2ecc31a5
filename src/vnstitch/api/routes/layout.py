"""/v1/substrate/layout: where a map draws each substrate node, laid out once per substrate instead of per page load.

Cluster-scoped, like the nodes and links it is computed from: every tenant reads. The layout is a function
of the nodes' names and coordinates and the links' endpoints (topology/layout.py), memoised by the records'
revisions and by that content, and computed in the thread pool (the route is synchronous), never on the event loop.
"""

from __future__ import annotations

import threading
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from vnstitch.api.auth import Principal
from vnstitch.api.context import ctx, principal
from vnstitch.api.reads import render
from vnstitch.api.routes._common import API_VERSION, ERRORS
from vnstitch.domain.substrate import Link, Node
from vnstitch.topology.layout import HEIGHT, WIDTH, Layout, NodePlace, substrate_layout

router = APIRouter(prefix="/v1/substrate", tags=["substrate"], responses=ERRORS)


class LayoutMeta(BaseModel):
    resourceVersion: int = Field(description="the store's revision when the substrate was read")


class SubstrateLayout(BaseModel):
    apiVersion: str
    kind: Literal["SubstrateLayout"]
    metadata: LayoutMeta
    method: Literal["geographic", "graph"] = Field(
        description="geographic: longitude and latitude (≥ 80 % of the nodes have them); graph: pivot MDS and "
                    "force rounds over the links")
    width: float
    height: float
    points: dict[str, tuple[float, float]] = Field(
        description="every node's name → [x, y] in [0, width] × [0, height], y downwards (north up)")


class LayoutMemo:
    """The points' JSON per substrate: by the records' (key, revision) (no parsing while nothing changed), then by
    content (a link's state or capacity changing keeps the layout). One computation at a time."""

    KEPT = 4

    def __init__(self):
        self._by_revisions: dict[tuple, bytes] = {}
        self._by_content: dict[tuple, bytes] = {}
        self._lock = threading.Lock()

    def points_json(self, node_records: list, link_records: list) -> bytes:
        revisions = tuple((r.key, r.revision) for r in node_records + link_records)
        hit = self._by_revisions.get(revisions)
        if hit is not None:
            return hit
        with self._lock:
            nodes = [Node.model_validate(r.value) for r in node_records]
            links = [Link.model_validate(r.value) for r in link_records]
            places = tuple(sorted((NodePlace(n.metadata.name, n.spec.latitude, n.spec.longitude) for n in nodes),
                                  key=lambda place: place.name))
            edges = tuple(sorted(tuple(sorted(link.spec.endpoints)) for link in links))
            content = (places, edges)
            body = self._by_content.get(content)
            if body is None:
                body = points_body(substrate_layout(places, edges))
                _keep(self._by_content, content, body, self.KEPT)
            _keep(self._by_revisions, revisions, body, self.KEPT)
            return body


def _keep(memo: dict, key, value, kept: int) -> None:
    if len(memo) >= kept:
        memo.pop(next(iter(memo)))  # the oldest
    memo[key] = value


def points_body(layout: Layout) -> bytes:
    """`"method":…,"width":…,"height":…,"points":{…}` without the braces: spliced into each answer."""
    return render({"method": layout.method, "width": WIDTH, "height": HEIGHT,
                   "points": {name: list(point) for name, point in layout.points.items()}})[1:-1]


def _memo(request: Request) -> LayoutMemo:
    """One memo per app: revisions are per store, and two stores may have the same keys at the same revisions."""
    memo = getattr(request.app.state, "substrate_layout", None)
    if memo is None:
        memo = request.app.state.substrate_layout = LayoutMemo()
    return memo


@router.get("/layout", operation_id="readSubstrateLayout", summary="Read the substrate's map layout",
            responses={200: {"model": SubstrateLayout}})
def read_layout(request: Request, who: Principal = Depends(principal)) -> Response:
    context = ctx(request)
    revision = context.store.revision()
    node_records = [record for record, _ in context.reads.listed(Node, None)]
    link_records = [record for record, _ in context.reads.listed(Link, None)]
    envelope = render({"apiVersion": API_VERSION, "kind": "SubstrateLayout", "metadata": {"resourceVersion": revision}})
    return Response(envelope[:-1] + b"," + _memo(request).points_json(node_records, link_records) + b"}",
                    media_type="application/json")
