"""A site's VTEP in its namespace: bridge + VXLAN per served VNID, flood entries from the learned routes."""

from __future__ import annotations

import json
import logging
import subprocess

from vnstitch.drivers.linux.kernel import (EEXIST, ENODEV, ENOENT, Namespaces, ifindex, in_netns, kernel_errors,
                                           run_batch, tolerate)
from vnstitch.drivers.linux.layout import NETWORK_MTU, NETWORK_VXLAN_PORT, bridge_ifname, vxlan_ifname
from vnstitch.errors import DriverError

log = logging.getLogger("vnstitch.route_manager")
ZERO_MAC = "00:00:00:00:00:00"
BATCH_FROM = 8   # from this many changes at once, iproute2's batch mode (ensure_all, sync_floods)


def _told(result, netns: str, tool: str, lines: int) -> None:
    """A batch's failures logged (the first and how many); what they missed is made one request at a time."""
    errors = [line for line in (result.stderr or "").splitlines() if line.strip()]
    if result.returncode != 0 or errors:
        log.warning("%s -batch in %s: %d message(s) on %d line(s), the first: %s (what is missing is made again, "
                    "one request at a time)", tool, netns, len(errors), lines, errors[0] if errors else
                    f"exit {result.returncode}")


def _bridged_frames_skip_iptables() -> None:
    """sysctl -w net.bridge.bridge-nf-call-ip{,6}tables=0 (written from a thread in the namespace: no fork;
    the keys exist only while br_netfilter is loaded)."""
    for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
        try:
            with open(f"/proc/sys/net/bridge/{key}", "w") as handle:
                handle.write("0")
        except FileNotFoundError:
            pass


def _link(msg) -> dict:
    return {"index": msg["index"], "kind": msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")), "mtu": msg.get("IFLA_MTU"),
            "master": msg.get("IFLA_MASTER"), "up": bool(msg["flags"] & 1)}


