"""A list answer is spliced from each object's memoised JSON (api/reads.py): it must be the very bytes that
validating and dumping every object would give, on every page, with selectors, across tenants, after writes."""

from __future__ import annotations

from vnstitch.api.routes._common import dump, list_body, paginate, parse_selector, selector_matches
from vnstitch.api.reads import render
from tests.api.payloads import stitch, vnet


def dumped(api, kind: str, tenant: str | None, revision: int, limit=None, continue_=None, selector=None) -> bytes:
    """What the list answer was before the memo: every object validated and dumped, then paginated."""
    controller = api.app.state.ctx.controller
    items = [o for o in (dump(r) for r in controller.list(kind, tenant))
             if selector_matches(parse_selector(selector), o["metadata"].get("labels", {}))]
    page, token = paginate(items, limit, continue_)
    return render(list_body(kind, page, revision, token))


def test_list_bytes_equal_the_dumped_objects_on_every_page(api):
    for i in range(5):
        body = vnet(f"n{i}", 100 + i, f"10.{i}.0.0/24", [("vm", "NYCMng", f"10.{i}.0.2")])
        body["metadata"]["labels"] = {"tier": "even" if i % 2 == 0 else "odd"}
        assert api.call("member", "POST", "/v1/virtualnetworks", json=body).status_code == 201
    assert api.call("other", "POST", "/v1/virtualnetworks", json=vnet("g0", 200, "10.9.0.0/24", [])).status_code == 201
    assert api.call("member", "POST", "/v1/stitches", json=stitch("s01", "n0", "n1")).status_code == 201
    for who, path, kind, tenant in (("member", "/v1/virtualnetworks", "VirtualNetwork", "acme"),
                                    ("admin", "/v1/virtualnetworks", "VirtualNetwork", None),
                                    ("member", "/v1/stitches", "Stitch", "acme"),
                                    ("member", "/v1/substrate/links", "Link", None)):
        answer = api.call(who, "GET", path)
        revision = answer.json()["metadata"]["resourceVersion"]
        assert answer.content == dumped(api, kind, tenant, revision), path
    token, pages = None, 0
    while True:  # pages of 2 with a selector: the same bytes, the same continue tokens
        params = {"limit": 2, "labelSelector": "tier=even", **({"continue": token} if token else {})}
        answer = api.call("member", "GET", "/v1/virtualnetworks", params=params)
        revision = answer.json()["metadata"]["resourceVersion"]
        assert answer.content == dumped(api, "VirtualNetwork", "acme", revision, 2, token, "tier=even")
        token, pages = answer.json()["metadata"]["continue"], pages + 1
        if not token:
            break
    assert pages == 2
    # a write shows at once (the memo is per revision), and another tenant's objects never
    patched = api.call("member", "PATCH", "/v1/virtualnetworks/n1", json={"metadata": {"labels": {"tier": "even"}}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    names = [o["metadata"]["name"] for o in api.call("member", "GET", "/v1/virtualnetworks",
                                                     params={"labelSelector": "tier=even"}).json()["items"]]
    assert names == ["n0", "n1", "n2", "n4"]
