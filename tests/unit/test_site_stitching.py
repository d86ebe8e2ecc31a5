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
    (request(to={"tenant": "globex", "network": "nope"}), "10.250.0.1", 403,
     "site c does not consent to acme/blue → globex/nope (no such network here, or its policy does not allow it)"),
    (request(to={"tenant": "acme", "network": "nope"}), "10.250.0.1", 404, "acme/nope is not served at site c"),
    (request(**{"from": {"tenant": "acme", "network": "blue", "vnid": 101, "cidr": "10.1.0.0/24"}}), "10.250.0.1",
     403, "network acme/blue is VNID 100, 10.1.0.0/24 here; site a says VNID 101, 10.1.0.0/24"),
    (request(**{"from": {"tenant": "acme", "network": "blue", "vnid": 100, "cidr": "10.250.0.0/24"}}), "10.250.0.1",
     403, "network acme/blue is VNID 100, 10.1.0.0/24 here; site a says VNID 100, 10.250.0.0/24"),
    (request(**{"from": {"tenant": "acme", "network": "blue", "vnid": 100, "cidr": "fd00::/64"}}), "10.250.0.1",
     400, "is not IPv4"),
    (request(to={"tenant": "acme", "network": "blue"}), "10.250.0.1", 400, "acme/blue cannot be stitched to itself"),
    (request(bandwidthBps=5e9), "10.250.0.1", 403, "site c offers 1Gbps per network, 5Gbps asked"),
    (request(stitch="other/blue-green"), "10.250.0.1", 403, "is not of acme/blue's tenant"),
])
def test_a_consent_request_is_judged_against_the_consenting_sites_view(body, peer, code, reason):
    got_code, got_reason, _ = check_request(body, peer, VIEW, C_SITE)
    assert got_code == code and reason in got_reason, got_reason


def test_consent_follows_the_owning_networks_policy_with_the_labels_it_knows_not_those_claimed():
    closed = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]), green(policy="{allowStitchTo: []}")]))
    code, reason, _ = check_request(request(), "10.250.0.1", closed, closed.site("c"))
    assert (code, reason) == (403, "site c does not consent to acme/blue → globex/green (no such network here, or "
                                   "its policy does not allow it)"), "another tenant is not told which"
    selector = green(policy="{allowStitchTo: [{matchLabels: {tier: a}, tenant: acme}]}")
    by_label = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]), selector]))
    labelled = request(**{"from": {**request()["from"], "labels": {"tier": "a"}}})
    assert check_request(labelled, "10.250.0.1", by_label, by_label.site("c"))[0] == 403, "claimed labels count for nothing"
    tier_a = net("blue", 100, ["a-1"]).replace("metadata: {name: blue, tenant: acme}",
                                               "metadata: {name: blue, tenant: acme, labels: {tier: a}}")
    known = view_from_text("---\n".join([THREE, tier_a, selector]))
    assert check_request(request(), "10.250.0.1", known, known.site("c"))[0] == 200, "the labels c's view gives blue"


def test_a_network_the_consenting_site_does_not_know_must_be_advertised_by_the_asker():
    from vnstitch.sites.config import tenant_tag

    unknown = view_from_text("---\n".join([THREE, green(policy="{allowStitchTo: [acme/blue]}")]))
    c = unknown.site("c")
    assert check_request(request(), "10.250.0.1", unknown, c, {}) == (
        403, "site a does not advertise VNI 100 for tenant acme", check_request(request(), "10.250.0.1", unknown, c)[2])
    other_tenant = {("a", 100): {"tenant_tag": tenant_tag("globex"), "prefixes": {"10.1.0.0/24"}}}
    assert check_request(request(), "10.250.0.1", unknown, c, other_tenant)[0] == 403
    no_subnet = {("a", 100): {"tenant_tag": tenant_tag("acme"), "prefixes": {"10.7.0.0/24"}}}
    assert "does not advertise 10.1.0.0/24 for VNI 100 (its subnets: 10.7.0.0/24)" in \
        check_request(request(), "10.250.0.1", unknown, c, no_subnet)[1]
    heard = {("a", 100): {"tenant_tag": tenant_tag("acme"), "prefixes": {"10.1.0.0/24", "10.250.0.0/16",
                                                                         "10.3.0.0/25"}}}
    assert check_request(request(), "10.250.0.1", unknown, c, heard)[0] == 200
    substrate = request(**{"from": {**request()["from"], "cidr": "10.250.0.0/16"}})
    assert check_request(substrate, "10.250.0.1", unknown, c, heard)[1] == \
        "10.250.0.0/16 covers site a's address 10.250.0.1", "no route into the substrate"
    inside = request(**{"from": {**request()["from"], "cidr": "10.3.0.0/25"}})
    assert "overlaps globex/green's 10.3.0.0/24, served at site c" in \
        check_request(inside, "10.250.0.1", unknown, c, heard)[1]


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


class FakeTunnels:
    """SiteTunnels as the Stitcher sees it, recording what it is asked (no kernel)."""

    def __init__(self):
        self.connected, self.removed, self.ends = [], [], set()

    def identity(self, ifname):
        self.ends.add(ifname)
        return KEY, 40001

    def connect(self, route, public, endpoint, initiator):
        self.connected.append((route, public, endpoint, initiator))

    def remove(self, ifname):
        self.removed.append(ifname)
        self.ends.discard(ifname)

    def present(self):
        return set(self.ends)

    def status(self):
        return {}

    def close(self):
        pass


