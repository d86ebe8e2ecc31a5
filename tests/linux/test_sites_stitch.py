"""Stitches across sites on the real kernel (issue 14): a network at site a stitched to networks only other
sites serve, negotiated from the EVPN adverts, consented to by the owning site's route manager and carried
by WireGuard between the border namespaces (docs/SITES.md, "Stitches across sites")."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time

import pytest

from tests.linux.conftest import leftovers
from tests.tiers import require_tier
from vnstitch.drivers.linux import wireguard
from vnstitch.drivers.linux.kernel import pid_alive, run_in
from vnstitch.sites import consent
from vnstitch.sites.lab import SitesLab

_counter = itertools.count()
LEASE_S = 4
FAST = ("--resync-interval", "1", "--consent-lease", str(LEASE_S))   # renewed each second, a lease of 4 s

BLUE = """kind: VirtualNetwork
metadata: {name: blue, tenant: acme}
spec: {vnid: 100, cidr: 10.1.0.0/24, members: [{name: a1, node: a-1, address: 10.1.0.1}],
       policy: {allowStitchTo: [globex/green, globex/red]}}
"""


def green(members: str, allow: bool = True) -> str:
    policy = "policy: {allowStitchTo: [acme/blue]}, " if allow else ""
    return f"""kind: VirtualNetwork
metadata: {{name: green, tenant: globex}}
spec: {{vnid: 300, cidr: 10.3.0.0/24, {policy}members: [{members}]}}
"""


RED = """kind: VirtualNetwork
metadata: {name: red, tenant: globex}
spec: {vnid: 400, cidr: 10.4.0.0/24, members: [{name: c2, node: c-1, address: 10.4.0.1}]}
"""


def stitch(name: str, to: str) -> str:
    return f"""kind: SiteStitch
metadata: {{name: {name}, tenant: acme}}
spec: {{from: {{network: blue}}, to: {{network: {to}, tenant: globex}}, bandwidth: 100Mbps}}
"""


@pytest.fixture
def make_lab(tmp_path):
    require_tier("sites", SitesLab.available())
    require_tier("sites", None if _have("wireguard-go") and _have("nft") and _have("iperf3")
                 else "missing wireguard-go, nft or iperf3 (scripts/system-deps.sh)")
    made: list[tuple[str, SitesLab]] = []

    def make() -> SitesLab:
        name = f"x{os.getpid() % 10000}-{next(_counter)}"
        lab = SitesLab(name, str(tmp_path / name), ["a", "b", "c"])
        made.append((name, lab))
        lab.build()
        return lab

    yield make
    for name, lab in made:
        pids = {site: lab.tunnel_pids(site) for site in lab.sites}
        lab.close()
        assert lab.processes() == [], f"route managers or speakers left: {lab.processes()}"
        assert not [p for ends in pids.values() for f, p in ends.items() if pid_alive(p, f)], "wireguard-go left"
        assert leftovers(name) == [], f"sites lab {name} left {leftovers(name)}"


def _have(tool: str) -> bool:
    import shutil
    return shutil.which(tool) is not None


def wait_for(what: str, predicate, lab: SitesLab, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {s}\n{lab.log(s)}" for s in lab.sites)
            raise AssertionError(f"{what}: not within {timeout_s:g}s\n{json.dumps(lab.status('a'), indent=1)}\n{logs}")
        time.sleep(0.1)


def reaches(lab: SitesLab, vm: str, address: str) -> bool:
    """A reply within 3 pings; else the failure says what the two sites' logs and tunnels looked like."""
    if lab.ping(vm, address, count=3, wait_s=2):
        return True
    state = {s: (lab.status(s).get("tunnels"), run_in(lab.ns(s), ["ip", "route"], check=False).stdout,
                 run_in(lab.ns(s), ["ip", "neigh"], check=False).stdout) for s in lab.sites}
    neigh = {v: run_in(lab.vm_ns(v), ["ip", "neigh"], check=False).stdout for v in lab.vms}
    raise AssertionError(f"{vm} does not reach {address}\n{state}\n{neigh}\n" +
                         "\n".join(f"--- {s}\n{lab.log(s)}" for s in lab.sites))


