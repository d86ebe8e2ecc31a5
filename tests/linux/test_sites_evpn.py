"""Sites over BGP EVPN on the real kernel (issue 14): three sites, each a namespace with a GoBGP speaker
and a VTEP on a shared hub bridge, one route manager process per site (docs/SITES.md)."""

from __future__ import annotations

import itertools
import os
import subprocess
import time

import pytest

from tests.linux.conftest import leftovers
from tests.tiers import require_tier
from vnstitch.sites.config import tenant_tag, view_from_text
from vnstitch.sites.dataplane import Vtep
from vnstitch.sites.evpn import Advert, decode_rib, own_adverts
from vnstitch.sites.gobgp import Speaker, Timers, speaker_config
from vnstitch.sites.lab import SitesLab, vnstitch_argv

A, B, C = "10.250.0.1", "10.250.0.2", "10.250.0.3"
HOLD_S = 3
_counter = itertools.count()


@pytest.fixture
def sites(tmp_path):
    """Sites a, b, c; network blue (VNID 100, tenant acme) with a member at a and at b, both attached."""
    require_tier("sites", SitesLab.available())
    name = f"e{os.getpid() % 10000}-{next(_counter)}"
    lab = SitesLab(name, str(tmp_path / "sites"), ["a", "b", "c"])
    try:
        lab.build()
        lab.write_config(blue({"va": "a", "vb": "b"}))
        for site in lab.sites:
            lab.start(site)
        lab.attach_vm("va", "a", 100, "10.1.0.1")
        lab.attach_vm("vb", "b", 100, "10.1.0.2")
        converge(lab, {"a": [B], "b": [A]}, timeout_s=30)
        deadline = time.monotonic() + 30
        while not lab.established():
            assert time.monotonic() < deadline, "the full mesh of sessions did not come up in 30s"
            time.sleep(0.1)
        yield lab
    finally:
        lab.close()
        assert lab.processes() == [], f"route managers or speakers left: {lab.processes()}"
        assert leftovers(name) == [], f"sites lab {name} left {leftovers(name)}"


def blue(members: dict[str, str], tenant: str = "acme") -> str:
    return SitesLab.network_document("blue", 100, members, tenant=tenant)


def converge(lab: SitesLab, wanted: dict[str, list[str] | None], vnid: int = 100, timeout_s: float = 10) -> float:
    """Seconds until every listed site's flood entries for vnid are exactly `wanted` (None: no device)."""
    started = time.monotonic()
    while True:
        seen = {site: lab.flood(site, vnid) for site in wanted}
        if seen == wanted:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            logs = "\n".join(f"--- {s}\n{lab.log(s)}" for s in lab.sites)
            raise AssertionError(f"after {timeout_s:g}s the flood entries are {seen}, wanted {wanted}\n{logs}")
        time.sleep(0.02)


def test_a_network_at_two_sites_reaches_across_and_follows_membership(sites):
    lab = sites
    assert lab.flood("c", 100) is None, "site c serves no member of blue: it has no VTEP device for it"
    assert lab.ping("va", "10.1.0.2", count=3), "a member at site a reaches one at site b over VXLAN"
    status = lab.status("a")
    assert status["advertised"] == [{"vni": 100, "vtep": A, "as_number": 65101, "bandwidth_mbps": 1000,
                                     "tenant_tag": status["advertised"][0]["tenant_tag"]}]
    assert status["learned"] == [{"vni": 100, "vtep": B, "site": "b", "bandwidth_mbps": 1000}]
    deadline = time.monotonic() + 5
    while "[etag:100][ip:10.250.0.1]" not in (rib := lab.gobgp("c", "global", "rib", "-a", "evpn").stdout):
        assert time.monotonic() < deadline, rib
        time.sleep(0.05)
    assert "[etag:100][ip:10.250.0.1]" in rib and "65101:1:1000" in rib, "the offered bandwidth rides along"
    assert "[type:Prefix][rd:10.250.0.1:100][etag:0][prefix:10.1.0.0/24]" in rib, "blue's subnet, as a type-5 route"
    assert status["advertisedPrefixes"] == [{"vni": 100, "prefix": "10.1.0.0/24"}]
    assert {"vni": 100, "prefix": "10.1.0.0/24", "site": "b", "bandwidth_mbps": 1000} in status["learnedPrefixes"]

    lab.write_config(blue({"va": "a", "vb": "b", "vc": "c"}))   # blue appears at site c
    took = converge(lab, {"a": [B, C], "b": [A, C], "c": [A, B]})
    assert took < 3, f"a network appearing at site c took {took:.2f}s to reach the others' FDBs"
    lab.attach_vm("vc", "c", 100, "10.1.0.3")
    assert lab.ping("vc", "10.1.0.1", count=2) and lab.ping("vc", "10.1.0.2", count=2)

    lab.write_config(blue({"va": "a", "vb": "b"}))              # and leaves it again: withdrawn
    converge(lab, {"a": [B], "b": [A], "c": None})
    assert "[ip:10.250.0.3]" not in lab.gobgp("a", "global", "rib", "-a", "evpn").stdout
    assert lab.ping("va", "10.1.0.2")


