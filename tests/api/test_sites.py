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