def stitch_state(lab: SitesLab, key: str, site: str = "a") -> dict:
    return lab.status(site).get("siteStitches", {}).get(key, {})


def iperf_mbps(lab: SitesLab, client: str, server: str, address: str) -> float:
    srv = subprocess.Popen(["ip", "netns", "exec", lab.vm_ns(server), "iperf3", "-s", "-1", "-B", address],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            out = run_in(lab.vm_ns(client), ["iperf3", "-c", address, "-t", "2", "-J"], check=False)
            received = json.loads(out.stdout or "{}").get("end", {}).get("sum_received") if out.returncode == 0 else None
            if received:
                return received["bits_per_second"] / 1e6
            time.sleep(0.1)   # the server is not listening yet
        raise AssertionError(f"iperf3 to {address} failed: {out.stdout[-400:]} {out.stderr[-400:]}")
    finally:
        srv.kill()
        srv.wait()


def test_a_stitch_to_a_network_only_at_another_site_is_negotiated_consented_and_carries_traffic(make_lab):
    lab = make_lab()
    lab.write_config(BLUE, green("{name: c1, node: c-1, address: 10.3.0.1}"), RED,
                     stitch("blue-green", "green"), stitch("blue-red", "red"))
    for site in lab.sites:
        lab.start(site, *FAST)
    lab.attach_vm("a1", "a", 100, "10.1.0.1")
    lab.attach_vm("c1", "c", 300, "10.3.0.1")
    lab.attach_vm("c2", "c", 400, "10.4.0.1")
    for vm, far in (("a1", "10.3.0.0/24"), ("a1", "10.4.0.0/24"), ("c1", "10.1.0.0/24"), ("c2", "10.1.0.0/24")):
        lab.route(vm, far)

    done = wait_for("blue-green established", lambda: stitch_state(lab, "acme/blue-green").get("state")
                    == "Established" and stitch_state(lab, "acme/blue-green"), lab)
    assert done["site"] == "c" and done["consent"] == {"by": "c", "accepted": True, "leaseS": LEASE_S}
    assert [c["site"] for c in done["candidates"]] == ["c"], "only c advertises green's VNID"
    consents = wait_for("c records the consent", lambda: lab.status("c").get("consents"), lab)
    assert list(consents) == ["a|acme/blue-green"] and consents["a|acme/blue-green"]["to"] == "globex/green"

    assert reaches(lab, "a1", "10.3.0.1"), "a member at a reaches green's member at c"
    before = wireguard.read_config(done["tunnel"])["peer"]["tx_bytes"]
    assert iperf_mbps(lab, "a1", "c1", "10.3.0.1") > 20, "the tunnel carries a TCP stream"
    assert wireguard.read_config(done["tunnel"])["peer"]["tx_bytes"] - before > 1e6, "through WireGuard"

    refused = stitch_state(lab, "acme/blue-red")
    assert refused["state"] == "Refused", refused
    assert "site c does not consent to acme/blue → globex/red" in refused["message"], "nor says whether red exists"
    assert not lab.ping("a1", "10.4.0.1", count=2, wait_s=1), "a network without consent stays unreachable"
    assert not lab.ping("c2", "10.1.0.1", count=1, wait_s=1)
    # even a member of red that sends to c's border by hand (the gateway MAC a bridge with a tunnel answers with)
    # is not forwarded into green's tunnel: the border's table forwards only the stitched prefixes
    run_in(lab.vm_ns("c2"), ["ip", "neigh", "replace", "10.1.0.1", "lladdr", "02:76:73:00:01:2c", "dev", "eth0"])
    run_in(lab.ns("c"), ["ip", "link", "set", "br400", "address", "02:76:73:00:01:2c"])
    c_end = lab.status("c")["consents"]["a|acme/blue-green"]["tunnel"]
    sent = wireguard.read_config(c_end)["peer"]["tx_bytes"]
    assert not lab.ping("c2", "10.1.0.1", count=2, wait_s=1), "red → blue through c's border: dropped"
    assert wireguard.read_config(c_end)["peer"]["tx_bytes"] == sent, "not one packet of red's entered the tunnel"
    run_in(lab.vm_ns("c2"), ["ip", "neigh", "del", "10.1.0.1", "dev", "eth0"])
    run_in(lab.ns("c"), ["ip", "link", "set", "br400", "address", "02:00:00:00:04:00"])
    assert lab.ping("a1", "10.3.0.1", count=1, wait_s=2), "green's traffic untouched"

    # bad consent requests, from site b's namespace: a site that is not a peer, one claiming another's
    # name, a malformed one; each refused with its reason and nothing changes
    good = {"site": "b", "stitch": "acme/x", "to": {"tenant": "globex", "network": "green"}, "bandwidthBps": 1e6,
            "from": {"tenant": "acme", "network": "blue", "vnid": 100, "cidr": "10.1.0.0/24"},
            "publicKey": "A" * 43 + "=", "endpoint": "10.250.0.2:40000"}
    for body, code, reason in (({**good, "site": "zz"}, 403, "'zz' is not a peer of site c"),
                               ({**good, "site": "a"}, 403, "comes from 10.250.0.2, not its address 10.250.0.1"),
                               ({**good, "site": "a", "stitch": "acme/blue-green", "bandwidthBps": 9e12}, 403,
                                "comes from 10.250.0.2"),   # a's own stitch, spoofed: its consent stays
                               ({**good, "bandwidthBps": "lots"}, 400, "malformed"),
                               ({**good, "from": {**good["from"], "cidr": "10.250.0.0/24"}}, 403,
                                "is VNID 100, 10.1.0.0/24 here"),
                               ({**good, "to": {"tenant": "globex", "network": "nope"}}, 403,
                                "site c does not consent to acme/blue → globex/nope")):
        status, answer, _ = consent.call(lab.ns("b"), "10.250.0.3", consent.CONSENT_PORT, "POST", "/v1/consents",
                                         body)
        assert (status, answer["accepted"]) == (code, False) and reason in answer["reason"], (body, answer)
    status, answer, _ = consent.call(lab.ns("b"), "10.250.0.3", consent.CONSENT_PORT, "DELETE",
                                     "/v1/consents?site=a&stitch=acme/blue-green")
    assert status == 403 and "comes from 10.250.0.2" in answer["reason"], "a spoofed withdrawal"
    time.sleep(1.5)   # a pass of c's (each second) rewrites its status.json
    assert list(lab.status("c").get("consents")) == ["a|acme/blue-green"]
    assert lab.ping("a1", "10.3.0.1", count=1, wait_s=2)

    # green's owner withdraws its consent: c drops its end, a is refused at the next ask and removes its own
    lab.write_config(BLUE, green("{name: c1, node: c-1, address: 10.3.0.1}", allow=False), RED,
                     stitch("blue-green", "green"), stitch("blue-red", "red"))
    gone = wait_for("blue-green refused", lambda: stitch_state(lab, "acme/blue-green").get("state") == "Refused"
                    and stitch_state(lab, "acme/blue-green"), lab)
    assert "site c does not consent to acme/blue → globex/green" in gone["message"]
    wait_for("c's end removed", lambda: not lab.status("c").get("consents") and not lab.tunnel_pids("c"), lab)
    wait_for("a's end removed", lambda: not lab.tunnel_pids("a"), lab)
    assert not lab.ping("a1", "10.3.0.1", count=1, wait_s=1)

    # consent again, then the stitch deleted: both ends go
    lab.write_config(BLUE, green("{name: c1, node: c-1, address: 10.3.0.1}"), RED, stitch("blue-green", "green"))
    wait_for("established again", lambda: stitch_state(lab, "acme/blue-green").get("state") == "Established", lab)
    assert reaches(lab, "a1", "10.3.0.1")
    lab.write_config(BLUE, green("{name: c1, node: c-1, address: 10.3.0.1}"), RED)
    wait_for("both ends removed", lambda: not lab.tunnel_pids("a") and not lab.tunnel_pids("c")
             and not lab.status("c").get("consents") and not lab.status("a").get("siteStitches"), lab, timeout_s=15)
    assert not lab.ping("a1", "10.3.0.1", count=1, wait_s=1)


def test_a_stitch_moves_to_another_site_when_its_site_fails_and_does_not_duplicate_on_return(make_lab):
    lab = make_lab()
    members = "{name: b1, node: b-1, address: 10.3.0.2}, {name: c1, node: c-1, address: 10.3.0.1}"
    lab.write_config(BLUE, green(members), stitch("blue-green", "green"))
    for site in lab.sites:
        lab.start(site, *FAST)
    lab.attach_vm("a1", "a", 100, "10.1.0.1")
    lab.attach_vm("b1", "b", 300, "10.3.0.2")
    lab.attach_vm("c1", "c", 300, "10.3.0.1")
    for vm, far in (("a1", "10.3.0.0/24"), ("b1", "10.1.0.0/24"), ("c1", "10.1.0.0/24")):
        lab.route(vm, far)
    first = wait_for("established, both sites heard", lambda: (s := stitch_state(lab, "acme/blue-green")).get(
        "state") == "Established" and sorted(c["site"] for c in s["candidates"]) == ["b", "c"] and s, lab)
    used = first["site"]
    other = {"b": "c", "c": "b"}[used]
    address = {"b": "10.3.0.2", "c": "10.3.0.1"}
    assert lab.ping("a1", address[used], count=3, wait_s=2)
    assert lab.ping("a1", address[other], count=3, wait_s=2), "green's other member, over green's own VXLAN"

    wait_for("the full mesh of sessions", lab.established, lab)   # else c's route may be known only through b
    lab.kill(used)   # route manager and speaker SIGKILLed: its routes go with its sessions
    moved = wait_for(f"moved to {other}", lambda: stitch_state(lab, "acme/blue-green").get("site") == other
                     and stitch_state(lab, "acme/blue-green"), lab, timeout_s=20)
    assert moved["state"] == "Established" and moved["tunnel"] == first["tunnel"], "the same end, a new peer"
    log_a = open(os.path.join(lab.directory, "rm-a.log")).read()
    assert f"moved from site {used} to site {other}" in log_a, log_a
    assert lab.ping("a1", address[other], count=3, wait_s=2)

    lab.start(used, *FAST)   # back: a stays where it is, the stale end goes
    wait_for(f"{used}'s stale end removed", lambda: lab.status(used).get("running")
             and not lab.tunnel_pids(used) and not lab.status(used).get("consents"), lab, timeout_s=LEASE_S + 20)
    assert stitch_state(lab, "acme/blue-green")["site"] == other, "no flap back to the returning site"
    assert list(lab.status(other)["consents"]) == ["a|acme/blue-green"]
    assert len(lab.tunnel_pids("a")) == 1 and len(lab.tunnel_pids(other)) == 1, \
        f"one tunnel each side\n{lab.log('a')}\n---\n{lab.log(other)}"
    assert lab.ping("a1", address[other], count=3, wait_s=2)

    # no site left for green: the stitch fails with the reason and a's end is removed
    lab.kill(other)
    lab.kill(used)
    failed = wait_for("failed", lambda: stitch_state(lab, "acme/blue-green").get("state") == "Failed"
                      and stitch_state(lab, "acme/blue-green"), lab, timeout_s=20)
    assert "no site advertises globex/green" in failed["message"], failed
    wait_for("a's end removed", lambda: not lab.tunnel_pids("a"), lab)
