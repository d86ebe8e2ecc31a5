"""Sites (issue 14), the pure parts: the Site resource, a route manager's view of a resource file, the EVPN
type-3 encoding and what a route manager accepts from its RIB."""

from __future__ import annotations

import pytest

from vnstitch.domain.registry import KINDS, parse_documents
from vnstitch.errors import InvalidInput
from vnstitch.sites.config import tenant_tag, view_from_text
from vnstitch.sites.evpn import Route, adverts, decide, decode_rib, judge, own_adverts
from vnstitch.sites.gobgp import Timers, speaker_config


def site(name: str, index: int, **spec) -> str:
    fields = {"nodes": f"[{name}-1]", "borderNode": f"{name}-1", "asNumber": 65100 + index,
              "routeManagerAddress": f"10.250.0.{index}", **spec}
    return f"kind: Site\nmetadata: {{name: {name}}}\nspec: {{{', '.join(f'{k}: {v}' for k, v in fields.items())}}}\n"


def net(name: str, vnid: int, nodes: list[str], tenant: str = "acme", prefix: str = "10.1.0") -> str:
    members = ", ".join(f"{{name: {name}{i}, node: {n}, address: {prefix}.{i + 1}}}" for i, n in enumerate(nodes))
    return (f"kind: VirtualNetwork\nmetadata: {{name: {name}, tenant: {tenant}}}\n"
            f"spec: {{vnid: {vnid}, cidr: {prefix}.0/24, members: [{members}]}}\n")


THREE = "---\n".join([site("a", 1, offeredBandwidth="2.5Gbps"), site("b", 2), site("c", 3)])
VIEW = view_from_text("---\n".join([THREE, net("blue", 100, ["a-1", "b-1"])]))


