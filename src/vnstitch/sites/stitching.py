"""Stitches across sites: negotiation, consent and the tunnels they build (docs/SITES.md).

A `SiteStitch` joins a network this site serves (`from`) to one that only other sites serve (`to`). Its
initiator is each site serving `from`. Every pass, the initiator
1. checks its own network's policy (it must allow `to`; the tunnel is encrypted);
2. takes the candidate sites from the accepted EVPN adverts of `to`'s VNID (sites/evpn.py judged them:
   a known site, the right tenant), drops those offering less bandwidth than asked or slower than
   `maxLatency` (latency measured to each candidate's consent API), and ranks the rest by cost (the AS
   path's length), then measured latency (in 5 ms steps), then offered bandwidth; the site already in use stays first
   while it is a candidate (no flapping when a better one comes back);
3. asks the first for consent (its route manager checks that the asker is a peer site, that it serves
   `to`, and that `to`'s own policy allows `from`), then the next while refused or unreachable;
4. with a consent, points its WireGuard end at the consenting site's end (sites/tunnels.py). A consent is
   a lease: asking again each pass renews it; the consenting site removes its end when the lease runs out
   or when `to`'s policy stops allowing it.
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
from vnstitch.domain.site import Site, SiteStitch
from vnstitch.errors import PolicyDenied, VnstitchError
from vnstitch.sites import consent
from vnstitch.sites.config import SiteView
from vnstitch.sites.evpn import Learned, Route, judge
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


def check_request(body: dict, peer_ip: str, view: SiteView, local: Site) -> tuple[int, str, dict]:
    """A consent request judged against this site's view: (HTTP status, reason, parsed request). 200: granted."""
    asker = body.get("site")
    site = view.sites.get(asker) if isinstance(asker, str) else None
    if site is None or site.name == local.name:
        return 403, f"site {asker!r} is not a peer of site {local.name}", {}
    if peer_ip != site.spec.route_manager_address:
        return 403, (f"the request claims site {site.name} but comes from {peer_ip}, not its address "
                     f"{site.spec.route_manager_address}"), {}
    try:
        req = {"site": site.name, "stitch": str(body["stitch"]),
               "from": {k: body["from"][k] for k in ("tenant", "network", "vnid", "cidr")},
               "labels": dict(body["from"].get("labels") or {}),
               "to": {k: str(body["to"][k]) for k in ("tenant", "network")},
               "bandwidthBps": float(body["bandwidthBps"]), "tunnel": str(body.get("tunnel", "wireguard")),
               "publicKey": str(body["publicKey"]), "endpoint": str(body["endpoint"])}
        public_key_hex(req["publicKey"])
        cidr = str(ipaddress.ip_network(str(req["from"]["cidr"]), strict=True))
        req["from"]["cidr"] = cidr
        host, _, port = req["endpoint"].rpartition(":")
        if host != site.spec.vtep or not 1 <= int(port) <= 65535:
            raise ValueError(f"endpoint {req['endpoint']} is not at site {site.name}'s tunnel address {site.spec.vtep}")
        if not isinstance(req["from"]["vnid"], int):
            raise ValueError("from.vnid is not a number")
    except (KeyError, TypeError, ValueError) as exc:
        return 400, f"a malformed consent request from site {site.name}: {exc}", {}
    if req["tunnel"] != "wireguard":
        return 400, f"tunnel {req['tunnel']!r} is not offered (wireguard)", req
    to_key = f"{req['to']['tenant']}/{req['to']['network']}"
    target = view.vnets.get(to_key)
    served = view.networks.get(target.spec.vnid) if target is not None else None
    if target is None or served is None or local.name not in served.sites:
        return 404, f"network {to_key} is not served at site {local.name}", req
    from_key = f"{req['from']['tenant']}/{req['from']['network']}"
    known = view.vnets.get(from_key)
    if known is not None and known.spec.vnid != req["from"]["vnid"]:
        return 403, (f"network {from_key} has VNID {known.spec.vnid} here; site {site.name} says "
                     f"{req['from']['vnid']}"), req
    if req["stitch"].split("/", 1)[0] != req["from"]["tenant"]:
        return 403, f"stitch {req['stitch']} is not of {from_key}'s tenant", req
    try:
        check_side(target, req["from"]["tenant"], req["from"]["network"], req["labels"], True, "spec.to")
    except PolicyDenied as exc:
        return 403, exc.message, req
    if req["bandwidthBps"] > local.spec.offered_bandwidth:
        return 403, (f"site {local.name} offers {bandwidth_text(local.spec.offered_bandwidth)} per network, "
                     f"{bandwidth_text(req['bandwidthBps'])} asked"), req
    if overlap(cidr, target.spec.cidr):
        return 403, f"{from_key}'s {cidr} overlaps {to_key}'s {target.spec.cidr}", req
    return 200, "", req


