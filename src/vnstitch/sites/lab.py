"""A namespace lab of sites for the tests and the bench: a hub bridge, one namespace per site (its
border node: speaker + VTEP), VMs attached to the sites' bridges, a route manager process per site.

Namespaces are `vns-<name>-…` (so tests/linux's leftover checks see them); everything is torn down by
close(), even after a failure half-way through."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from vnstitch.drivers.linux import wireguard
from vnstitch.drivers.linux.kernel import Namespaces, ifindex, pid_alive, run_in
from vnstitch.drivers.linux.layout import NETWORK_MTU, bridge_ifname

SITE_SUBNET = "10.250.0"   # site i's route-manager and VTEP address: 10.250.0.i/24 on the hub


def vnstitch_argv() -> list[str]:
    """The `vnstitch` console script next to this interpreter (the venv's), else python -c main()."""
    script = os.path.join(os.path.dirname(sys.executable), "vnstitch")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "import sys; from vnstitch.cli.main import main; sys.exit(main())"]


class SitesLab:
    def __init__(self, name: str, directory: str, sites: list[str], as_base: int = 65100):
        self.name, self.directory, self.sites = name, directory, list(sites)
        self.as_base = as_base
        self.nss = Namespaces()
        self.procs: dict[str, subprocess.Popen] = {}
        self.vms: dict[str, str] = {}          # vm name → site
        self.config_path = os.path.join(directory, "sites.yaml")
        os.makedirs(directory, exist_ok=True)

    # names -----------------------------------------------------------------------------------
    def ns(self, site: str) -> str:
        return f"vns-{self.name}-{site}"

    def vm_ns(self, vm: str) -> str:
        return f"vns-{self.name}-vm-{vm}"

    def address(self, site: str) -> str:
        return f"{SITE_SUBNET}.{self.sites.index(site) + 1}"

    def state_dir(self, site: str) -> str:
        return os.path.join(self.directory, f"rm-{site}")

    # building ----------------------------------------------------------------------------------
    def build(self) -> None:
        hub = self.ns("hub")
        self.nss.create(hub)
        ipr = self.nss(hub)
        ipr.link("set", index=1, state="up")                       # ip -n HUB link set lo up
        ipr.link("add", ifname="hub", kind="bridge")               # ip -n HUB link add hub type bridge
        hub_index = ifindex(ipr, "hub")
        ipr.link("set", index=hub_index, state="up")               # ip -n HUB link set hub up
        for site in self.sites:
            ns = self.ns(site)
            self.nss.create(ns)
            # ip -n HUB link add s-SITE type veth peer name eth0 netns SITE_NS
            ipr.link("add", ifname=f"s-{site}"[:15], kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
            ipr.link("set", index=ifindex(ipr, f"s-{site}"[:15]), master=hub_index, state="up")
            site_ipr = self.nss(ns)
            site_ipr.link("set", index=1, state="up")
            eth0 = ifindex(site_ipr, "eth0")
            site_ipr.addr("add", index=eth0, address=self.address(site), prefixlen=24)   # ip addr add A/24 dev eth0
            site_ipr.link("set", index=eth0, state="up")

    def site_documents(self, offered: str = "1Gbps") -> str:
        docs = []
        for index, site in enumerate(self.sites):
            docs.append(f"kind: Site\nmetadata: {{name: {site}}}\nspec: {{nodes: [{site}-1, {site}-2], borderNode: "
                        f"{site}-1, asNumber: {self.as_base + index + 1}, routeManagerAddress: {self.address(site)}, "
                        f"trustLevel: trusted, offeredBandwidth: {offered}}}\n")
        return "---\n".join(docs)

    @staticmethod
    def network_document(name: str, vnid: int, members: dict[str, str], tenant: str = "acme",
                         cidr_prefix: str = "10.1.0") -> str:
        """A VirtualNetwork with one member per (vm → site): member i at `<site>-1`, address prefix.(i+1)."""
        items = ", ".join(f"{{name: {vm}, node: {site}-1, address: {cidr_prefix}.{i + 1}}}"
                          for i, (vm, site) in enumerate(members.items()))
        return (f"kind: VirtualNetwork\nmetadata: {{name: {name}, tenant: {tenant}}}\n"
                f"spec: {{vnid: {vnid}, cidr: {cidr_prefix}.0/24, members: [{items}]}}\n")

    def write_config(self, *network_documents: str, raw: str | None = None) -> None:
        """Replace the resource file atomically (the route managers notice its new mtime/size)."""
        text = raw if raw is not None else "---\n".join([self.site_documents(), *network_documents])
        with open(self.config_path + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(self.config_path + ".tmp", self.config_path)

    def start(self, site: str, *extra: str, store: str | None = None) -> subprocess.Popen:
        """The site's route manager, its view from the resource file (or from the state store `store`)."""
        log = open(os.path.join(self.directory, f"rm-{site}.log"), "ab")
        view = ["--store", store, "route-manager"] if store else ["route-manager", "-f", self.config_path]
        proc = subprocess.Popen([*vnstitch_argv(), *view, "--site", site,
                                 "--netns", self.ns(site), "--state-dir", self.state_dir(site), *extra],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[site] = proc
        return proc

    def attach_vm(self, vm: str, site: str, vnid: int, address: str, timeout_s: float = 30) -> None:
        """A VM namespace whose eth0 is bridged into br<vnid> at the site (once its route manager made it)."""
        site_ipr = self.nss(self.ns(site))
        deadline = time.monotonic() + timeout_s
        while ifindex(site_ipr, bridge_ifname(vnid)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{bridge_ifname(vnid)} never appeared at site {site} ({self.log(site)})")
            time.sleep(0.05)
        ns = self.vm_ns(vm)
        self.nss.create(ns)
        self.vms[vm] = site
        port = f"m{vnid}{vm}"[:15]
        # ip -n SITE link add PORT type veth peer name eth0 netns VM
        site_ipr.link("add", ifname=port, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
        # ip -n SITE link set PORT master brVNID mtu 1450 up
        site_ipr.link("set", index=ifindex(site_ipr, port), master=ifindex(site_ipr, bridge_ifname(vnid)),
                      mtu=NETWORK_MTU, state="up")
        vm_ipr = self.nss(ns)
        vm_ipr.link("set", index=1, state="up")
        eth0 = ifindex(vm_ipr, "eth0")
        vm_ipr.addr("add", index=eth0, address=address, prefixlen=24)   # ip -n VM addr add ADDRESS/24 dev eth0
        vm_ipr.link("set", index=eth0, mtu=NETWORK_MTU, state="up")

    def route(self, vm: str, cidr: str) -> None:
        """ip -n VM route add CIDR dev eth0: the far network on-link (its site's border answers ARP for it)."""
        vm_ipr = self.nss(self.vm_ns(vm))
        address, _, length = cidr.partition("/")
        vm_ipr.route("add", dst=address, dst_len=int(length), oif=ifindex(vm_ipr, "eth0"), scope=253)

    def tunnel_pids(self, site: str) -> dict[str, int]:
        """The wireguard-go ends of the site's stitches across sites: device → pid (sites/tunnels.py files)."""
        directory = os.path.join(self.state_dir(site), "tunnels")
        found = {}
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if name.endswith(".pid"):
                try:
                    with open(os.path.join(directory, name)) as handle:
                        found[name[:-4]] = int(handle.read())
                except (OSError, ValueError):
                    pass
        return found

    # observing -------------------------------------------------------------------------------
    def flood(self, site: str, vnid: int) -> list[str] | None:
        """bridge -n SITE fdb show dev vxVNID: the 00:00:00:00:00:00 dsts, one per entry; None: no device."""
        out = run_in(self.ns(site), ["bridge", "-j", "fdb", "show", "dev", f"vx{vnid}"], check=False)
        if out.returncode != 0:
            return None
        return sorted(e["dst"] for e in json.loads(out.stdout or "[]")
                      if e.get("mac") == "00:00:00:00:00:00" and e.get("dst"))

    def status(self, site: str) -> dict:
        try:
            with open(os.path.join(self.state_dir(site), "status.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def speaker_pid(self, site: str) -> int | None:
        try:
            with open(os.path.join(self.state_dir(site), "gobgpd.pid")) as handle:
                return int(handle.read())
        except (OSError, ValueError):
            return None

    def gobgp(self, site: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["gobgp", "--target", f"unix://{self.state_dir(site)}/gobgpd.sock", *args],
                              capture_output=True, text=True, timeout=10)

    def established(self) -> bool:
        """Every site's speaker has an established session with every other site (`gobgp neighbor`)."""
        for site in self.sites:
            out = self.gobgp(site, "neighbor")
            if out.returncode != 0 or out.stdout.count("Establ") != len(self.sites) - 1:
                return False
        return True

    def log(self, site: str) -> str:
        try:
            with open(os.path.join(self.directory, f"rm-{site}.log")) as handle:
                return handle.read()[-3000:]
        except OSError:
            return ""

    def ping(self, vm: str, address: str, count: int = 1, wait_s: float = 1) -> bool:
        return run_in(self.vm_ns(vm), ["ping", "-n", "-q", "-c", str(count), "-i", "0.05", "-W", f"{wait_s:g}",
                                       address], check=False).returncode == 0

    # failure -----------------------------------------------------------------------------------
    def kill(self, site: str) -> None:
        """SIGKILL the site's route manager, then its speaker: the site is gone, nothing withdrawn."""
        proc = self.procs.get(site)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        pid = self.speaker_pid(site)
        if pid_alive(pid, "gobgpd"):
            os.kill(pid, signal.SIGKILL)

    def processes(self) -> list[str]:
        """Live processes whose command line names this lab's directory (route managers, speakers)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    argv = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.directory in argv and pid_alive(int(entry)):
                found.append(f"{entry}: {argv.strip()}")
        return found

    def close(self) -> None:
        """SIGTERM every route manager (it withdraws and stops its speaker), SIGKILL what remains, delete
        every namespace."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for site in self.sites:
            pid = self.speaker_pid(site)
            if pid_alive(pid, "gobgpd"):
                os.kill(pid, signal.SIGKILL)
            for ifname, pid in self.tunnel_pids(site).items():   # route managers keep their tunnels: not a lab
                if pid_alive(pid, ifname):
                    os.kill(pid, signal.SIGKILL)
                try:
                    os.unlink(wireguard.socket_path(ifname))
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        for vm in list(self.vms):
            self.nss.remove(self.vm_ns(vm))
        for site in self.sites:
            self.nss.remove(self.ns(site))
        self.nss.remove(self.ns("hub"))
        self.nss.close()

    @staticmethod
    def available() -> str | None:
        """Why this lab cannot run here, or None."""
        if os.geteuid() != 0:
            return "needs root (network namespaces)"
        missing = [t for t in ("gobgpd", "gobgp", "ip", "bridge", "ping") if shutil.which(t) is None]
        if missing:
            return f"missing tools: {', '.join(missing)} (apt-get install gobgpd; scripts/system-deps.sh)"
        return None