def test_a_killed_site_is_withdrawn_and_converges_on_return(sites):
    lab = sites
    assert {p["site"]: p["state"] for p in lab.status("a")["peers"]} == {"b": "established", "c": "established"}
    lab.kill("b")    # route manager and speaker SIGKILLed: nothing is withdrawn by b itself
    took = converge(lab, {"a": []}, timeout_s=HOLD_S + 1)
    assert "[ip:10.250.0.2]" not in lab.gobgp("a", "global", "rib", "-a", "evpn").stdout
    assert not lab.ping("va", "10.1.0.2", wait_s=0.5)
    # A peer that does not answer is reported: in the status at once, in the log after 3 hold times.
    deadline = time.monotonic() + 3 * HOLD_S + 8
    while "peer site b (10.250.0.2, AS 65102) does not answer" not in lab.log("a"):
        assert time.monotonic() < deadline, lab.log("a")
        time.sleep(0.2)
    down = {p["site"]: p for p in lab.status("a")["peers"]}
    assert down["b"]["state"] != "established" and down["b"]["downForS"] >= 3 * HOLD_S
    assert down["c"]["state"] == "established"
    lab.start("b")
    converge(lab, {"a": [B], "b": [A]}, timeout_s=30)
    assert lab.flood("a", 100) == [B] and lab.flood("b", 100) == [A], "no duplicate entry after the return"
    assert lab.ping("va", "10.1.0.2", count=3)
    assert took <= HOLD_S + 1
    deadline = time.monotonic() + 10
    while "peer site b (10.250.0.2) answers again" not in lab.log("a"):
        assert time.monotonic() < deadline, lab.log("a")
        time.sleep(0.2)

    # A site cut off without a word (its link down: no TCP FIN): the hold timer withdraws it.
    subprocess.run(["ip", "-n", lab.ns("b"), "link", "set", "eth0", "down"], check=True)
    cut = time.monotonic()
    converge(lab, {"a": []}, timeout_s=HOLD_S + 2)
    assert time.monotonic() - cut <= HOLD_S + 1, "withdrawn within the hold time (+ one poll)"
    converge(lab, {"b": []}, timeout_s=HOLD_S + 2)   # and b, alone, drops a's routes too
    subprocess.run(["ip", "-n", lab.ns("b"), "link", "set", "eth0", "up"], check=True)
    converge(lab, {"a": [B], "b": [A]}, timeout_s=30)
    assert lab.ping("va", "10.1.0.2", count=3)


