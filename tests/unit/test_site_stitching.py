"""Stitches across sites (issue 14), the pure parts: the SiteStitch resource, a view with stitches, the
ranking of candidate sites and a consenting site's judgement of a request (sites/stitching.py)."""

from __future__ import annotations

import base64

import pytest

from tests.unit.test_sites import THREE, net, site
from vnstitch.domain.registry import parse_documents
from vnstitch.errors import InvalidInput
from vnstitch.sites.config import view_from_text
from vnstitch.sites.evpn import Route
from vnstitch.sites.stitching import Candidate, candidates, check_request, rank
from vnstitch.sites.tunnels import anycast_mac, public_key_hex, tunnel_ifname, tunnel_port


def stitch(name: str = "blue-green", to: str = "green", to_tenant: str = "globex", **spec) -> str:
    fields = {"from": "{network: blue}", "to": f"{{network: {to}, tenant: {to_tenant}}}", "bandwidth": "100Mbps",
              **spec}
    return (f"kind: SiteStitch\nmetadata: {{name: {name}, tenant: acme}}\n"
            f"spec: {{{', '.join(f'{k}: {v}' for k, v in fields.items())}}}\n")


def green(policy: str = "{allowStitchTo: [acme/blue]}", nodes=("c-1",)) -> str:
    members = ", ".join(f"{{name: g{i}, node: {n}, address: 10.3.0.{i + 1}}}" for i, n in enumerate(nodes))
    return (f"kind: VirtualNetwork\nmetadata: {{name: green, tenant: globex}}\n"
            f"spec: {{vnid: 300, cidr: 10.3.0.0/24, policy: {policy}, members: [{members}]}}\n")


VIEW = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]), green(), stitch()]))
KEY = base64.b64encode(bytes(range(32))).decode()


def request(**changes) -> dict:
    body = {"site": "a", "stitch": "acme/blue-green", "bandwidthBps": 1e8, "tunnel": "wireguard",
            "from": {"tenant": "acme", "network": "blue", "vnid": 100, "cidr": "10.1.0.0/24", "labels": {}},
            "to": {"tenant": "globex", "network": "green"}, "publicKey": KEY, "endpoint": "10.250.0.1:40001"}
    body.update(changes)
    return body


def test_a_site_stitch_is_parsed_with_its_defaults_and_keys():
    [parsed] = parse_documents(stitch())
    assert parsed.spec.tunnel == "wireguard" and parsed.spec.bandwidth == 1e8 and parsed.spec.max_latency is None
    assert (parsed.key, parsed.from_key, parsed.to_key) == ("acme/blue-green", "acme/blue", "globex/green")
    assert VIEW.stitches == {"acme/blue-green": parsed}
    assert VIEW.vnets["globex/green"].spec.cidr == "10.3.0.0/24"


@pytest.mark.parametrize("text, message", [
    (stitch(bandwidth="100"), "spec.bandwidth: 100 has no unit"),
    (stitch(bandwidth="0bps"), "spec.bandwidth"),
    (stitch(to="blue", to_tenant="acme"), "spec.to: a network cannot be stitched to itself"),
    (stitch(**{"from": "{network: blue, tenant: globex}"}), "spec.from.tenant: a site stitch starts at a network"),
    (stitch(tunnel="gre"), "spec.tunnel"),
    (stitch(maxLatency="20"), "spec.maxLatency: 20 has no unit"),
])
def test_a_bad_site_stitch_is_refused_naming_the_field(text, message):
    with pytest.raises(InvalidInput) as caught:
        parse_documents(text)
    assert message in str(caught.value)


def test_the_same_stitch_twice_in_a_view_is_refused():
    with pytest.raises(InvalidInput, match="SiteStitch 'acme/blue-green' is given twice"):
        view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]), stitch(), stitch()]))


def route(vnid: int, origin: int, path: tuple[int, ...], mbps: int = 1000, tenant: str = "globex") -> Route:
    from vnstitch.sites.config import tenant_tag

    vtep = f"10.250.0.{origin}"
    return Route(f"[type:multicast][rd:{vtep}:{vnid}][etag:{vnid}][ip:{vtep}]", vnid, vtep, False, path, vnid, vtep,
                 ((65100 + origin, 1, mbps), (65100 + origin, 2, tenant_tag(tenant))))


def test_candidates_are_the_sites_whose_accepted_adverts_carry_the_vnid_with_their_shortest_path():
    local = VIEW.site("a")
    routes = [route(300, 3, (65103,)), route(300, 3, (65102, 65103)), route(300, 2, (65102,), mbps=400),
              route(100, 2, (65102,)), route(300, 9, (65109,))]           # another VNI, an unknown site
    assert candidates(routes, VIEW, local, 300) == {"c": (1000, 1), "b": (400, 1)}
    wrong_tenant = [route(300, 3, (65103,), tenant="acme")]
    assert candidates(wrong_tenant, VIEW, local, 300) == {}, "judged as every route: green is globex's VNID"