class Stitcher:
    """Both roles of one route manager: initiator of its stitches, consenting site for the others'."""

    def __init__(self, site_name: str, netns: str, state_dir: str, port: int = consent.CONSENT_PORT,
                 lease_s: float = LEASE_S):
        self.site_name, self.netns, self.port, self.lease_s = site_name, netns, port, lease_s
        self.tunnels = SiteTunnels(netns, state_dir)
        self.lock = threading.Lock()           # the tunnels and the records: the pass and the API's threads
        self._consents_path = os.path.join(state_dir, "consents.json")
        self._stitches_path = os.path.join(state_dir, "stitches.json")
        self.consents: dict[str, dict] = _read(self._consents_path)   # "site|stitch" → request + expiry
        self.active: dict[str, dict] = _read(self._stitches_path)     # stitch key → {site, ifname, …}
        self.status: dict[str, dict] = {}
        self._rtt: dict[str, tuple[float, float | None]] = {}        # site → (measured at, seconds)
        self._server: consent.ConsentServer | None = None
        self._ends: set[str] = set()             # the ends of this pass's own stitches
        self._refusals: dict[str, str] = {}      # consent key → the reason last logged
        self.on_change = lambda: None            # the route manager's wake-up: status.json shows a new consent
        self.view: SiteView | None = None
        self.site: Site | None = None

    # the consent API ----------------------------------------------------------------------------
    def serve(self, address: str) -> None:
        self._server = consent.ConsentServer(self.netns, address, self.port, self.handle)

    def handle(self, method: str, path: str, query: dict, body: dict, peer_ip: str) -> tuple[int, dict]:
        view, site = self.view, self.site
        if view is None or site is None:
            return 503, {"accepted": False, "reason": "the route manager is starting"}
        if method == "GET" and path == "/v1/site":
            return 200, {"site": site.name, "asNumber": site.spec.as_number}
        if path != "/v1/consents":
            return 404, {"accepted": False, "reason": f"no route {method} {path}"}
        if method == "DELETE":
            asker = query.get("site", "")
            peer = view.sites.get(asker)
            if peer is None or peer.spec.route_manager_address != peer_ip:
                return 403, {"removed": False, "reason": f"site {asker!r} at {peer_ip} is not a peer"}
            with self.lock:
                removed = self._drop(f"{asker}|{query.get('stitch', '')}", "withdrawn by its site")
            return 200, {"removed": removed}
        if method != "POST":
            return 405, {"accepted": False, "reason": f"{method} {path} is not allowed"}
        code, reason, req = check_request(body, peer_ip, view, site)
        key = f"{req.get('site', body.get('site'))}|{req.get('stitch', body.get('stitch'))}"
        if code != 200:
            if self._refusals.get(key) != reason:   # said once per reason, not at each renewal
                self._refusals[key] = reason
                log.warning("site %s: consent refused to %s: %s", self.site_name, key, reason)
            with self.lock:
                if key in self.consents:
                    self._drop(key, f"no longer consented: {reason}")
            return code, {"accepted": False, "reason": reason, "site": site.name}
        target = view.vnets[f"{req['to']['tenant']}/{req['to']['network']}"]
        ifname = tunnel_ifname(self.netns, self.site_name, key)
        route = TunnelRoute(ifname, target.spec.vnid, target.spec.cidr, req["from"]["cidr"])
        with self.lock:
            clash = self._clash(route, key)
            if clash:
                return 403, {"accepted": False, "reason": clash, "site": site.name}
            try:
                public, port = self.tunnels.identity(ifname)
                self.tunnels.connect(route, req["publicKey"], req["endpoint"], initiator=False)
            except VnstitchError as exc:
                log.error("site %s: tunnel for %s: %s", self.site_name, key, exc)
                return 500, {"accepted": False, "reason": f"site {site.name} cannot build its end: {exc}"}
            fresh = key not in self.consents
            self.consents[key] = {**req, "ifname": ifname, "route": route.__dict__,
                                  "expires": time.time() + self.lease_s}
            _write(self._consents_path, self.consents)
        self._refusals.pop(key, None)
        if fresh:
            self.on_change()
            log.info("site %s: consented to %s (%s → %s/%s, %s)", self.site_name, key,
                     f"{req['from']['tenant']}/{req['from']['network']}", req["to"]["tenant"], req["to"]["network"],
                     ifname)
        return 200, {"accepted": True, "site": site.name, "publicKey": public,
                     "endpoint": f"{site.spec.vtep}:{port}", "cidr": target.spec.cidr, "vnid": target.spec.vnid,
                     "leaseS": self.lease_s}

    def _clash(self, route: TunnelRoute, key: str) -> str | None:
        """Another tunnel here whose prefixes overlap this one's (one routing table: no VRF in this kernel), or
        None. The same stitch asked by another site (its initiator changed: the first one's adverts went)
        takes over: the old consent is dropped."""
        stitch = key.split("|", 1)[-1]
        for other_key, record in sorted({**self.consents, **self.active}.items()):
            other = record.get("route")
            if other_key == key or not other or other.get("ifname") == route.ifname:
                continue
            if other_key.split("|", 1)[-1] == stitch and other_key in self.consents:
                self._drop(other_key, f"site {key.split('|', 1)[0]} took the stitch over")
                continue
            for mine in (route.remote_cidr, route.local_cidr):
                if overlap(other["remote_cidr"], mine):
                    return (f"{mine} overlaps {other['remote_cidr']}, which stitch {other_key} already routes at "
                            f"site {self.site_name} (one routing table per border node: one stitch per prefix)")
        return None

    def _drop(self, key: str, why: str) -> bool:
        record = self.consents.pop(key, None)
        if record is None:
            return False
        try:
            self.tunnels.remove(record["ifname"])
        except VnstitchError as exc:
            log.warning("site %s: removing %s: %s", self.site_name, record["ifname"], exc)
        _write(self._consents_path, self.consents)
        log.info("site %s: consent to %s ended (%s): its tunnel end is removed", self.site_name, key, why)
        return True

    # each pass ------------------------------------------------------------------------------------
    def step(self, view: SiteView, site: Site, routes: list[Route], live: set[str] | frozenset = frozenset()) -> None:
        """One pass: consents judged again and expired, then each stitch from a network served here negotiated.
        `live`: the sites whose adverts this site hears. Of the sites serving a stitch's `from`, the first by
        name that is live (or this one) initiates it, the others stand by (two would give the consenting site
        two routes for one prefix); if the initiator's adverts go, the next one takes over."""
        self.view, self.site = view, site
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
        with self.lock:   # keys of stitches that are gone (ends never started keep only their key file)
            named = {r["ifname"] for r in self.consents.values()} | {r["ifname"] for r in self.active.values()}
            for ifname in sorted(self.tunnels.present() - named - self._ends):
                self.tunnels.remove(ifname)

    def _negotiate(self, stitch: SiteStitch, view: SiteView, site: Site, routes: list[Route]) -> dict:
        key = stitch.key
        own, far = view.vnets.get(stitch.from_key), view.vnets.get(stitch.to_key)
        previous = self.active.get(key, {}).get("site")
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
        if not found:
            reason = f"no site advertises {stitch.to_key} (VNI {far.spec.vnid})"
            if previous:
                reason += f"; site {previous}'s routes were withdrawn"
            return self._fail(key, "Failed", reason)
        cands = [Candidate(name, mbps, hops, self._latency(view.sites[name])) for name, (mbps, hops) in found.items()]
        usable, excluded = rank(cands, stitch.spec.bandwidth, stitch.spec.max_latency, previous)
        answers = list(excluded)
        refused = False
        ifname = tunnel_ifname(self.netns, site.name, key)
        self._ends.add(ifname)
        with self.lock:
            public, port = self.tunnels.identity(ifname)
        for cand in usable:
            peer = view.sites[cand.site]
            request = {"site": site.name, "stitch": key,
                       "from": {"tenant": own.metadata.tenant, "network": own.metadata.name, "vnid": own.spec.vnid,
                                "cidr": own.spec.cidr, "labels": dict(own.metadata.labels)},
                       "to": {"tenant": far.metadata.tenant, "network": far.metadata.name},
                       "bandwidthBps": stitch.spec.bandwidth, "tunnel": stitch.spec.tunnel,
                       "publicKey": public, "endpoint": f"{site.spec.vtep}:{port}"}
            code, answer, _ = consent.call(self.netns, peer.spec.route_manager_address, self.port, "POST",
                                           "/v1/consents", request)
            if code != 200 or not answer.get("accepted"):
                answers.append(f"site {cand.site}: {answer.get('reason') or f'answered {code}'}")
                refused = refused or code in (403, 404)
                continue
            try:
                route = TunnelRoute(ifname, own.spec.vnid, own.spec.cidr, str(ipaddress.ip_network(answer["cidr"])))
                host = str(answer["endpoint"]).rpartition(":")[0]
                if host != peer.spec.vtep:
                    raise ValueError(f"its endpoint {answer['endpoint']} is not its tunnel address {peer.spec.vtep}")
                with self.lock:
                    clash = self._clash(route, key)
                    if clash:
                        raise ValueError(clash)
                    self.tunnels.connect(route, str(answer["publicKey"]), str(answer["endpoint"]), initiator=True)
            except (KeyError, TypeError, ValueError, VnstitchError) as exc:
                answers.append(f"site {cand.site}: consented, but {exc}")
                continue
            if previous and previous != cand.site:
                old = view.sites.get(previous)
                if old is not None:   # best effort: a site that is gone lets the lease run out
                    consent.call(self.netns, old.spec.route_manager_address, self.port, "DELETE",
                                 f"/v1/consents?site={self.site_name}&stitch={key}", timeout_s=1.0)
                log.warning("site %s: stitch %s moved from site %s to site %s (%s)", self.site_name, key, previous,
                            cand.site, "; ".join(answers) or "site left the candidates")
            elif previous != cand.site:
                log.info("site %s: stitch %s established with site %s (%s)", self.site_name, key, cand.site, ifname)
            with self.lock:
                self.active[key] = {"site": cand.site, "ifname": ifname, "route": route.__dict__,
                                    "since": self.active.get(key, {}).get("since") if previous == cand.site
                                    else time.time()}
                _write(self._stitches_path, self.active)
            return {"state": "Established", "site": cand.site, "tunnel": ifname, "endpoint": answer["endpoint"],
                    "consent": {"by": cand.site, "accepted": True, "leaseS": answer.get("leaseS")},
                    "candidates": [c.__dict__ for c in cands], "passedOver": answers,
                    "message": f"consented by site {cand.site}; WireGuard {ifname} to {answer['endpoint']}"}
        return self._fail(key, "Refused" if refused else "Failed",
                          "; ".join(answers) or "no candidate site", [c.__dict__ for c in cands])

    def _fail(self, key: str, state: str, reason: str, cands: list | None = None) -> dict:
        if key in self.active:
            self._end(key, reason)
        previous = self.status.get(key, {})
        if previous.get("message") != reason:
            log.warning("site %s: stitch %s %s: %s", self.site_name, key, state.lower(), reason)
        return {"state": state, "message": reason, "candidates": cands or []}

    def _end(self, key: str, why: str) -> None:
        """Withdraw the consent at the site that gave it (best effort: its lease runs out anyway), remove our end."""
        record = self.active.pop(key, None)
        if record is None:
            return
        view = self.view
        peer = view.sites.get(record["site"]) if view is not None else None
        if peer is not None:
            consent.call(self.netns, peer.spec.route_manager_address, self.port, "DELETE",
                         f"/v1/consents?site={self.site_name}&stitch={key}", timeout_s=1.0)
        with self.lock:
            try:
                self.tunnels.remove(record["ifname"])
            except VnstitchError as exc:
                log.warning("site %s: removing %s: %s", self.site_name, record["ifname"], exc)
            _write(self._stitches_path, self.active)
        log.info("site %s: stitch %s with site %s ended (%s)", self.site_name, key, record["site"], why)

    def _expire(self) -> None:
        now = time.time()
        with self.lock:
            for key, record in sorted(self.consents.items()):
                if record.get("expires", 0) < now:
                    self._drop(key, f"its lease of {self.lease_s:g} s ran out")

    def recheck(self, view: SiteView, site: Site) -> None:
        """Consents given earlier, judged again against the current view (a policy changed, a network left)."""
        for key, record in sorted(self.consents.items()):
            body = {k: record[k] for k in ("site", "stitch", "to", "bandwidthBps", "tunnel", "publicKey", "endpoint")}
            body["from"] = {**record["from"], "labels": record.get("labels", {})}
            code, reason, _ = check_request(body, view.sites[record["site"]].spec.route_manager_address
                                            if record["site"] in view.sites else "", view, site)
            if code != 200:
                with self.lock:
                    self._drop(key, f"no longer consented: {reason}")

    def _latency(self, peer: Site) -> float | None:
        """Round trip to the peer's consent API (TCP connect and one small request), measured every RTT_EVERY_S."""
        now = time.monotonic()
        measured = self._rtt.get(peer.name)
        if measured is not None and now - measured[0] < RTT_EVERY_S:
            return measured[1]
        code, _, took = consent.call(self.netns, peer.spec.route_manager_address, self.port, "GET", "/v1/site",
                                     timeout_s=1.0)
        rtt = took if code == 200 else None
        self._rtt[peer.name] = (now, rtt)
        return rtt

    def snapshot(self) -> dict:
        with self.lock:
            consents = {k: {"site": v["site"], "stitch": v["stitch"], "tunnel": v["ifname"],
                            "from": f"{v['from']['tenant']}/{v['from']['network']}",
                            "to": f"{v['to']['tenant']}/{v['to']['network']}",
                            "expiresInS": round(v["expires"] - time.time(), 1)} for k, v in sorted(self.consents.items())}
            return {"siteStitches": self.status, "consents": consents, "tunnels": self.tunnels.status()}

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.tunnels.close()


def _read(path: str) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


__all__ = ["Candidate", "Stitcher", "candidates", "check_request", "rank"]