def test_bad_input_is_rejected_and_logged_and_nothing_working_changes(sites):
    lab = sites
    # A file claiming VNID 100 for a second tenant: rejected, the last good view stays.
    lab.write_config(raw="---\n".join([lab.site_documents(), blue({"va": "a", "vb": "b"}),
                                      SitesLab.network_document("red", 100, {"vr": "c"}, tenant="globex",
                                                                cidr_prefix="10.2.0")]))
    deadline = time.monotonic() + 5
    while not (lab.status("a").get("configError") and lab.status("c").get("configError")):
        assert time.monotonic() < deadline, lab.log("a")
        time.sleep(0.05)
    assert "VNID 100 is claimed by acme/blue and globex/red" in lab.status("a")["configError"]
    assert "the last good view stays" in lab.log("a")
    time.sleep(0.5)
    assert lab.flood("c", 100) is None and lab.flood("a", 100) == [B] and lab.ping("va", "10.1.0.2")

    # Adverts from site c's speaker (a misbehaving site): a VNI out of range, an unknown origin site,
    # VNID 100 tagged for another tenant, a VTEP that is not c's.
    lab.write_config(blue({"va": "a", "vb": "b"}))
    bad = [["multicast", C, "etag", "16777216", "rd", f"{C}:1"],
           ["multicast", C, "etag", "300", "rd", f"{C}:300", "aspath", "65099"],
           ["multicast", C, "etag", "100", "rd", f"{C}:100", "pmsi", "ingress-repl", "100", C,
            "large-community", "65103:2:12345"],   # (no 65103:1 tag: c's route manager would own it)
           ["multicast", "10.250.0.99", "etag", "100", "rd", "10.250.0.99:100", "large-community", "65103:2:1"]]
    for args in bad:
        out = lab.gobgp("c", "global", "rib", "-a", "evpn", "add", *args)
        assert out.returncode == 0, out.stderr
    wanted = {"VNI 16777216 out of range 1..16777215 (site c)",
              "unknown site: origin AS 65099 is no Site's asNumber",
              "VNID 100 belongs to tenant 'acme' (acme/blue); site c advertises it for another tenant",
              "VTEP 10.250.0.99 is not site c's tunnel address 10.250.0.3"}
    deadline = time.monotonic() + 10
    while not wanted <= {r["reason"] for r in lab.status("a").get("rejected", [])}:
        assert time.monotonic() < deadline, (wanted - {r["reason"] for r in lab.status("a").get("rejected", [])},
                                             lab.gobgp("a", "global", "rib", "-a", "evpn").stdout)
        time.sleep(0.05)
    assert "rejected route" in lab.log("a") and "out of range" in lab.log("a")
    assert lab.flood("a", 100) == [B] and lab.flood("b", 100) == [A], "nothing that worked changed"
    assert lab.ping("va", "10.1.0.2", count=2)

    # The route manager reads its RIB through gobgpd's gRPC API; what it decodes there is what the CLI's
    # JSON says, for these odd routes too.
    speaker = Speaker(lab.state_dir("a"), lab.ns("a"))
    try:
        assert speaker.api_mode() == "grpc", speaker.api_error
        deadline = time.monotonic() + 5
        while True:   # two reads a moment apart: retried while a route manager changes the RIB in between
            by_api = speaker.evpn_routes()
            by_cli = decode_rib(speaker.evpn_rib())
            if sorted(by_api[0], key=repr) == sorted(by_cli[0], key=repr) and by_api[1] == by_cli[1]:
                break
            assert time.monotonic() < deadline, (by_api, by_cli)
            time.sleep(0.1)
    finally:
        speaker.close()
    assert len(by_api[0]) >= 6


def test_routes_announced_through_the_api_are_the_ones_the_cli_would_make(tmp_path):
    """On a speaker of its own: adverts announced by gRPC (one call for many) decode as the same advert added by
    `gobgp global rib add` does, by the API's reader and by the CLI's JSON alike; a withdraw by gRPC removes
    exactly those."""
    require_tier("sites", SitesLab.available())
    lab = SitesLab(f"g{os.getpid() % 10000}-{next(_counter)}", str(tmp_path / "api"), ["a"])
    speaker = None
    try:
        lab.build()
        site = view_from_text(lab.site_documents()).site("a")
        speaker = Speaker(lab.state_dir("a"), lab.ns("a"))
        os.makedirs(lab.state_dir("a"), exist_ok=True)
        speaker.start(speaker_config(site, [], Timers()))
        assert speaker.api_mode() == "grpc", speaker.api_error
        by_api = [Advert(vni, A, site.spec.as_number, 2500, tenant_tag("acme")) for vni in (501, 502, 503)]
        by_cli = Advert(504, A, site.spec.as_number, 2500, tenant_tag("acme"))
        assert speaker.announce(by_api) == "grpc"
        speaker.cli(["global", "rib", "-a", "evpn", "add", *by_cli.add_args()])
        routes, others = speaker.evpn_routes()
        assert own_adverts(routes, site) == {*by_api, by_cli} and others == []
        assert sorted(routes, key=repr) == sorted(decode_rib(speaker.evpn_rib())[0], key=repr)
        one = {r.etag: r for r in routes}
        assert (one[501].local, one[501].pmsi_label, one[501].pmsi_endpoint, one[501].large) == \
            (one[504].local, 501, A, ((site.spec.as_number, 1, 2500), (site.spec.as_number, 2, tenant_tag("acme"))))
        speaker.announce(by_api, withdraw=True)
        assert own_adverts(speaker.evpn_routes()[0], site) == {by_cli}
    finally:
        if speaker is not None:
            speaker.stop()
            speaker.close()
        lab.close()