def test_ranking_orders_by_cost_latency_then_bandwidth_and_keeps_the_site_in_use():
    b, c, d = (Candidate("b", 1000, 2, 0.001), Candidate("c", 1000, 1, 0.030), Candidate("d", 2000, 1, 0.031))
    order, excluded = rank([b, c, d], 1e8, None, None)
    assert [x.site for x in order] == ["d", "c", "b"] and excluded == [], \
        "one AS hop first; 30 and 31 ms tie, so d's 2 Gbit/s wins; b (two hops) last, although nearest"
    assert [x.site for x in rank([b, c, d], 1e8, None, "b")[0]] == ["b", "d", "c"], "no flap while b holds"
    far = Candidate("e", 1000, 1, 0.200)
    slow = rank([c, far], 1e8, 0.1, None)
    assert [x.site for x in slow[0]] == ["c"] and slow[1] == ["site e is 200 ms away, above maxLatency"]
    thin = rank([Candidate("f", 50, 1, 0.001), Candidate("g", 1000, 1, None)], 1e8, None, None)
    assert thin[0] == [] and thin[1] == ["site f offers 50Mbps, 100Mbps asked",
                                         "site g's route manager does not answer"]


C_SITE = VIEW.site("c")


@pytest.mark.parametrize("body, peer, code, reason", [
    (request(), "10.250.0.1", 200, ""),
    (request(site="zz"), "10.250.0.1", 403, "site 'zz' is not a peer of site c"),
    (request(site="c"), "10.250.0.3", 403, "'c' is not a peer of site c"),
    (request(), "10.250.0.2", 403, "claims site a but comes from 10.250.0.2, not its address 10.250.0.1"),
    (request(bandwidthBps="lots"), "10.250.0.1", 400, "malformed"),
    (request(publicKey="short"), "10.250.0.1", 400, "not base64"),
    (request(endpoint="10.9.9.9:4000"), "10.250.0.1", 400, "is not at site a's tunnel address 10.250.0.1"),
    (request(to={"tenant": "globex", "network": "nope"}), "10.250.0.1", 404, "globex/nope is not served at site c"),
    (request(**{"from": {"tenant": "acme", "network": "blue", "vnid": 101, "cidr": "10.1.0.0/24"}}), "10.250.0.1",
     403, "network acme/blue has VNID 100 here; site a says 101"),
    (request(**{"from": {"tenant": "acme", "network": "blue", "vnid": 100, "cidr": "10.3.0.0/25"}}), "10.250.0.1",
     403, "overlaps globex/green's 10.3.0.0/24"),
    (request(bandwidthBps=5e9), "10.250.0.1", 403, "site c offers 1Gbps per network, 5Gbps asked"),
    (request(stitch="other/blue-green"), "10.250.0.1", 403, "is not of acme/blue's tenant"),
])
def test_a_consent_request_is_judged_against_the_consenting_sites_view(body, peer, code, reason):
    got_code, got_reason, _ = check_request(body, peer, VIEW, C_SITE)
    assert got_code == code and reason in got_reason, got_reason


def test_consent_follows_the_owning_networks_policy():
    closed = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]), green(policy="{allowStitchTo: []}")]))
    code, reason, _ = check_request(request(), "10.250.0.1", closed, closed.site("c"))
    assert (code, reason) == (403, "network 'globex/green' does not allow stitching to 'acme/blue'")
    by_label = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]),
                                            green(policy="{allowStitchTo: [{matchLabels: {tier: a}, tenant: acme}]}")]))
    assert check_request(request(), "10.250.0.1", by_label, by_label.site("c"))[0] == 403
    labelled = request(**{"from": {**request()["from"], "labels": {"tier": "a"}}})
    assert check_request(labelled, "10.250.0.1", by_label, by_label.site("c"))[0] == 200


def test_tunnel_names_ports_and_the_anycast_mac_are_stable_and_distinct():
    one, two = tunnel_ifname("ns-a", "a", "acme/x"), tunnel_ifname("ns-c", "c", "a|acme/x")
    assert one != two and len(one) <= 15 and one == tunnel_ifname("ns-a", "a", "acme/x")
    assert 40000 <= tunnel_port(one) < 60000 and tunnel_port(one) == tunnel_port(one)
    assert anycast_mac(300) == "02:76:73:00:01:2c" and anycast_mac(16777215) == "02:76:73:ff:ff:ff"
    assert public_key_hex(KEY) == bytes(range(32)).hex()
    with pytest.raises(ValueError, match="not 32 bytes"):
        public_key_hex(base64.b64encode(b"x" * 16).decode())


def test_site_documents_with_a_site_stitch_still_read():
    text = "---\n".join([site("a", 1), site("b", 2), net("blue", 100, ["a-1"]), stitch(to="ghost")])
    view = view_from_text(text)
    assert "globex/ghost" not in view.vnets and list(view.stitches) == ["acme/blue-green"], \
        "a stitch to a network the view lacks is the stitch's failure (its status), not the view's"


def test_of_the_sites_serving_from_the_first_live_one_initiates_and_the_others_stand_by(tmp_path):
    from vnstitch.sites.stitching import Stitcher

    view = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1", "b-1"]), green(), stitch()]))
    stitcher = Stitcher("b", "vns-none", str(tmp_path))
    stitcher.step(view, view.site("b"), [], live={"a", "c"})
    assert stitcher.status["acme/blue-green"]["state"] == "Standby"
    assert stitcher.status["acme/blue-green"]["site"] == "a"
    assert stitcher.tunnels.present() == set(), "a standing-by site makes no tunnel end"
    stitcher.close()
