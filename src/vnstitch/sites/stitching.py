"""Stitches across sites: negotiation, consent and the tunnels they build (docs/SITES.md).

A `SiteStitch` joins a network this site serves (`from`) to one that only other sites serve (`to`). Its
initiator is each site serving `from`. Every pass, the initiator
1. checks its own network's policy (it must allow `to`; the tunnel is encrypted);
2. takes the candidate sites from the accepted EVPN adverts of `to`'s VNID (sites/evpn.py judged them:
   a known site, the right tenant), drops those offering less bandwidth than asked or slower than
   `maxLatency` (latency measured to each candidate's consent API), and ranks the rest by cost (the AS
   path's length), then measured latency (in 5 ms steps), then offered bandwidth; the site already in use stays first
   while it is a candidate (no flapping when a better one comes back);
3. asks the first for consent (its route manager checks that the asker is a peer site and what it says of
   `from` against its own view or the asker's own adverts, that it serves `to`, and that `to`'s own policy
   allows `from`), then the next while refused or unreachable;
4. with a consent (its answer checked against `to` as this site knows it), points its WireGuard end at the
   consenting site's end (sites/tunnels.py). A consent is a lease: asking again each pass renews it; the
   consenting site removes its end when the lease runs out or when `to`'s policy stops allowing it. A renewal
   that fails while the lease lasts and the site still advertises `to` keeps the tunnel (a timeout is no
   refusal); so does a RIB still filling after the speaker (re)started.
Every outcome is recorded on the stitch's status (status.json `siteStitches`), with the reasons.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from vnstitch.domain.policy import check_side
from vnstitch.drivers.linux.layout import write_json
from vnstitch.domain.site import Site, SiteStitch
from vnstitch.errors import PolicyDenied, VnstitchError
from vnstitch.sites import consent
from vnstitch.sites.config import SiteView, tenant_tag
from vnstitch.sites.evpn import TENANT_TAG, Learned, LearnedPrefix, Route, judge
from vnstitch.sites.tunnels import Route as TunnelRoute
from vnstitch.sites.tunnels import SiteTunnels, overlap, public_key_hex, tunnel_ifname
from vnstitch.units import bandwidth_text

log = logging.getLogger("vnstitch.route_manager")

LEASE_S = 30.0          # a consent not asked again for this long is dropped by the consenting site
RTT_EVERY_S = 5.0       # how often the latency to a candidate site is measured
RTT_TIE_S = 0.005       # latencies in the same 5 ms step rank alike (measurement noise), then bandwidth decides


@dataclass(frozen=True)
class Candidate:
    site: str
    bandwidth_mbps: int
    hops: int                 # AS path length of the best route (the cost)
    rtt_s: float | None       # measured to its consent API; None: not answering


def candidates(routes: list[Route], view: SiteView, local: Site, vnid: int) -> dict[str, tuple[int, int]]:
    """Sites whose accepted adverts carry `vnid`: site → (offered Mbit/s, shortest AS path)."""
    found: dict[str, tuple[int, int]] = {}
    for route in routes:
        if route.etag != vnid:
            continue
        verdict = judge(route, view, local)
        if isinstance(verdict, Learned):
            mbps, hops = found.get(verdict.site, (verdict.bandwidth_mbps, len(route.as_path)))
            found[verdict.site] = (max(mbps, verdict.bandwidth_mbps), min(hops, len(route.as_path)))
    return found


def rank(cands: list[Candidate], bandwidth_bps: float, max_latency_s: float | None,
         current: str | None) -> tuple[list[Candidate], list[str]]:
    """The candidates worth asking, best first, and why the others are not."""
    usable, excluded = [], []
    for c in cands:
        if c.bandwidth_mbps * 1e6 < bandwidth_bps:
            excluded.append(f"site {c.site} offers {bandwidth_text(c.bandwidth_mbps * 1e6)}, "
                            f"{bandwidth_text(bandwidth_bps)} asked")
        elif c.rtt_s is None:
            excluded.append(f"site {c.site}'s route manager does not answer")
        elif max_latency_s is not None and c.rtt_s > max_latency_s:
            excluded.append(f"site {c.site} is {c.rtt_s * 1e3:.3g} ms away, above maxLatency")
        else:
            usable.append(c)
    usable.sort(key=lambda c: (c.site != current, c.hops, int((c.rtt_s or 0) / RTT_TIE_S), -c.bandwidth_mbps, c.site))
    return usable, excluded


def heard_adverts(routes: list[Route], view: SiteView, local: Site) -> dict[tuple[str, int], dict]:
    """(site, VNI) → {"tenant_tag", "prefixes"} of every accepted route: what a peer says of its own networks,
    which a consent request about a network this site does not know is checked against."""
    heard: dict[tuple[str, int], dict] = {}
    for route in routes:
        verdict = judge(route, view, local)
        if not isinstance(verdict, (Learned, LearnedPrefix)):
            continue
        origin = route.as_path[-1]
        tags = {d1: d2 for asn, d1, d2 in route.large if asn == origin}
        entry = heard.setdefault((verdict.site, verdict.vni), {"tenant_tag": tags.get(TENANT_TAG), "prefixes": set()})
        if isinstance(verdict, LearnedPrefix):
            entry["prefixes"].add(verdict.prefix)
    return heard


def authenticate(body: dict, peer_ip: str, view: SiteView, local: Site) -> tuple[Site | None, str]:
    """The peer site a request comes from (a Site of this view, not this one, at its route-manager address),
    or None and why not."""
    asker = body.get("site")
    site = view.sites.get(asker) if isinstance(asker, str) else None
    if site is None or site.name == local.name:
        return None, f"site {asker!r} is not a peer of site {local.name}"
    if peer_ip != site.spec.route_manager_address:
        return None, (f"the request claims site {site.name} but comes from {peer_ip}, not its address "
                      f"{site.spec.route_manager_address}")
    return site, ""


def check_request(body: dict, peer_ip: str, view: SiteView, local: Site,
                  heard: dict[tuple[str, int], dict] | None = None) -> tuple[int, str, dict]:
    """A consent request judged against this site's view: (HTTP status, reason, parsed request). 200: granted.

    What the asker says of `from` is not taken on its word: where this site knows the network, its own
    record gives the tenant, VNID, prefix and labels; where it does not, the asker must advertise that VNID
    for that tenant and that prefix (type 3 and type 5, `heard`), and label selectors never match (labels
    would be the asker's say). The prefix may not cover any site's address or overlap a network served here."""
    site, reason = authenticate(body, peer_ip, view, local)
    if site is None:
        return 403, reason, {}
    try:
        src, dst = body["from"], body["to"]
        req = {"site": site.name, "stitch": str(body["stitch"]),
               "from": {"tenant": str(src["tenant"]), "network": str(src["network"]), "vnid": src["vnid"],
                        "cidr": str(src["cidr"])},
               "to": {"tenant": str(dst["tenant"]), "network": str(dst["network"])},
               "bandwidthBps": float(body["bandwidthBps"]), "tunnel": str(body.get("tunnel", "wireguard")),
               "publicKey": str(body["publicKey"]), "endpoint": str(body["endpoint"])}
        public_key_hex(req["publicKey"])
        network = ipaddress.ip_network(req["from"]["cidr"], strict=True)
        if network.version != 4:
            raise ValueError(f"from.cidr {network} is not IPv4 (sites route IPv4 only)")
        req["from"]["cidr"] = cidr = str(network)
        host, _, port = req["endpoint"].rpartition(":")
        if host != site.spec.vtep or not 1 <= int(port) <= 65535:
            raise ValueError(f"endpoint {req['endpoint']} is not at site {site.name}'s tunnel address {site.spec.vtep}")
        if not isinstance(req["from"]["vnid"], int) or isinstance(req["from"]["vnid"], bool):
            raise ValueError("from.vnid is not a number")
        if not 0 < req["bandwidthBps"] < float("inf"):
            raise ValueError("bandwidthBps is not a positive number")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return 400, f"a malformed consent request from site {site.name}: {exc}", {}
    if req["tunnel"] != "wireguard":
        return 400, f"tunnel {req['tunnel']!r} is not offered (wireguard)", req
    from_key = f"{req['from']['tenant']}/{req['from']['network']}"
    to_key = f"{req['to']['tenant']}/{req['to']['network']}"
    if from_key == to_key:
        return 400, f"{from_key} cannot be stitched to itself", req
    if req["stitch"].split("/", 1)[0] != req["from"]["tenant"]:
        return 403, f"stitch {req['stitch']} is not of {from_key}'s tenant", req
    target = view.vnets.get(to_key)
    served = view.networks.get(target.spec.vnid) if target is not None else None
    foreign = req["to"]["tenant"] != req["from"]["tenant"]
    no_consent = f"site {local.name} does not consent to {from_key} → {to_key}"
    if target is None or served is None or local.name not in served.sites:
        # Another tenant's network answers as one whose policy refuses: its existence is not told.
        return (403, f"{no_consent} (no such network here, or its policy does not allow it)", req) if foreign \
            else (404, f"network {to_key} is not served at site {local.name}", req)
    known = view.vnets.get(from_key)
    if known is not None:
        if known.spec.vnid != req["from"]["vnid"] or known.spec.cidr != cidr:
            return 403, (f"network {from_key} is VNID {known.spec.vnid}, {known.spec.cidr} here; site {site.name} "
                         f"says VNID {req['from']['vnid']}, {cidr}"), req
        labels = dict(known.metadata.labels)
    else:
        said = (heard or {}).get((site.name, req["from"]["vnid"]))
        if said is None or said["tenant_tag"] != tenant_tag(req["from"]["tenant"]):
            return 403, (f"site {site.name} does not advertise VNI {req['from']['vnid']} for tenant "
                         f"{req['from']['tenant']}"), req
        if cidr not in said["prefixes"]:
            return 403, (f"site {site.name} does not advertise {cidr} for VNI {req['from']['vnid']} (its subnets: "
                         f"{', '.join(sorted(said['prefixes'])) or 'none'})"), req
        labels = {}
    for other in view.sites.values():
        for address in {other.spec.route_manager_address, other.spec.vtep}:
            if ipaddress.ip_address(address) in network:
                return 403, f"{cidr} covers site {other.name}'s address {address}", req
    for vnid, net in sorted(view.served_by(local.name).items()):
        vnet = view.vnets.get(f"{net.tenant}/{net.name}")
        if vnet is not None and vnid != req["from"]["vnid"] and overlap(cidr, vnet.spec.cidr):
            return 403, (f"{from_key}'s {cidr} overlaps {net.tenant}/{net.name}'s {vnet.spec.cidr}, served at site "
                         f"{local.name}"), req
    try:
        check_side(target, req["from"]["tenant"], req["from"]["network"], labels, True, "spec.to")
    except PolicyDenied as exc:
        return 403, (f"{no_consent} (no such network here, or its policy does not allow it)" if foreign
                     else exc.message), req
    if req["bandwidthBps"] > local.spec.offered_bandwidth:
        return 403, (f"site {local.name} offers {bandwidth_text(local.spec.offered_bandwidth)} per network, "
                     f"{bandwidth_text(req['bandwidthBps'])} asked"), req
    return 200, "", req


class Stitcher:
    """Both roles of one route manager: initiator of its stitches, consenting site for the others'.

    `lock` guards the records (consents, active stitches) and their files, and is held only briefly; the
    tunnels' own locks (one per end) serialise the slow kernel work, so building one end (starting
    wireguard-go) never makes another site's renewal wait."""

    def __init__(self, site_name: str, netns: str, state_dir: str, port: int = consent.CONSENT_PORT,
                 lease_s: float = LEASE_S):
        self.site_name, self.netns, self.port, self.lease_s = site_name, netns, port, lease_s
        self.tunnels = SiteTunnels(netns, state_dir)
        self.lock = threading.Lock()
        self._consents_path = os.path.join(state_dir, "consents.json")
        self._stitches_path = os.path.join(state_dir, "stitches.json")
        self.consents: dict[str, dict] = _read(self._consents_path, ("site", "stitch", "from", "to", "ifname",
                                                                    "expires"))   # "site|stitch" → request
        self.active: dict[str, dict] = _read(self._stitches_path, ("site", "ifname"))   # stitch key → {site, …}
        self.status: dict[str, dict] = {}
        self.heard: dict[tuple[str, int], dict] = {}
        self.live: set[str] = set()
        self.settling = False                    # the speaker (re)started and its RIB is still filling
        self._rtt: dict[str, tuple[float, float | None]] = {}        # site → (measured at, seconds)
        self._server: consent.ConsentServer | None = None
        self._ends: set[str] = set()             # the ends of this pass's own stitches
        self._pending: dict[str, int] = {}       # ends being built by a consent request (or swept) right now
        self._refusals: dict[str, str] = {}      # consent key → the reason last logged
        self._was: dict[str, str] = {}           # stitch key → the site it used before it ended
        self.on_change = lambda: None            # the route manager's wake-up: status.json shows a new consent
        self.view: SiteView | None = None
        self.site: Site | None = None
        self.address: str | None = None

    # the consent API ----------------------------------------------------------------------------
    def serve(self, address: str) -> None:
        self._server = consent.ConsentServer(self.netns, address, self.port, self.handle)
        self.address = address

    def _call(self, peer: Site, method: str, path: str, body: dict | None = None, timeout_s: float = 2.0):
        return consent.call(self.netns, peer.spec.route_manager_address, self.port, method, path, body,
                            timeout_s=timeout_s, source=self.address)

    def handle(self, method: str, path: str, query: dict, body: dict, peer_ip: str) -> tuple[int, dict]:
        view, site = self.view, self.site
        if view is None or site is None:
            return 503, {"accepted": False, "reason": "the route manager is starting"}
        if method == "GET" and path == "/v1/site":
            return 200, {"site": site.name, "asNumber": site.spec.as_number}
        if path != "/v1/consents":
            return 404, {"accepted": False, "reason": f"no route {method} {path}"}
        if method == "DELETE":
            asker, reason = authenticate(query, peer_ip, view, site)
            if asker is None:
                return 403, {"removed": False, "reason": reason}
            removed = self._drop(f"{asker.name}|{query.get('stitch', '')}", "withdrawn by its site")
            return 200, {"removed": removed}
        if method != "POST":
            return 405, {"accepted": False, "reason": f"{method} {path} is not allowed"}
        asker, reason = authenticate(body, peer_ip, view, site)
        if asker is None:   # nothing is touched, nothing remembered: anyone may knock
            log.debug("site %s: consent request from %s refused: %s", self.site_name, peer_ip, reason)
            return 403, {"accepted": False, "reason": reason, "site": site.name}
        code, reason, req = check_request(body, peer_ip, view, site, self.heard)
        key = f"{asker.name}|{req.get('stitch', '?')}"
        if code != 200:
            if self._refusals.get(key) != reason:   # said once per reason, not at each renewal
                if len(self._refusals) > 1000:
                    self._refusals.clear()
                self._refusals[key] = reason
                log.warning("site %s: consent refused to %r: %s", self.site_name, key, reason)
            if req and key in self.consents:
                self._drop(key, f"no longer consented: {reason}")
            return code, {"accepted": False, "reason": reason, "site": site.name}
        target = view.vnets[f"{req['to']['tenant']}/{req['to']['network']}"]
        ifname = tunnel_ifname(self.netns, self.site_name, key)
        route = TunnelRoute(ifname, target.spec.vnid, target.spec.cidr, req["from"]["cidr"])
        with self.lock:
            clash, holder = self._clash(route, key)
            if not clash:
                self._pending[ifname] = self._pending.get(ifname, 0) + 1   # the pass's sweep leaves it alone
        if clash:
            return (409 if holder else 403), {"accepted": False, "reason": clash, "site": site.name}
        try:
            public, port = self.tunnels.identity(ifname)
            self.tunnels.connect(route, req["publicKey"], req["endpoint"], initiator=False)
            with self.lock:
                fresh = key not in self.consents
                self.consents[key] = {**req, "labels": {}, "ifname": ifname, "route": route.__dict__,
                                      "expires": time.time() + self.lease_s}
                _write(self._consents_path, self.consents)
        except VnstitchError as exc:
            log.error("site %s: tunnel for %r: %s", self.site_name, key, exc)
            return 500, {"accepted": False, "reason": f"site {site.name} cannot build its end: {exc}"}
        finally:
            with self.lock:
                self._pending[ifname] -= 1
                if not self._pending[ifname]:
                    del self._pending[ifname]
        if holder:   # the stitch's initiator changed (the first one's adverts went): its consent goes
            self._drop(holder, f"site {asker.name} took the stitch over")
        self._refusals.pop(key, None)
        if fresh:
            self.on_change()
            log.info("site %s: consented to %r (%s → %s/%s, %s)", self.site_name, key,
                     f"{req['from']['tenant']}/{req['from']['network']}", req["to"]["tenant"], req["to"]["network"],
                     ifname)
        return 200, {"accepted": True, "site": site.name, "publicKey": public,
                     "endpoint": f"{site.spec.vtep}:{port}", "cidr": target.spec.cidr, "vnid": target.spec.vnid,
                     "leaseS": self.lease_s}

    def _clash(self, route: TunnelRoute, key: str) -> tuple[str | None, str | None]:
        """(why this tunnel cannot be built here, None) when its prefixes overlap another's (one routing table: no
        VRF in this kernel); (None, holder) when the same stitch is held by another site's consent that may be
        taken over (its holder's adverts are gone); (reason, holder) while that holder still holds it."""
        stitch = key.split("|", 1)[-1]
        holder = None
        for other_key, record in sorted({**self.consents, **self.active}.items()):
            other = record.get("route")
            if other_key == key or not other or other.get("ifname") == route.ifname:
                continue
            if other_key in self.consents and other_key.split("|", 1)[-1] == stitch:
                owner = other_key.split("|", 1)[0]
                if record.get("expires", 0) > time.time() and owner in self.live:
                    return (f"site {owner} holds stitch {stitch} at site {self.site_name} (its lease runs "
                            f"{record['expires'] - time.time():.0f} s more)"), other_key
                holder = other_key
                continue
            for mine in (route.remote_cidr, route.local_cidr):
                if overlap(other["remote_cidr"], mine):
                    return (f"{mine} overlaps {other['remote_cidr']}, which stitch {other_key} already routes at "
                            f"site {self.site_name} (one routing table per border node: one stitch per prefix)"), None
        return None, holder

    def _drop(self, key: str, why: str) -> bool:
        """End a consent given: its record now, its tunnel end after (outside the records' lock)."""
        with self.lock:
            record = self.consents.pop(key, None)
            if record is None:
                return False
            _write(self._consents_path, self.consents)
        try:
            self.tunnels.remove(record["ifname"])
        except VnstitchError as exc:
            log.warning("site %s: removing %s: %s", self.site_name, record["ifname"], exc)
        log.info("site %s: consent to %r ended (%s): its tunnel end is removed", self.site_name, key, why)
        return True

    # each pass ------------------------------------------------------------------------------------
    def step(self, view: SiteView, site: Site, routes: list[Route], live: set[str] | frozenset = frozenset(),
             settling: bool = False) -> None:
        """One pass: consents judged again and expired, then each stitch from a network served here negotiated.
        `live`: the sites whose adverts this site hears. Of the sites serving a stitch's `from`, the first by
        name that is live (or this one) initiates it, the others stand by (two would give the consenting site
        two routes for one prefix); if the initiator's adverts go, the next one takes over. `settling`: the
        speaker's sessions are still coming up, so a stitch in use is not given up for routes not heard yet."""
        self.view, self.site = view, site
        self.heard, self.live, self.settling = heard_adverts(routes, view, site), set(live), settling
        self.recheck(view, site)
        self._expire()
        self._ends = set()
        wanted: dict[str, SiteStitch] = {}
        status: dict[str, dict] = {}
        for key, stitch in sorted(view.stitches.items()):
            own = view.vnets.get(stitch.from_key)
            served = view.networks.get(own.spec.vnid) if own is not None else None
            if own is not None and (served is None or site.name not in served.sites):
                continue    # another site's stitch (each site serving `from` makes its own)
            initiator = min(s for s in served.sites if s == site.name or s in live) if served else site.name
            if initiator != site.name:
                if key in self.active:
                    self._end(key, f"site {initiator} initiates it")
                status[key] = {"state": "Standby", "site": initiator,
                               "message": f"site {initiator} initiates this stitch ({stitch.from_key} is served "
                                          f"there too); this site takes over if its adverts go"}
                continue
            wanted[key] = stitch
            status[key] = self._negotiate(stitch, view, site, routes)
        for key in sorted(set(self.active) - set(wanted)):
            self._end(key, "the stitch was deleted or its network left the site")
        self.status = status
        for ifname in sorted(self.tunnels.present() - self._ends):   # keys of stitches that are gone
            with self.lock:   # not one a consent names, nor one a request is building right now
                named = {r["ifname"] for r in self.consents.values()} | {r["ifname"] for r in self.active.values()}
                if ifname in named or ifname in self._pending:
                    continue
                self._pending[ifname] = 1
            try:
                self.tunnels.remove(ifname)
            finally:
                with self.lock:
                    self._pending.pop(ifname, None)

    def _negotiate(self, stitch: SiteStitch, view: SiteView, site: Site, routes: list[Route]) -> dict:
        key = stitch.key
        own, far = view.vnets.get(stitch.from_key), view.vnets.get(stitch.to_key)
        record = self.active.get(key, {})
        previous = record.get("site")
        if own is None:
            return self._fail(key, "Failed", f"network {stitch.from_key} is not in site {site.name}'s view")
        if far is None:
            return self._fail(key, "Failed", f"network {stitch.to_key} is not in site {site.name}'s view "
                              "(give it as a VirtualNetwork, `external: true` where it is another's)")
        if site.name in view.networks[far.spec.vnid].sites:
            return self._fail(key, "Failed", f"{stitch.to_key} is served at site {site.name} too: stitch them "
                              "with a Stitch, not across sites")
        try:
            check_side(own, far.metadata.tenant, far.metadata.name, dict(far.metadata.labels), True, "spec.from")
        except PolicyDenied as exc:
            return self._fail(key, "Refused", f"{exc.message} (site {site.name}'s own policy)")
        found = candidates(routes, view, site, far.spec.vnid)
        lease_left = record.get("renewed", 0) + record.get("leaseS", 0) - time.time()
        if previous and previous not in found and self.settling and lease_left > 0:
            return self._keep(key, record, f"site {previous}'s routes are not heard yet (the speaker's sessions are "
                                           "coming up); the tunnel stays while its consent lasts")
        if not found:
            gone = previous or self._was.get(key)
            reason = f"no site advertises {stitch.to_key} (VNI {far.spec.vnid})"
            if gone:
                reason += f"; site {gone}'s routes were withdrawn"
            return self._fail(key, "Failed", reason)
        cands = [Candidate(name, mbps, hops, self._latency(view.sites[name])) for name, (mbps, hops) in found.items()]
        if previous in found:   # one failed measurement does not drop the site in use (a renewal decides)
            cands = [Candidate(c.site, c.bandwidth_mbps, c.hops, c.rtt_s if c.rtt_s is not None else 0.0)
                     if c.site == previous else c for c in cands]
        usable, excluded = rank(cands, stitch.spec.bandwidth, stitch.spec.max_latency, previous)
        answers = list(excluded)
        refused = False
        ifname = tunnel_ifname(self.netns, site.name, key)
        self._ends.add(ifname)
        public, port = self.tunnels.identity(ifname)
        for cand in usable:
            peer = view.sites[cand.site]
            request = {"site": site.name, "stitch": key,
                       "from": {"tenant": own.metadata.tenant, "network": own.metadata.name, "vnid": own.spec.vnid,
                                "cidr": own.spec.cidr},
                       "to": {"tenant": far.metadata.tenant, "network": far.metadata.name},
                       "bandwidthBps": stitch.spec.bandwidth, "tunnel": stitch.spec.tunnel,
                       "publicKey": public, "endpoint": f"{site.spec.vtep}:{port}"}
            code, answer, _ = self._call(peer, "POST", "/v1/consents", request)
            if code != 200 or not answer.get("accepted"):
                if code is None and cand.site == previous and lease_left > 0:
                    return self._keep(key, record, f"renewal at site {previous} failed ({answer.get('reason')}); "
                                                   "the tunnel stays while its consent lasts")
                answers.append(f"site {cand.site}: {answer.get('reason') or f'answered {code}'}")
                refused = refused or code in (403, 404, 409)
                continue
            try:
                if answer.get("cidr") != far.spec.cidr or answer.get("vnid") != far.spec.vnid:
                    raise ValueError(f"it answers for {answer.get('cidr')} (VNI {answer.get('vnid')}), not "
                                     f"{stitch.to_key}'s {far.spec.cidr} (VNI {far.spec.vnid})")
                lease = float(answer.get("leaseS") or 0)
                route = TunnelRoute(ifname, own.spec.vnid, own.spec.cidr, far.spec.cidr)
                host = str(answer["endpoint"]).rpartition(":")[0]
                if host != peer.spec.vtep:
                    raise ValueError(f"its endpoint {answer['endpoint']} is not its tunnel address {peer.spec.vtep}")
                with self.lock:
                    clash, _ = self._clash(route, key)
                if clash:
                    raise ValueError(clash)
                self.tunnels.connect(route, str(answer["publicKey"]), str(answer["endpoint"]), initiator=True)
            except (KeyError, TypeError, ValueError, VnstitchError) as exc:
                answers.append(f"site {cand.site}: consented, but {exc}")
                self._call(peer, "DELETE", f"/v1/consents?site={site.name}&stitch={key}", timeout_s=1.0)
                continue
            if previous and previous != cand.site:
                old = view.sites.get(previous)
                if old is not None:   # best effort: a site that is gone lets the lease run out
                    self._call(old, "DELETE", f"/v1/consents?site={self.site_name}&stitch={key}", timeout_s=1.0)
                log.warning("site %s: stitch %s moved from site %s to site %s (%s)", self.site_name, key, previous,
                            cand.site, "; ".join(answers) or "site left the candidates")
            elif previous != cand.site:
                log.info("site %s: stitch %s established with site %s (%s)", self.site_name, key, cand.site, ifname)
            with self.lock:
                self.active[key] = {"site": cand.site, "ifname": ifname, "route": route.__dict__, "renewed": time.time(),
                                    "leaseS": lease, "endpoint": answer["endpoint"],
                                    "since": record.get("since") if previous == cand.site else time.time()}
                _write(self._stitches_path, self.active)
            self._was.pop(key, None)
            return {"state": "Established", "site": cand.site, "tunnel": ifname, "endpoint": answer["endpoint"],
                    "consent": {"by": cand.site, "accepted": True, "leaseS": answer.get("leaseS")},
                    "candidates": [c.__dict__ for c in cands], "passedOver": answers,
                    "message": f"consented by site {cand.site}; WireGuard {ifname} to {answer['endpoint']}"}
        return self._fail(key, "Refused" if refused else "Failed",
                          "; ".join(answers) or "no candidate site", [c.__dict__ for c in cands])

    def _keep(self, key: str, record: dict, why: str) -> dict:
        log.info("site %s: stitch %s: %s", self.site_name, key, why)
        return {"state": "Established", "site": record["site"], "tunnel": record["ifname"],
                "endpoint": record.get("endpoint"), "consent": {"by": record["site"], "accepted": True,
                                                                 "leaseS": record.get("leaseS")},
                "candidates": [], "passedOver": [], "message": why}

    def _fail(self, key: str, state: str, reason: str, cands: list | None = None) -> dict:
        if key in self.active:
            self._end(key, reason)
        previous = self.status.get(key, {})
        if previous.get("message") != reason:
            log.warning("site %s: stitch %s %s: %s", self.site_name, key, state.lower(), reason)
        return {"state": state, "message": reason, "candidates": cands or []}

    def _end(self, key: str, why: str) -> None:
        """Withdraw the consent at the site that gave it (best effort: its lease runs out anyway), remove our end."""
        with self.lock:
            record = self.active.pop(key, None)
            if record is None:
                return
            _write(self._stitches_path, self.active)
        self._was[key] = record["site"]
        view = self.view
        peer = view.sites.get(record["site"]) if view is not None else None
        if peer is not None:
            self._call(peer, "DELETE", f"/v1/consents?site={self.site_name}&stitch={key}", timeout_s=1.0)
        try:
            self.tunnels.remove(record["ifname"])
        except VnstitchError as exc:
            log.warning("site %s: removing %s: %s", self.site_name, record["ifname"], exc)
        log.info("site %s: stitch %s with site %s ended (%s)", self.site_name, key, record["site"], why)

    def _expire(self) -> None:
        now = time.time()
        for key, record in sorted(self.consents.items()):
            if record.get("expires", 0) < now:
                with self.lock:   # renewed meanwhile by a handler: not expired
                    current = self.consents.get(key)
                    expired = current is not None and current.get("expires", 0) < now
                if expired:
                    self._drop(key, f"its lease of {self.lease_s:g} s ran out")

    def recheck(self, view: SiteView, site: Site) -> None:
        """Consents given earlier, judged again against the current view (a policy changed, a network left)."""
        for key, record in sorted(self.consents.items()):
            peer = view.sites.get(record["site"])
            body = {k: record.get(k) for k in ("site", "stitch", "to", "bandwidthBps", "tunnel", "publicKey",
                                               "endpoint", "from")}
            code, reason, _ = check_request(body, peer.spec.route_manager_address if peer else "", view, site,
                                            self.heard)
            if code != 200:
                with self.lock:   # the record judged is still the one held (a handler may have replaced it)
                    same = self.consents.get(key) is record
                if same:
                    self._drop(key, f"no longer consented: {reason}")

    def _latency(self, peer: Site) -> float | None:
        """Round trip to the peer's consent API (TCP connect and one small request), measured every RTT_EVERY_S."""
        now = time.monotonic()
        measured = self._rtt.get(peer.name)
        if measured is not None and now - measured[0] < RTT_EVERY_S:
            return measured[1]
        code, _, took = self._call(peer, "GET", "/v1/site", timeout_s=1.0)
        rtt = took if code == 200 else None
        self._rtt[peer.name] = (now, rtt)
        return rtt

    def snapshot(self) -> dict:
        with self.lock:
            consents = {k: {"site": v.get("site"), "stitch": v.get("stitch"), "tunnel": v.get("ifname"),
                            "from": "/".join(str(v.get("from", {}).get(x)) for x in ("tenant", "network")),
                            "to": "/".join(str(v.get("to", {}).get(x)) for x in ("tenant", "network")),
                            "expiresInS": round(float(v.get("expires", 0)) - time.time(), 1)}
                        for k, v in sorted(self.consents.items())}
        return {"siteStitches": self.status, "consents": consents, "tunnels": self.tunnels.status()}

    def close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            self.address = None

    def close(self) -> None:
        self.close_server()
        self.tunnels.close()


def _read(path: str, required: tuple[str, ...]) -> dict:
    """A records file; a record missing a field (an older or damaged file) is left out, not fatal."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and all(f in v for f in required)}


def _write(path: str, data: dict) -> None:
    """Atomically, 0600 (the records name peers' keys and endpoints); a failure is logged, the records stay."""
    try:
        write_json(path, data)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


__all__ = ["Candidate", "Stitcher", "authenticate", "candidates", "check_request", "heard_adverts", "rank"]