def refusal(text: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        view_from_text(text)
    return str(caught.value)


def test_site_is_a_registered_kind_with_its_defaults():
    assert KINDS["Site"].PLURAL == "sites"
    [parsed] = parse_documents(site("a", 1))
    assert parsed.spec.vtep == "10.250.0.1" and parsed.spec.trust_level == "trusted"
    assert parsed.spec.offered_bandwidth == 1e9


@pytest.mark.parametrize("spec,message", [
    ({"borderNode": "zz"}, "spec.borderNode: 'zz' is not one of the site's nodes (a-1)"),
    ({"asNumber": 0}, "spec.asNumber: must be ≥ 1"),
    ({"asNumber": 4294967296}, "spec.asNumber: must be ≤ 4294967295"),
    ({"asNumber": 23456}, "spec.asNumber: 23456 is AS_TRANS (RFC 6793), not an AS a site can use"),
    ({"routeManagerAddress": "fd00::1"}, "spec.routeManagerAddress: fd00::1 is IPv6: sites run over an IPv4 "
                                         "substrate only (docs/SITES.md)"),
    ({"routeManagerAddress": "nowhere"}, "spec.routeManagerAddress: 'nowhere' is not an IP address"),
    ({"tunnelAddress": "0.0.0.0"}, "spec.tunnelAddress: 0.0.0.0 cannot be a tunnel address"),
    ({"nodes": "[a-1, a-1]"}, "spec.nodes: [1]: node 'a-1' is listed twice"),
    ({"trustLevel": "friendly"}, "spec.trustLevel: must be one of: trusted, partner, untrusted"),
    ({"offeredBandwidth": 5}, "spec.offeredBandwidth: 5 has no unit"),
    ({"colour": "red"}, "spec.colour: is not a known field"),
])
def test_a_bad_site_is_refused_naming_the_field(spec, message):
    assert message in refusal(site("a", 1, **spec))


@pytest.mark.parametrize("text,message", [
    ("---\n".join([THREE, net("blue", 100, ["a-1"]), net("red", 100, ["c-1"], tenant="globex", prefix="10.2.0")]),
     "VNID 100 is claimed by acme/blue and globex/red"),
    ("---\n".join([THREE, net("blue", 100, ["z-1"])]), "member blue0 is on node 'z-1', which no Site lists"),
    ("---\n".join([THREE, site("d", 4, asNumber=65101)]), "sites 'a' and 'd' both have AS 65101"),
    ("---\n".join([THREE, site("d", 4, routeManagerAddress="10.250.0.2", asNumber=65200)]),
     "sites 'b' and 'd' both use 10.250.0.2"),
    ("---\n".join([THREE, site("a", 9)]), "Site 'a' is given twice"),
    ("---\n".join([THREE, "kind: Node\nmetadata: {name: n}\n"]), "Site, VirtualNetwork and SiteStitch resources only"),
    ("---\n".join([THREE, net("blue", 16777216, ["a-1"])]), "spec.vnid: must be ≤ 16777215"),
])
def test_a_view_that_does_not_hold_together_is_refused(text, message):
    assert message in refusal(text)


def test_an_unknown_site_lists_the_known_ones():
    with pytest.raises(InvalidInput, match=r"unknown site 'zz' \(sites: a, b, c\)"):
        VIEW.site("zz")


def test_a_site_advertises_what_its_nodes_serve_with_vtep_bandwidth_and_tenant():
    advert, subnet = sorted(adverts(VIEW, VIEW.sites["a"]))
    assert advert.add_args() == ["multicast", "10.250.0.1", "etag", "100", "rd", "10.250.0.1:100", "rt", "65101:100",
                                 "encap", "vxlan", "pmsi", "ingress-repl", "100", "10.250.0.1", "large-community",
                                 f"65101:1:2500,65101:2:{tenant_tag('acme')}"]
    assert subnet.add_args() == ["prefix", "10.1.0.0/24", "gw", "10.250.0.1", "etag", "0", "label", "100", "rd",
                                 "10.250.0.1:100", "rt", "65101:100", "encap", "vxlan", "large-community",
                                 f"65101:1:2500,65101:2:{tenant_tag('acme')}"], "the subnet, as a type-5 route"
    assert subnet.del_args() == subnet.add_args()[:10]
    assert adverts(VIEW, VIEW.sites["c"]) == set()
    assert len(adverts(VIEW, VIEW.sites["a"], prefixes=False)) == 1


def rib_path(vni: int, vtep: str, as_path: list[int], large: list[tuple[int, int, int]], label: int | None = None,
             nexthop: str = "10.250.0.9", route_type: int = 3, prefix: str = "") -> dict:
    attrs = [{"type": 1, "value": 2}, {"type": 14, "nexthop": nexthop, "afi": 25, "safi": 70}]
    if as_path:
        attrs.append({"type": 2, "as_paths": [{"segment_type": 2, "num": len(as_path), "asns": as_path}]})
    if label is not None:
        attrs.append({"type": 22, "tunnel-type": 6, "label": label, "tunnel-id": vtep})
    if large:
        attrs.append({"type": 32, "value": [{"ASN": a, "LocalData1": b, "LocalData2": c} for a, b, c in large]})
    value = {"rd": {"type": 1, "admin": vtep, "assigned": vni % 65536}, "etag": vni, "ip": vtep}
    if route_type == 5:
        value = {"rd": value["rd"], "esi": "single-homed", "etag": 0, "prefix": prefix, "gateway": vtep, "label": vni}
    return {"nlri": {"type": route_type, "value": value}, "attrs": attrs, "best": True}


ACME = tenant_tag("acme")


def test_routes_are_judged_and_the_good_ones_become_flood_entries():
    rib = {
        "b-direct": [rib_path(100, "10.250.0.2", [65102], [(65102, 1, 1000), (65102, 2, ACME)], label=100)],
        "b-via-c": [rib_path(100, "10.250.0.2", [65103, 65102], [(65102, 1, 1000), (65102, 2, ACME)])],
        "range": [rib_path(16777216, "10.250.0.3", [65103], [(65103, 2, ACME)])],
        "zero": [rib_path(0, "10.250.0.3", [65103], [(65103, 2, ACME)])],
        "unknown": [rib_path(300, "10.250.0.3", [65103, 65099], [(65099, 2, ACME)])],
        "tenant": [rib_path(100, "10.250.0.3", [65103], [(65103, 2, 12345)])],
        "untagged": [rib_path(100, "10.250.0.3", [65103], [])],
        "vtep": [rib_path(100, "10.250.0.99", [65103], [(65103, 2, ACME)])],
        "label": [rib_path(100, "10.250.0.3", [65103], [(65103, 2, ACME)], label=101)],
        "mine": [rib_path(100, "10.250.0.1", [], [(65101, 1, 2500), (65101, 2, ACME)], nexthop="0.0.0.0")],
        "macadv": [rib_path(100, "10.250.0.2", [65102], [], route_type=2)],
    }
    routes, others = decode_rib(rib)
    decision = decide(routes, others, VIEW, VIEW.sites["a"])
    assert decision.fdb == {100: frozenset({"10.250.0.2"})}
    assert [(i.vni, i.vtep, i.site, i.bandwidth_mbps) for i in decision.learned] == [(100, "10.250.0.2", "b", 1000)]
    assert dict(decision.rejected) == {
        "range": "VNI 16777216 out of range 1..16777215 (site c)",
        "zero": "VNI 0 out of range 1..16777215 (site c)",
        "unknown": "unknown site: origin AS 65099 is no Site's asNumber",
        "tenant": "VNID 100 belongs to tenant 'acme' (acme/blue); site c advertises it for another tenant",
        "untagged": "VNI 100 from site c carries no tenant tag (65103:2:…)",
        "vtep": "VTEP 10.250.0.99 is not site c's tunnel address 10.250.0.3",
        "label": "PMSI label 101 differs from the Ethernet tag 100 (site c)",
        "macadv": "EVPN route type 2 is not used (only types 3 and 5)",
    }
    [own] = own_adverts(routes, VIEW.sites["a"])
    assert own == min(adverts(VIEW, VIEW.sites["a"])), "the type-3 one (the RIB here holds no type 5)"


def test_a_route_from_a_site_that_does_not_serve_the_vnid_here_programs_nothing():
    route = Route("x", 200, "10.250.0.2", False, (65102,), 200, "10.250.0.2", ((65102, 2, ACME),))
    assert judge(route, VIEW, VIEW.sites["a"]).vni == 200
    assert decide([route], [], VIEW, VIEW.sites["a"]).fdb == {100: frozenset()}


def test_the_speaker_peers_with_every_other_site_over_evpn_with_fast_timers():
    text = speaker_config(VIEW.sites["a"], [VIEW.sites["c"], VIEW.sites["b"]], Timers(3, 1, 1))
    assert 'router-id = "10.250.0.1"' in text and 'local-address-list = ["10.250.0.1"]' in text
    assert text.count("[[neighbors]]") == 2 and text.index("10.250.0.2") < text.index("10.250.0.3")
    assert "peer-as = 65103" in text and "hold-time = 3" in text and 'afi-safi-name = "l2vpn-evpn"' in text


def test_without_gobgps_api_definitions_the_reason_says_where_they_come_from(tmp_path, monkeypatch):
    from vnstitch.errors import DriverError
    from vnstitch.sites import gobgp_api

    monkeypatch.setenv("VNSTITCH_GOBGP_PROTO", str(tmp_path))
    (tmp_path / "gobgp.proto").write_text("")   # one of the three is not enough
    with pytest.raises(DriverError) as caught:
        gobgp_api.proto_dir()
    message = str(caught.value)
    assert "gobgp.proto, attribute.proto, capability.proto" in message and str(tmp_path) in message
    assert "scripts/system-deps.sh" in message and "VNSTITCH_GOBGP_PROTO" in message


def test_a_speaker_without_grpc_installed_falls_back_to_the_cli_and_says_why(tmp_path, monkeypatch):
    """The route manager must not die of a missing extra: the API is refused with the reason, once."""
    import sys as _sys

    from vnstitch.sites import gobgp_api
    from vnstitch.sites.gobgp import Speaker

    monkeypatch.setattr(gobgp_api, "_modules", None)
    monkeypatch.setitem(_sys.modules, "grpc", None)          # `import grpc` raises ImportError
    monkeypatch.setattr("shutil.which", lambda tool: f"/usr/bin/{tool}")
    speaker = Speaker(str(tmp_path), "vns-none")
    assert speaker.api_mode() == "cli" and speaker.peers() is None
    assert "pip install 'vnstitch[sites]'" in speaker.api_error


def test_a_speaker_whose_api_lacks_a_call_falls_back_to_the_cli_for_good(tmp_path, monkeypatch):
    """gobgpd answering UNIMPLEMENTED (another GoBGP version than the stubs') is not a failed pass: the CLI
    takes over, once and with the reason."""
    from vnstitch.sites.gobgp import Speaker
    from vnstitch.sites.gobgp_api import ApiUnimplemented

    class OldSpeakerApi:
        closed = False

        def announce(self, adverts, withdraw=False):
            raise ApiUnimplemented("gobgpd API on sock: announce 1 route(s): UNIMPLEMENTED: unknown method")

        def close(self):
            self.closed = True

    speaker = Speaker(str(tmp_path), "vns-none")
    api = speaker._api = OldSpeakerApi()
    used = []
    monkeypatch.setattr(speaker, "cli", lambda args: used.append(args))
    advert = adverts(VIEW, VIEW.site("a")).pop()
    assert speaker.announce([advert]) == "cli" and used == [["global", "rib", "-a", "evpn", "add", *advert.add_args()]]
    assert "UNIMPLEMENTED" in speaker.api_error and api.closed and speaker.api_mode() == "cli"


def test_an_own_route_is_withdrawn_when_its_destination_goes_not_when_its_attributes_change():
    from vnstitch.sites.evpn import Advert, stale

    old = Advert(100, "10.250.0.1", 65101, 1000, 7)
    assert stale({old}, {Advert(100, "10.250.0.1", 65101, 2000, 7)}) == [], "re-added with the new bandwidth"
    moved = Advert(100, "10.250.0.9", 65101, 1000, 7)
    assert stale({old}, {moved}) == [old], "a new tunnel address: the old destination is withdrawn"
    assert stale({old, Advert(200, "10.250.0.1", 65101, 1000, 7)}, {old}) == [Advert(200, "10.250.0.1", 65101, 1000, 7)]


def test_type_5_subnets_are_learned_and_a_wrong_or_malformed_prefix_is_rejected():
    good = rib_path(100, "10.250.0.2", [65102], [(65102, 1, 1000), (65102, 2, ACME)], route_type=5,
                    prefix="10.1.0.0/24")
    wrong = rib_path(100, "10.250.0.2", [65102], [(65102, 1, 1000), (65102, 2, ACME)], route_type=5,
                     prefix="10.9.0.0/24")
    bad = rib_path(100, "10.250.0.2", [65102], [(65102, 1, 1000), (65102, 2, ACME)], route_type=5,
                   prefix="10.1.0.7/24")
    routes, others = decode_rib({"good": [good], "wrong": [wrong], "bad": [bad]})
    assert others == [] and {r.prefix for r in routes} == {"10.1.0.0/24", "10.9.0.0/24", "10.1.0.7/24"}
    decision = decide(routes, others, VIEW, VIEW.sites["a"])
    assert [(p.vni, p.prefix, p.site, p.bandwidth_mbps) for p in decision.prefixes] == [(100, "10.1.0.0/24", "b", 1000)]
    reasons = dict(decision.rejected)
    assert reasons["wrong"] == "site b advertises 10.9.0.0/24 for VNI 100, but acme/blue is 10.1.0.0/24"
    assert reasons["bad"] == "prefix '10.1.0.7/24' for VNI 100 is not a network address (site b)"
    assert decision.fdb == {100: frozenset()}, "a subnet is no flood entry"
    local = rib_path(100, "10.250.0.1", [], [(65101, 1, 2500), (65101, 2, ACME)], route_type=5, nexthop="0.0.0.0",
                     prefix="10.1.0.0/24")
    own = own_adverts(decode_rib({"own": [local]})[0], VIEW.sites["a"])
    assert own == {a for a in adverts(VIEW, VIEW.sites["a"]) if a.prefix}, "our own subnet route is ours"