class Vtep:
    """Ensure-style kernel ops for one site namespace (CONVENTIONS 4)."""

    def __init__(self, netns: str, local_address: str):
        self.netns, self.local = netns, local_address
        self.nss = Namespaces()

    @property
    def ipr(self):
        return self.nss(self.netns)

    def close(self) -> None:
        self.nss.close()

    def links(self) -> dict[str, dict]:
        """One read of the namespace's links (`ip -d -j link show`): name → index, kind, mtu, master, up.
        Read by iproute2, not pyroute2: decoding a dump of 2,000 links took pyroute2 1.6 s, `ip -j` 0.1 s."""
        found = self._json(["ip", "-n", self.netns, "-d", "-j", "link", "show"])
        index = {link.get("ifname"): link.get("ifindex") for link in found}
        return {link.get("ifname") or "": {"index": link.get("ifindex"),
                                           "kind": (link.get("linkinfo") or {}).get("info_kind"),
                                           "mtu": link.get("mtu"), "master": index.get(link.get("master")),
                                           "up": "UP" in (link.get("flags") or ())}
                for link in found}

    def _json(self, argv: list[str]) -> list[dict]:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"{' '.join(argv)}: {exc}") from None
        if out.returncode != 0:
            raise DriverError(f"{' '.join(argv)}: {(out.stderr or out.stdout).strip() or 'exit ' + str(out.returncode)}")
        try:
            return json.loads(out.stdout or "[]")
        except ValueError as exc:
            raise DriverError(f"{' '.join(argv)}: unreadable output ({exc})") from None

    def vnids(self, links: dict[str, dict] | None = None) -> set[int]:
        """The VNIDs with a vx<VNID> device here."""
        return {int(name[2:]) for name, link in (self.links() if links is None else links).items()
                if name.startswith("vx") and name[2:].isdigit() and link["kind"] == "vxlan"}

    def ensure(self, vnid: int, links: dict[str, dict] | None = None) -> bool:
        """br<VNID> and vx<VNID> (VNI, local VTEP, UDP 4789, learning) enslaved to it, both up. `links` (from
        links()) spares the lookups: a pass over many VNIDs asks the kernel once, and only for what differs;
        it is updated in place with what this changed."""
        ipr, changed = self.ipr, False
        bridge, vxlan = bridge_ifname(vnid), vxlan_ifname(vnid)
        links = self.links() if links is None else links
        with kernel_errors(f"VTEP for VNI {vnid} in {self.netns}"):
            # Made with their MTU, master and state in the one request (two calls and a read each, not four).
            if bridge not in links:
                with tolerate(EEXIST):
                    # ip link add brVNID mtu 1450 up type bridge
                    ipr.link("add", ifname=bridge, kind="bridge", mtu=NETWORK_MTU, state="up")
                in_netns(self.netns, _bridged_frames_skip_iptables)
                links[bridge] = _link(ipr.link("get", ifname=bridge)[0])
                changed = True
            if vxlan not in links:
                with tolerate(EEXIST):
                    # ip link add vxVNID mtu 1450 master brVNID up type vxlan id VNID local VTEP dstport 4789 learning
                    ipr.link("add", ifname=vxlan, kind="vxlan", vxlan_id=vnid, vxlan_local=self.local,
                             vxlan_port=NETWORK_VXLAN_PORT, vxlan_learning=1, mtu=NETWORK_MTU,
                             master=links[bridge]["index"], state="up")
                links[vxlan] = _link(ipr.link("get", ifname=vxlan)[0])
                changed = True
            br = links[bridge]["index"]
            for name, master in ((bridge, None), (vxlan, br)):
                link = links[name]
                wanted: dict = {}
                if link["mtu"] != NETWORK_MTU:
                    wanted["mtu"] = NETWORK_MTU
                if master is not None and link["master"] != master:
                    wanted["master"] = master
                if not link["up"]:
                    wanted["state"] = "up"
                if wanted:
                    # ip link set dev X [mtu 1450] [master brVNID] up
                    ipr.link("set", index=link["index"], **wanted)
                    links[name] = _link(ipr.link("get", index=link["index"])[0])
                    changed = True
        return changed

    def ensure_all(self, vnids, links: dict[str, dict]) -> set[int]:
        """ensure() for many VNIDs. When many have neither device yet, those are made first by iproute2's
        batch mode (kernel.run_batch: 1,000 devices in 0.3 s, against 7 ms a VNID through pyroute2), the
        links are read back once, and ensure() puts right, one request at a time, whatever the batch did not
        make. Returns the VNIDs changed."""
        vnids = sorted(vnids)
        fresh = [v for v in vnids if bridge_ifname(v) not in links and vxlan_ifname(v) not in links]
        changed: set[int] = set()
        if len(fresh) >= BATCH_FROM:
            lines = []
            for vnid in fresh:
                br, vx = bridge_ifname(vnid), vxlan_ifname(vnid)
                lines += [f"link add {br} mtu {NETWORK_MTU} type bridge",
                          f"link add {vx} mtu {NETWORK_MTU} type vxlan id {vnid} local {self.local} "
                          f"dstport {NETWORK_VXLAN_PORT} learning",
                          f"link set {vx} master {br} up", f"link set {br} up"]
            _told(run_batch(self.netns, "ip", lines), self.netns, "ip", len(lines))
            in_netns(self.netns, _bridged_frames_skip_iptables)
            links.clear()
            links.update(self.links())
            changed.update(v for v in fresh if bridge_ifname(v) in links or vxlan_ifname(v) in links)
        changed.update(v for v in vnids if self.ensure(v, links))
        return changed

    def sync_floods(self, wanted: dict[int, set[str]], floods: dict[int, list[str]],
                    links: dict[str, dict]) -> set[int]:
        """sync_flood() for many VNIDs (`floods` from floods(), updated in place). When many entries are
        missing, they are appended by `bridge -batch` first and the FDB read back once. Returns the VNIDs
        whose entries changed."""
        appends = [(vnid, dst) for vnid, dsts in sorted(wanted.items()) if vxlan_ifname(vnid) in links
                   for dst in sorted(dsts - set(floods.get(vnid, [])))]
        changed: set[int] = set()
        if len(appends) >= BATCH_FROM:
            _told(run_batch(self.netns, "bridge", [f"fdb append {ZERO_MAC} dev {vxlan_ifname(vnid)} dst {dst}"
                                                   for vnid, dst in appends]), self.netns, "bridge", len(appends))
            floods.clear()
            floods.update(self.floods(links))
            changed.update(vnid for vnid, _ in appends)
        for vnid, dsts in sorted(wanted.items()):
            if self.sync_flood(vnid, dsts, floods.get(vnid, []), links):
                changed.add(vnid)
            floods[vnid] = sorted(dsts) if vxlan_ifname(vnid) in links else []
        return changed

    def remove(self, vnid: int, links: dict[str, dict] | None = None) -> bool:
        """ip link del vxVNID; ip link del brVNID (and out of `links`, when given)"""
        changed = False
        with kernel_errors(f"remove VTEP for VNI {vnid} in {self.netns}"):
            for name in (vxlan_ifname(vnid), bridge_ifname(vnid)):
                index = ifindex(self.ipr, name)
                if index is not None:
                    with tolerate(ENOENT, ENODEV):
                        self.ipr.link("del", index=index)   # ip link del NAME
                    changed = True
                if links is not None:
                    links.pop(name, None)
        return changed

    def flood(self, vnid: int) -> list[str]:
        """The remote VTEPs of vx<VNID>'s 00:00:00:00:00:00 entries, one per entry (so duplicates show)."""
        return self.floods().get(vnid, [])

    def floods(self, links: dict[str, dict] | None = None) -> dict[int, list[str]]:
        """Every vx<VNID>'s flood entries from one read of the namespace's FDB (`bridge -j fdb show`, by
        iproute2 for the reason links() is): VNID → remote VTEPs, one per entry, sorted."""
        links = self.links() if links is None else links
        by_name = {vxlan_ifname(vnid): vnid for vnid in self.vnids(links)}
        found: dict[int, list[str]] = {vnid: [] for vnid in by_name.values()}
        for entry in self._json(["bridge", "-n", self.netns, "-j", "fdb", "show"]):
            vnid = by_name.get(entry.get("ifname"))
            if vnid is not None and entry.get("mac") == ZERO_MAC and entry.get("dst"):
                found[vnid].append(entry["dst"])
        return {vnid: sorted(dsts) for vnid, dsts in found.items()}

    def sync_flood(self, vnid: int, wanted: set[str], present: list[str] | None = None,
                   links: dict[str, dict] | None = None) -> bool:
        """One flood entry per remote VTEP in `wanted` (the kernel keeps one per dst: an append of a present
        one is a no-op); the entries of withdrawn VTEPs go, with the MACs learned behind them. `present`
        (from floods()) and `links` spare the dumps."""
        links = self.links() if links is None else links
        link = links.get(vxlan_ifname(vnid))
        if link is None:
            return False
        vx = link["index"]
        changed = False
        with kernel_errors(f"FDB of {vxlan_ifname(vnid)} in {self.netns}"):
            present_set = set(self.floods(links).get(vnid, []) if present is None else present)
            for dst in sorted(wanted - present_set):
                # bridge fdb append 00:00:00:00:00:00 dev vxVNID dst REMOTE_VTEP
                self.ipr.fdb("append", ifindex=vx, lladdr=ZERO_MAC, dst=dst)
                changed = True
            gone = present_set - wanted
            for dst in sorted(gone):
                with tolerate(ENOENT):
                    # bridge fdb del 00:00:00:00:00:00 dev vxVNID dst REMOTE_VTEP
                    self.ipr.fdb("del", ifindex=vx, lladdr=ZERO_MAC, dst=dst)
                changed = True
            if gone:
                for entry in self.ipr.fdb("dump", ifindex=vx):
                    mac, dst = entry.get("NDA_LLADDR"), entry.get("NDA_DST")
                    if mac != ZERO_MAC and dst in gone:
                        with tolerate(ENOENT):
                            # bridge fdb del MAC dev vxVNID dst REMOTE_VTEP (a MAC learned behind it)
                            self.ipr.fdb("del", ifindex=vx, lladdr=mac, dst=dst)
        return changed
