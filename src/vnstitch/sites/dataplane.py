"""A site's VTEP in its namespace: bridge + VXLAN per served VNID, flood entries from the learned routes."""

from __future__ import annotations

from vnstitch.drivers.linux.kernel import EEXIST, ENODEV, ENOENT, Namespaces, ifindex, in_netns, kernel_errors, tolerate
from vnstitch.drivers.linux.layout import NETWORK_MTU, NETWORK_VXLAN_PORT, bridge_ifname, vxlan_ifname

ZERO_MAC = "00:00:00:00:00:00"


def _bridged_frames_skip_iptables() -> None:
    """sysctl -w net.bridge.bridge-nf-call-ip{,6}tables=0 (written from a thread in the namespace: no fork;
    the keys exist only while br_netfilter is loaded)."""
    for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
        try:
            with open(f"/proc/sys/net/bridge/{key}", "w") as handle:
                handle.write("0")
        except FileNotFoundError:
            pass


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

    def vnids(self) -> set[int]:
        """The VNIDs with a vx<VNID> device here."""
        found = set()
        for msg in self.ipr.get_links():
            name = msg.get("IFLA_IFNAME") or ""
            if name.startswith("vx") and name[2:].isdigit() and msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "vxlan":
                found.add(int(name[2:]))
        return found

    def ensure(self, vnid: int) -> bool:
        """br<VNID> and vx<VNID> (VNI, local VTEP, UDP 4789, learning) enslaved to it, both up."""
        ipr, changed = self.ipr, False
        bridge, vxlan = bridge_ifname(vnid), vxlan_ifname(vnid)
        with kernel_errors(f"VTEP for VNI {vnid} in {self.netns}"):
            br = ifindex(ipr, bridge)
            if br is None:
                with tolerate(EEXIST):
                    ipr.link("add", ifname=bridge, kind="bridge")   # ip link add brVNID type bridge
                br, changed = ifindex(ipr, bridge), True
                in_netns(self.netns, _bridged_frames_skip_iptables)
            vx = ifindex(ipr, vxlan)
            if vx is None:
                # ip link add vxVNID type vxlan id VNID local VTEP dstport 4789 learning
                with tolerate(EEXIST):
                    ipr.link("add", ifname=vxlan, kind="vxlan", vxlan_id=vnid, vxlan_local=self.local,
                             vxlan_port=NETWORK_VXLAN_PORT, vxlan_learning=1)
                vx, changed = ifindex(ipr, vxlan), True
            for index, master in ((br, None), (vx, br)):
                msg = ipr.link("get", index=index)[0]
                wanted: dict = {}
                if msg.get("IFLA_MTU") != NETWORK_MTU:
                    wanted["mtu"] = NETWORK_MTU
                if master is not None and msg.get("IFLA_MASTER") != master:
                    wanted["master"] = master
                if not msg["flags"] & 1:
                    wanted["state"] = "up"
                if wanted:
                    ipr.link("set", index=index, **wanted)   # ip link set dev X [mtu 1450] [master brVNID] up
                    changed = True
        return changed

    def remove(self, vnid: int) -> bool:
        """ip link del vxVNID; ip link del brVNID"""
        changed = False
        with kernel_errors(f"remove VTEP for VNI {vnid} in {self.netns}"):
            for name in (vxlan_ifname(vnid), bridge_ifname(vnid)):
                index = ifindex(self.ipr, name)
                if index is not None:
                    with tolerate(ENOENT, ENODEV):
                        self.ipr.link("del", index=index)   # ip link del NAME
                    changed = True
        return changed

    def flood(self, vnid: int) -> list[str]:
        """The remote VTEPs of vx<VNID>'s 00:00:00:00:00:00 entries, one per entry (so duplicates show)."""
        vx = ifindex(self.ipr, vxlan_ifname(vnid))
        if vx is None:
            return []
        with kernel_errors(f"bridge fdb show dev {vxlan_ifname(vnid)}"):
            # bridge fdb show dev vxVNID
            return sorted(e.get("NDA_DST") for e in self.ipr.fdb("dump", ifindex=vx)
                          if e.get("NDA_LLADDR") == ZERO_MAC and e.get("NDA_DST"))

    def sync_flood(self, vnid: int, wanted: set[str]) -> bool:
        """One flood entry per remote VTEP in `wanted` (the kernel keeps one per dst: an append of a present
        one is a no-op); the entries of withdrawn VTEPs go, with the MACs learned behind them."""
        vx = ifindex(self.ipr, vxlan_ifname(vnid))
        if vx is None:
            return False
        changed = False
        with kernel_errors(f"FDB of {vxlan_ifname(vnid)} in {self.netns}"):
            present = set(self.flood(vnid))
            for dst in sorted(wanted - present):
                # bridge fdb append 00:00:00:00:00:00 dev vxVNID dst REMOTE_VTEP
                self.ipr.fdb("append", ifindex=vx, lladdr=ZERO_MAC, dst=dst)
                changed = True
            gone = present - wanted
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