def test_many_vnids_are_made_in_batches_and_what_is_lost_is_put_back(tmp_path):
    """Vtep.ensure_all / sync_floods: 40 VNIDs made by iproute2's batch mode and read back; a second pass
    changes nothing; a device deleted and an entry removed by hand are put back one by one."""
    require_tier("sites", SitesLab.available())
    ns = f"vns-vb{os.getpid() % 10000}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    vtep = Vtep(ns, "10.250.9.1")
    try:
        vnids = set(range(3000, 3040))
        links = vtep.links()
        assert vtep.ensure_all(vnids, links) == vnids
        floods = vtep.floods(links)
        wanted = {v: {"10.250.9.2", "10.250.9.3"} for v in vnids}
        assert vtep.sync_floods(wanted, floods, links) == vnids
        fresh = vtep.links()
        for vnid in vnids:
            br, vx = fresh[f"br{vnid}"], fresh[f"vx{vnid}"]
            assert (br["kind"], vx["kind"], br["mtu"], vx["mtu"], vx["master"], br["up"], vx["up"]) == \
                ("bridge", "vxlan", 1450, 1450, br["index"], True, True)
        assert vtep.floods(fresh) == {v: ["10.250.9.2", "10.250.9.3"] for v in vnids}
        assert vtep.ensure_all(vnids, fresh) == set() and vtep.sync_floods(wanted, vtep.floods(fresh), fresh) == set()
        subprocess.run(["ip", "-n", ns, "link", "del", "vx3007"], check=True)
        subprocess.run(["bridge", "-n", ns, "fdb", "del", "00:00:00:00:00:00", "dev", "vx3011", "dst", "10.250.9.3"],
                       check=True)
        links = vtep.links()
        assert vtep.ensure_all(vnids, links) == {3007}
        floods = vtep.floods(links)
        assert vtep.sync_floods(wanted, floods, links) == {3007, 3011}
        assert vtep.floods(vtep.links()) == {v: ["10.250.9.2", "10.250.9.3"] for v in vnids}
    finally:
        vtep.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_an_unknown_site_is_refused_at_start(sites):
    out = subprocess.run([*vnstitch_argv(), "route-manager", "--site", "zz", "-f", sites.config_path, "--netns",
                          sites.ns("a"), "--state-dir", os.path.join(sites.directory, "zz")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "unknown site 'zz' (sites: a, b, c)" in out.stderr


def test_route_managers_read_their_view_from_the_store_and_follow_what_is_applied(tmp_path):
    """Without -f, a route manager's Sites and VirtualNetworks are the state store's (every tenant): what
    `vnstitch apply` writes there is advertised, and a network that grows to a third site is followed."""
    require_tier("sites", SitesLab.available())
    name = f"e{os.getpid() % 10000}-{next(_counter)}"
    lab = SitesLab(name, str(tmp_path / "sites"), ["a", "b", "c"])
    store = f"sqlite://{tmp_path}/state.db"

    nodes = [f"kind: Node\nmetadata: {{name: {site}-{i}}}\n" for site in lab.sites for i in (1, 2)]

    def apply(*docs: str) -> None:   # the substrate's nodes, the Sites, the networks: one apply
        done = subprocess.run([*vnstitch_argv(), "--store", store, "--create", "apply", "-f", "-"],
                              input="---\n".join([*nodes, lab.site_documents(), *docs]), capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
    try:
        lab.build()
        apply(blue({"va": "a", "vb": "b"}))
        for site in lab.sites:
            lab.start(site, store=store)
        lab.attach_vm("va", "a", 100, "10.1.0.1")
        lab.attach_vm("vb", "b", 100, "10.1.0.2")
        converge(lab, {"a": [B], "b": [A], "c": None}, timeout_s=30)
        assert lab.ping("va", "10.1.0.2", count=3), "a member at site a reaches one at site b"
        apply(blue({"va": "a", "vb": "b", "vc": "c"}))   # blue appears at site c, through the store
        took = converge(lab, {"a": [B, C], "b": [A, C], "c": [A, B]})
        assert took < 5, f"{took:.2f}s from the apply to every site's flood entries"
        assert all(lab.status(s)["configError"] is None for s in lab.sites)
    finally:
        lab.close()
        assert lab.processes() == [], f"route managers or speakers left: {lab.processes()}"
        assert leftovers(name) == [], f"sites lab {name} left {leftovers(name)}"
