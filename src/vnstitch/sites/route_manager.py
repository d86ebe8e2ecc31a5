"""`vnstitch route-manager`: one site's view, kept in its GoBGP speaker and its VTEP (docs/SITES.md).

A pass runs when the speaker's RIB changed (`gobgp monitor global rib`), the file changed (its mtime
and size are checked every `poll_interval_s`, no fork), the speaker died, or `resync_interval_s` passed
since the last one. A pass: restart the speaker if it died; reload the resource file when it
changed (a bad file is logged and the last good view kept); make the speaker's own routes equal the
VNIDs this site serves (added and withdrawn in one call of gobgpd's gRPC API); read the RIB (one
ListPath call), judge every remote route (rejections logged once, with the reason), and make the flood
entries of each served VNID equal the accepted remote VTEPs. The VTEP's kernel state is read whole every
`kernel_resync_s` and in between taken from that read plus this route manager's own changes; many changes
at once go through iproute2's batch mode and are read back (sites/dataplane.py).
Level-triggered: everything is derived from the file, the RIB and the kernel, so a restarted route
manager adopts the kernel state it finds and converges without duplicates.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from vnstitch.errors import VnstitchError
from vnstitch.sites.config import SiteView, view_from_text
from vnstitch.drivers.linux.layout import vxlan_ifname
from vnstitch.sites.dataplane import Vtep
from vnstitch.sites.evpn import Advert, adverts, decide, own_adverts, stale
from vnstitch.sites.gobgp import Speaker, Timers, speaker_config
from vnstitch.sites.consent import CONSENT_PORT
from vnstitch.sites.stitching import LEASE_S, Stitcher

log = logging.getLogger("vnstitch.route_manager")


def read_view(path: str) -> SiteView:
    with open(path, encoding="utf-8") as handle:
        return view_from_text(handle.read(), source=path)


class FileSource:
    """The view from a resource file, re-read when its mtime or size change."""

    def __init__(self, path: str):
        self.path = path
        self.name = path

    def stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read(self) -> SiteView:
        return read_view(self.path)

    def close(self) -> None:
        pass


class StoreSource:
    """The view from the controller's state store (its Sites, VirtualNetworks and SiteStitches, every
    tenant), re-read when one of them changed: what `vnstitch apply` or the API writes reaches the route manager. The store is
    asked at most every `check_s` (each ask is a read of the store: on etcd a request), and only for
    events of those kinds, so the statuses and graphs the controller writes all the time cost nothing."""

    KINDS = ("Site", "VirtualNetwork", "SiteStitch")

    def __init__(self, url: str, check_s: float = 0.25):
        from vnstitch.store import open_store

        self.url = url
        self.name = f"store {url}"
        self.store = open_store(url)
        self.check_s = check_s
        self._checked = float("-inf")
        self._revision = self.store.revision()
        self._changes = 0        # the stamp: how many changes of those kinds were seen
        self._unreachable = False

    def stamp(self):
        now = time.monotonic()
        if now - self._checked < self.check_s:
            return self._changes
        self._checked = now
        from vnstitch.store.base import Compacted

        try:
            revision = self.store.revision()
            try:
                events = self.store.events_since(self._revision, kinds=self.KINDS)
            except Compacted:   # the history since the last look is gone: read the view again
                events = [None]
            revision = max([revision] + [e.revision for e in events if e is not None])
        except VnstitchError as exc:   # unreachable for now: nothing new to read; said once per outage
            if not self._unreachable:
                log.warning("route manager: %s: %s (the last view stays)", self.name, exc)
                self._unreachable = True
            return self._changes
        if self._unreachable:
            log.info("route manager: %s is reachable again", self.name)
            self._unreachable = False
        if events:
            self._changes += 1
        self._revision = revision
        return self._changes

    def read(self) -> SiteView:
        from vnstitch.sites.config import view_from_store

        return view_from_store(self.store, source=self.name)

    def close(self) -> None:
        self.store.close()


@dataclass
class RouteManager:
    site_name: str
    config_path: str          # a resource file, or "" when `source` is given (e.g. a StoreSource)
    netns: str
    state_dir: str
    timers: Timers = field(default_factory=Timers)
    poll_interval_s: float = 0.05
    resync_interval_s: float = 5.0
    restart_delay_s: float = 1.0
    kernel_resync_s: float = 30.0
    source: object = None
    consent_port: int = CONSENT_PORT
    consent_lease_s: float = LEASE_S

    def __post_init__(self) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        if self.source is None:
            self.source = FileSource(self.config_path)
        self._stamp = self._file_stamp()
        self.view = self.source.read()                  # a bad view at start is an error (raised)
        self.site = self.view.site(self.site_name)
        self.config_error: str | None = None
        self.speaker = Speaker(self.state_dir, self.netns)
        self.vtep = Vtep(self.netns, self.site.spec.vtep)
        self._peers_config = ""
        self._speaker_died_at: float | None = None
        self._logged: set[tuple[str, str]] = set()
        self._status: dict = {}
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self._monitor = None
        self._kernel: tuple[dict, dict] | None = None   # (links, floods) of the VTEP (_kernel_snapshot)
        self._kernel_at = 0.0
        self._vx_index: dict[int, int] = {}    # VNID → its vx device's index at the last pass
        self._silent: dict[str, float] = {}    # peer site → when its session was first seen not established
        self._reported: set[str] = set()       # peer sites logged as not answering
        self.stitcher = Stitcher(self.site_name, self.netns, self.state_dir, self.consent_port, self.consent_lease_s)
        self.stitcher.view, self.stitcher.site = self.view, self.site
        self.stitcher.on_change = self.wake.set
        self._serving = False
        self._speaker_started_at = float("-inf")

    # lifecycle ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Until stop(): a pass whenever something changed (or each resync interval); then withdraw and
        clean up."""
        last_pass = 0.0
        try:
            while not self.stopping.is_set():
                woken = self.wake.wait(self.poll_interval_s)
                self.wake.clear()
                due = time.monotonic() - last_pass >= self.resync_interval_s
                if not (woken or due or self._file_stamp() != self._stamp or not self.speaker.alive()):
                    continue
                last_pass = time.monotonic()
                try:
                    self._serve_consents()
                    self.step()
                except VnstitchError as exc:
                    self._kernel = None
                    log.error("site %s: pass failed: %s", self.site_name, exc)
        finally:
            self.shutdown()

    def stop(self, *_args) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def shutdown(self) -> None:
        """Withdraw every advert (the peers remove their entries at once), stop the speaker, remove the
        flood entries this site learned. The bridges and VXLAN devices stay (members may be attached)."""
        try:
            if self.speaker.alive():
                self.speaker.announce(sorted(own_adverts(self.speaker.evpn_routes()[0], self.site)),
                                      withdraw=True)
                time.sleep(0.1)   # let the UPDATEs leave before the sessions close
        except VnstitchError as exc:
            log.warning("site %s: withdraw on shutdown: %s", self.site_name, exc)
        self.speaker.stop()
        self.speaker.close()
        self._stop_monitor()
        self.stitcher.close()   # the consent API stops; the tunnels stay (like the VXLAN devices)
        try:
            links = self.vtep.links()
            for vnid, present in self.vtep.floods(links).items():
                self.vtep.sync_flood(vnid, set(), present, links)
        except VnstitchError as exc:
            log.warning("site %s: flood entries on shutdown: %s", self.site_name, exc)
        self.vtep.close()
        self.source.close()
        self._write_status(running=False)

    # one pass -----------------------------------------------------------------------------------
    def step(self) -> None:
        self._reload()
        self._ensure_speaker()
        if not self.speaker.alive():
            return
        routes, others = self.speaker.evpn_routes()
        wanted = adverts(self.view, self.site)
        present = own_adverts(routes, self.site)
        served = set(self.view.served_by(self.site_name))
        links, floods = self._kernel_snapshot()
        for vnid in self.vtep.ensure_all(served, links):
            index = links.get(vxlan_ifname(vnid), {}).get("index")
            if index is None or index != self._vx_index.get(vnid):
                floods[vnid] = []       # a VXLAN device made (again) now has no flood entries yet
        self._vx_index = {v: links[vxlan_ifname(v)]["index"] for v in served if vxlan_ifname(v) in links}
        self.speaker.announce(sorted(wanted - present))
        for advert in sorted(wanted - present):
            if advert.prefix:
                log.info("site %s: advertised subnet %s of VNI %d", self.site_name, advert.prefix, advert.vni)
            else:
                log.info("site %s: advertised VNI %d (VTEP %s, %d Mbit/s)", self.site_name, advert.vni, advert.vtep,
                         advert.bandwidth_mbps)
        gone = stale(present, wanted)   # a new VTEP address: the old destination goes too
        self.speaker.announce(gone, withdraw=True)
        for advert in gone:
            log.info("site %s: withdrew %s", self.site_name,
                     f"subnet {advert.prefix} of VNI {advert.vni}" if advert.prefix else f"VNI {advert.vni}")
        decision = decide(routes, others, self.view, self.site)
        for key, reason in decision.rejected:
            if (key, reason) not in self._logged:
                self._logged.add((key, reason))
                log.warning("site %s: rejected route %s: %s", self.site_name, key, reason)
        for vnid in sorted(self.vtep.sync_floods({v: set(d) for v, d in decision.fdb.items()}, floods, links)):
            log.info("site %s: VNI %d floods to %s", self.site_name, vnid,
                     ", ".join(sorted(decision.fdb.get(vnid, ()))) or "no one")
        for vnid in sorted(self.vtep.vnids(links) - served):
            self.vtep.remove(vnid, links)     # the network left this site
            floods.pop(vnid, None)
            log.info("site %s: VNI %d left the site: its VTEP device is removed", self.site_name, vnid)
        peers = self._watch_peers()
        # The speaker (re)started a short while ago and not every session is up: routes may be missing that
        # are not gone, so a stitch in use is not given up for them yet.
        settling = (time.monotonic() - self._speaker_started_at < max(10.0, 3 * self.timers.hold_time_s)
                    and (peers is None or any(p["state"] != "established" for p in peers)))
        stitch_error = None
        try:   # a stitch's trouble is the stitch's: the adverts, flood entries and status above still stand
            self.stitcher.step(self.view, self.site, routes, {item.site for item in decision.learned}, settling)
        except Exception as exc:   # noqa: BLE001 (logged with its traceback, recorded; the next pass tries again)
            stitch_error = f"{type(exc).__name__}: {exc}"
            log.exception("site %s: stitches across sites: %s", self.site_name, stitch_error)
        self._status = {**self.stitcher.snapshot(), "stitchError": stitch_error,
                        "advertised": [{k: v for k, v in a.__dict__.items() if k != "prefix"}
                                       for a in sorted(wanted) if not a.prefix],
                        "advertisedPrefixes": [{"vni": a.vni, "prefix": a.prefix} for a in sorted(wanted) if a.prefix],
                        "peers": peers, "learned": [item.__dict__ for item in decision.learned],
                        "learnedPrefixes": [item.__dict__ for item in decision.prefixes],
                        "rejected": [{"route": k, "reason": r} for k, r in decision.rejected],
                        "fdb": {str(v): sorted(d) for v, d in sorted(decision.fdb.items())},
                        "speakerApi": self.speaker.api_mode(), "speakerApiError": self.speaker.api_error}
        self._write_status(running=True)

    def _watch_peers(self) -> list[dict] | None:
        """Each peer site's session; one that has not been established for `silent_after_s` (3 hold times)
        is logged once as not answering, and again when it is back. None without the gRPC API."""
        peers = self.speaker.peers()
        if peers is None:
            return None
        now = time.monotonic()
        by_address = {s.spec.route_manager_address: name for name, s in self.view.sites.items()}
        silent_after_s = 3 * max(self.timers.hold_time_s, 1)
        for peer in peers:
            site = by_address.get(peer["address"], peer["address"])
            peer["site"] = site
            if peer["state"] == "established":
                if self._silent.pop(site, None) is not None and site in self._reported:
                    self._reported.discard(site)
                    log.info("site %s: peer site %s (%s) answers again", self.site_name, site, peer["address"])
                continue
            since = self._silent.setdefault(site, now)
            peer["downForS"] = round(now - since, 1)
            if now - since >= silent_after_s and site not in self._reported:
                self._reported.add(site)
                log.warning("site %s: peer site %s (%s, AS %d) does not answer: its session has been %s for "
                            "%.0f s", self.site_name, site, peer["address"], peer["asn"], peer["state"], now - since)
        return peers

    def _serve_consents(self) -> None:
        """The consent API on the route-manager address, once it can bind (retried each pass until then)."""
        if self._serving and self.stitcher.address == self.site.spec.route_manager_address:
            return
        if self._serving:   # the Site's address changed: listen on the new one
            self.stitcher.close_server()
            self._serving = False
        try:
            self.stitcher.serve(self.site.spec.route_manager_address)
        except (OSError, VnstitchError) as exc:
            log.error("site %s: the consent API cannot listen on %s:%d: %s", self.site_name,
                      self.site.spec.route_manager_address, self.consent_port, exc)
            return
        self._serving = True
        log.info("site %s: consent API on %s:%d", self.site_name, self.site.spec.route_manager_address,
                 self.consent_port)

    def _kernel_snapshot(self) -> tuple[dict, dict]:
        """The VTEP's links and flood entries: read from the kernel every `kernel_resync_s` (two reads, 0.15 s
        at 1,000 VNIDs), in between the last read with this route manager's own changes applied. A failed pass
        drops it, so the next one reads the kernel again."""
        now = time.monotonic()
        if self._kernel is None or now - self._kernel_at >= self.kernel_resync_s:
            links = self.vtep.links()
            self._kernel, self._kernel_at = (links, self.vtep.floods(links)), now
        return self._kernel

    def _file_stamp(self):
        return self.source.stamp()

    def _reload(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            view = self.source.read()
            site = view.site(self.site_name)
        except (OSError, VnstitchError) as exc:
            self.config_error = str(exc)
            log.error("site %s: %s is rejected, the last good view stays: %s", self.site_name, self.source.name, exc)
            self._write_status(running=True)
            return
        changed = view != self.view or self.config_error is not None
        self.view, self.site, self.config_error = view, site, None
        if changed:
            log.info("site %s: reloaded %s", self.site_name, self.source.name)

    def _ensure_speaker(self) -> None:
        config = speaker_config(self.site, [s for n, s in self.view.sites.items() if n != self.site_name],
                                self.timers)
        if self.speaker.alive() and config == self._peers_config:
            if self._monitor is not None and self._monitor.poll() is not None:   # e.g. started before the API was up
                log.info("site %s: the RIB monitor ended (exit %s): started again", self.site_name,
                         self._monitor.returncode)
                self._stop_monitor()
                self._monitor = self.speaker.monitor(self.wake.set)
            return
        now = time.monotonic()
        if self._peers_config and config == self._peers_config:   # it died: wait a little, then restart
            if self._speaker_died_at is None:
                self._speaker_died_at = now
                log.error("site %s: gobgpd died; restarting it in %gs", self.site_name, self.restart_delay_s)
            if now - self._speaker_died_at < self.restart_delay_s:
                return
        elif self._peers_config:
            log.info("site %s: the peers changed: restarting gobgpd", self.site_name)
        self._speaker_died_at = None
        self._stop_monitor()
        pid = self.speaker.start(config)
        self._speaker_started_at = time.monotonic()
        self._peers_config = config
        self._monitor = self.speaker.monitor(self.wake.set)
        log.info("site %s: gobgpd %d listens on %s in %s", self.site_name, pid, self.site.spec.route_manager_address,
                 self.netns)

    def _stop_monitor(self) -> None:
        if self._monitor is not None:
            if self._monitor.poll() is None:
                self._monitor.kill()
            self._monitor.wait()
            self._monitor = None

    def _write_status(self, running: bool) -> None:
        """status.json in the state dir: what is advertised, learned, rejected and programmed."""
        status = {"site": self.site_name, "running": running, "pid": os.getpid(), "speakerPid": self.speaker.pid(),
                  "configError": self.config_error, **self._status}
        path = os.path.join(self.state_dir, "status.json")
        text = json.dumps(status, indent=1, sort_keys=True)
        if text == getattr(self, "_written", None):
            return
        self._written = text
        try:
            with open(path + ".tmp", "w") as handle:
                handle.write(text)
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.warning("site %s: cannot write %s: %s", self.site_name, path, exc)


__all__ = ["FileSource", "RouteManager", "StoreSource", "Advert", "Timers"]
