"""/v1/sites (issue 14): admins declare sites, every tenant reads them; bad specs are refused naming the
field, and nothing is stored."""

SITE = {"kind": "Site", "metadata": {"name": "east"},
        "spec": {"nodes": ["NYCMng", "WASHng"], "borderNode": "NYCMng", "asNumber": 65001,
                 "routeManagerAddress": "192.0.2.1", "trustLevel": "partner", "offeredBandwidth": "2Gbps"}}


def test_an_admin_declares_a_site_and_a_member_reads_it(api):
    created = api.call("admin", "POST", "/v1/sites", json=SITE)
    assert created.status_code == 201, created.text
    read = api.call("member", "GET", "/v1/sites/east").json()
    assert read["spec"]["borderNode"] == "NYCMng" and read["spec"]["offeredBandwidth"] == 2e9
    assert [s["metadata"]["name"] for s in api.call("other", "GET", "/v1/sites").json()["items"]] == ["east"]
    assert api.call("member", "DELETE", "/v1/sites/east").status_code == 403
    assert api.call("admin", "DELETE", "/v1/sites/east").status_code == 200
    assert api.call("member", "GET", "/v1/sites/east").status_code == 404


def test_a_bad_site_is_refused_naming_the_field_and_nothing_is_stored(api):
    cases = [
        ({"asNumber": 23456}, "spec.asNumber", "AS_TRANS"),
        ({"borderNode": "CHINng"}, "spec.borderNode", "'CHINng' is not one of the site's nodes (NYCMng, WASHng)"),
        ({"routeManagerAddress": "2001:db8::1"}, "spec.routeManagerAddress", "IPv6"),
        ({"nodes": ["NYCMng", "NYCMng"], "borderNode": "NYCMng"}, "spec.nodes", "listed twice"),
    ]
    for change, field, words in cases:
        body = {**SITE, "spec": {**SITE["spec"], **change}}
        answer = api.call("admin", "POST", "/v1/sites", json=body)
        assert answer.status_code == 422, (change, answer.text)
        text = answer.text
        assert field in text and words in text, (change, text)
    assert api.call("admin", "GET", "/v1/sites").json()["items"] == []


def test_a_site_that_clashes_with_another_is_refused_naming_both(api):
    assert api.call("admin", "POST", "/v1/sites", json=SITE).status_code == 201
    west = {"kind": "Site", "metadata": {"name": "west"},
            "spec": {"nodes": ["LOSAng"], "borderNode": "LOSAng", "asNumber": 65002,
                     "routeManagerAddress": "192.0.2.2"}}
    cases = [
        ({"asNumber": 65001}, "spec.asNumber", "sites 'east' and 'west' both have AS 65001"),
        ({"routeManagerAddress": "192.0.2.1"}, "spec.routeManagerAddress", "sites 'east' and 'west' both use 192.0.2.1"),
        ({"nodes": ["LOSAng", "WASHng"]}, "spec.nodes", "node 'WASHng' is in sites 'east' and 'west'"),
    ]
    for change, field, words in cases:
        answer = api.call("admin", "POST", "/v1/sites", json={**west, "spec": {**west["spec"], **change}})
        assert answer.status_code == 422 and answer.json()["field"] == field and words in answer.text, answer.text
    assert api.call("admin", "POST", "/v1/sites", json=west).status_code == 201
    # replacing a site with its own values again is not a clash with itself
    assert api.call("admin", "PUT", "/v1/sites/east", json=SITE).status_code == 200
    assert sorted(s["metadata"]["name"] for s in api.call("member", "GET", "/v1/sites").json()["items"]) == \
        ["east", "west"]


def test_two_clashing_sites_in_one_apply_are_refused_and_neither_is_stored(api):
    twin = {**SITE, "metadata": {"name": "twin"}, "spec": {**SITE["spec"], "nodes": ["CHINng"],
                                                            "borderNode": "CHINng", "routeManagerAddress": "192.0.2.9"}}
    answer = api.call("admin", "POST", "/v1/apply", json={"items": [SITE, twin]})
    assert answer.status_code == 422, answer.text
    assert "sites 'east' and 'twin' both have AS 65001" in answer.text
    assert api.call("admin", "GET", "/v1/sites").json()["items"] == []


def test_apply_names_the_kinds_it_takes_in_plain_words(api):
    answer = api.call("admin", "POST", "/v1/apply", json={"items": [{"kind": "Proposal", "metadata": {"name": "p"}}]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "items[0]"
    assert "kind 'Proposal' cannot be given here; kinds: Node, Link, Site" in answer.json()["message"], answer.text


def test_a_member_applies_a_site_stitch_for_the_route_managers_and_its_network_must_exist(api):
    from tests.api.payloads import vnet
    from vnstitch.sites.config import view_from_store

    site_stitch = {"kind": "SiteStitch", "metadata": {"name": "blue-green"},
                   "spec": {"from": {"network": "blue"}, "to": {"network": "green", "tenant": "globex"},
                            "bandwidth": "100Mbps"}}
    missing = api.call("member", "POST", "/v1/apply", json={"items": [site_stitch]})
    assert missing.status_code == 422 and missing.json()["field"] == "spec.from.network", missing.text
    assert "unknown network 'blue' in tenant 'acme'" in missing.json()["message"]
    bare = {**site_stitch, "spec": {**site_stitch["spec"], "bandwidth": 100}}
    assert api.call("member", "POST", "/v1/apply", json={"items": [bare]}).status_code == 422
    blue = {"kind": "VirtualNetwork", **vnet("blue", 100, "10.1.0.0/24", [])}
    applied = api.call("member", "POST", "/v1/apply", json={"items": [blue, site_stitch]})
    assert applied.status_code == 200, applied.text
    view = view_from_store(api.app.state.ctx.store)
    assert list(view.stitches) == ["acme/blue-green"] and view.stitches["acme/blue-green"].spec.bandwidth == 1e8