def initiator(tmp_path, answers):
    """Site a's Stitcher for acme/blue-green with consent answers taken from `answers` (method, path) → answer."""
    from vnstitch.sites.stitching import Stitcher

    stitcher = Stitcher("a", "vns-none", str(tmp_path))
    stitcher.tunnels = FakeTunnels()
    calls = []

    def call(peer, method, path, body=None, timeout_s=2.0):
        calls.append((peer.name, method, path.split("?")[0]))
        return answers(method, path)
    stitcher._call = call
    return stitcher, calls


ROUTES_C = [route(300, 3, (65103,))]
OPEN = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1"]).replace(
    "spec: {", "spec: {policy: {allowStitchTo: [globex/green]}, "), green(), stitch()]))
GOOD = {"accepted": True, "publicKey": KEY, "endpoint": "10.250.0.3:40002", "cidr": "10.3.0.0/24", "vnid": 300,
        "leaseS": 30}


def test_an_answer_for_another_prefix_is_not_routed_and_the_consent_is_handed_back(tmp_path):
    bad = {**GOOD, "cidr": "0.0.0.0/0"}
    stitcher, calls = initiator(tmp_path, lambda m, p: (200, {"site": "c"}, 0.001) if m == "GET" else
                                (200, bad, 0.001) if m == "POST" else (200, {"removed": True}, 0.001))
    stitcher.step(OPEN, OPEN.site("a"), ROUTES_C, live={"c"})
    state = stitcher.status["acme/blue-green"]
    assert state["state"] == "Failed" and "answers for 0.0.0.0/0 (VNI 300), not globex/green's 10.3.0.0/24" in \
        state["message"]
    assert stitcher.tunnels.connected == [] and ("c", "DELETE", "/v1/consents") in calls


def test_a_renewal_that_times_out_keeps_the_tunnel_while_the_lease_lasts(tmp_path):
    answers = {"POST": (200, GOOD, 0.001)}
    stitcher, calls = initiator(tmp_path, lambda m, p: answers.get(m, (200, {"site": "c"}, 0.001)))
    stitcher.step(OPEN, OPEN.site("a"), ROUTES_C, live={"c"})
    assert stitcher.status["acme/blue-green"]["state"] == "Established" and len(stitcher.tunnels.connected) == 1
    answers["POST"] = (None, {"reason": "10.250.0.3:7179 does not answer (timed out)"}, 2.0)
    stitcher.step(OPEN, OPEN.site("a"), ROUTES_C, live={"c"})
    kept = stitcher.status["acme/blue-green"]
    assert kept["state"] == "Established" and "the tunnel stays while its consent lasts" in kept["message"]
    assert stitcher.tunnels.removed == [] and ("c", "DELETE", "/v1/consents") not in calls
    stitcher.step(OPEN, OPEN.site("a"), [], live=set(), settling=True)
    assert stitcher.status["acme/blue-green"]["state"] == "Established", "a RIB still filling after a restart"
    stitcher.step(OPEN, OPEN.site("a"), [], live=set())
    gone = stitcher.status["acme/blue-green"]
    assert gone["state"] == "Failed" and "site c's routes were withdrawn" in gone["message"]
    assert len(stitcher.tunnels.removed) == 1 and ("c", "DELETE", "/v1/consents") in calls


def test_unauthenticated_or_spoofed_requests_touch_no_consent(tmp_path):
    from vnstitch.sites.stitching import Stitcher

    stitcher = Stitcher("c", "vns-none", str(tmp_path))
    stitcher.tunnels = FakeTunnels()
    stitcher.view, stitcher.site = VIEW, VIEW.site("c")
    code, answer = stitcher.handle("POST", "/v1/consents", {}, request(), "10.250.0.1")
    assert code == 200 and answer["cidr"] == "10.3.0.0/24" and list(stitcher.consents) == ["a|acme/blue-green"]
    assert stitcher.handle("DELETE", "/v1/consents", {"site": "a", "stitch": "acme/blue-green"}, {},
                           "10.250.0.99")[0] == 403
    assert stitcher.handle("POST", "/v1/consents", {}, request(bandwidthBps=9e12), "10.250.0.99")[0] == 403
    assert list(stitcher.consents) == ["a|acme/blue-green"], "a stranger cannot end a consent"
    stitcher.live = {"a"}
    taken = stitcher.handle("POST", "/v1/consents", {}, request(site="b", endpoint="10.250.0.2:40003"), "10.250.0.2")
    assert taken[0] == 409 and "site a holds stitch acme/blue-green" in taken[1]["reason"]
    stitcher.live = set()   # a's adverts went: b may take the stitch over
    assert stitcher.handle("POST", "/v1/consents", {}, request(site="b", endpoint="10.250.0.2:40003"),
                           "10.250.0.2")[0] == 200
    assert list(stitcher.consents) == ["b|acme/blue-green"]
    assert stitcher.handle("DELETE", "/v1/consents", {"site": "b", "stitch": "acme/blue-green"}, {},
                           "10.250.0.2") == (200, {"removed": True})
    assert stitcher.consents == {}
