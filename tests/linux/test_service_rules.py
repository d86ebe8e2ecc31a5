"""Services on the Linux data plane: only the listed flows cross a stitch from `from` to `to` (their
replies come back), everything else between the ends is dropped and counted, a change is applied in
place, and a chain edited or flushed by hand is seen and repaired."""

from __future__ import annotations

import subprocess
import sys
import time

from vnstitch.drivers.linux.layout import StitchNames
from vnstitch.planning.ops import ServiceRule

KEY = "acme/b1-r1"
RED_1, BLUE_1 = "10.2.0.21", "10.1.0.11"

# TCP listeners that greet and close, and a UDP echo, in a VM namespace.
LISTENER = r"""
import select, socket, sys
tcp = []
for port in sys.argv[1].split(","):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port))); s.listen(16); tcp.append(s)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
while True:
    for s in select.select(tcp + [udp], [], [])[0]:
        if s is udp:
            data, peer = udp.recvfrom(2048); udp.sendto(data, peer)
        else:
            conn, _ = s.accept(); conn.sendall(b"hi"); conn.close()
"""

TCP_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
    assert s.recv(2) == b"hi"
"""

UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
assert s.recvfrom(16)[0] == b"ping"
"""


def _listen(lab, vm: str, tcp_ports: str, udp_port: int) -> subprocess.Popen:
    proc = lab.spawn(vm, sys.executable, "-c", LISTENER, tcp_ports, str(udp_port))
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""
    return proc


def tcp_connects(lab, vm: str, address: str, port: int, timeout_s: float = 0.6) -> bool:
    return lab.run(vm, sys.executable, "-c", TCP_CLIENT, address, str(port), str(timeout_s)).returncode == 0


def udp_echoes(lab, vm: str, address: str, port: int, timeout_s: float = 0.6) -> bool:
    return lab.run(vm, sys.executable, "-c", UDP_CLIENT, address, str(port), str(timeout_s)).returncode == 0


def _stitch(lab, **spec):
    return lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                         {"network": "red", "member": "red-1"}, **spec)


def test_only_the_services_cross_and_the_rest_is_counted(lab):
    _listen(lab, "red-1", "8443,9000", 9001)
    _listen(lab, "blue-1", "8443", 9001)      # for a connection started from `to` back to `from`
    op = _stitch(lab, services=[{"protocol": "tcp", "port": 8443}])
    assert op.services == (ServiceRule("tcp", 8443),)
    assert lab.driver.apply(op) is True
    assert lab.driver.apply(op) is False, "re-applying the same op changes nothing"

    assert tcp_connects(lab, "blue-1", RED_1, 8443), "the service crosses, and its replies come back"
    seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy, seen.problem
    assert seen.services == op.services
    # no ICMP crosses: the probe times TCP handshakes to the service's port instead (allowed: not denied)
    assert seen.latency_s is not None and 0 < seen.latency_s < 0.05 and seen.loss == 0, seen
    denied_before = seen.denied_packets
    assert denied_before is not None

    assert not tcp_connects(lab, "blue-1", RED_1, 9000), "another TCP port is dropped"
    assert not lab.pings("blue-1", RED_1), "ICMP is dropped"
    assert not udp_echoes(lab, "blue-1", RED_1, 9001), "UDP is dropped"
    assert not tcp_connects(lab, "red-1", BLUE_1, 8443), "a connection started from `to` is dropped"
    assert tcp_connects(lab, "blue-1", RED_1, 8443), "the service still crosses"

    seen = lab.driver.observe().stitches[KEY]
    # at least: the SYN to 9000, the echo, the datagram, red-1's SYN (retransmits add more)
    assert seen.denied_packets >= denied_before + 4, (denied_before, seen.denied_packets)
    print(f"denied packets: {denied_before} → {seen.denied_packets}")
    assert seen.healthy and seen.tx_bytes > 0 and seen.rx_bytes > 0

    # Removing the services restores full reachability, in place (the same wireguard-go keeps running).
    pids = dict(lab.driver.state["stitches"][KEY]["pids"])
    opened = _stitch(lab)
    assert opened.services == ()
    assert lab.driver.apply(opened) is True
    assert lab.driver.state["stitches"][KEY]["pids"] == pids, "a change of services is no rebuild"
    assert lab.pings("blue-1", RED_1, count=2)
    assert tcp_connects(lab, "blue-1", RED_1, 9000)
    assert udp_echoes(lab, "blue-1", RED_1, 9001)
    assert tcp_connects(lab, "red-1", BLUE_1, 8443)
    seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy and seen.services == () and seen.denied_packets == 0, seen


def test_a_chain_edited_or_flushed_by_hand_is_seen_and_repaired(lab):
    _listen(lab, "red-1", "8443,9000", 9001)
    op = _stitch(lab, services=[{"protocol": "tcp", "port": 8443}])
    lab.driver.apply(op)
    record = lab.driver.state["stitches"][KEY]
    chain = f"st_{StitchNames(record['hash'], record['index']).hash}a"

    # Someone opens another port on end a instead of the service: the observed services differ.
    listed = lab.run("n1", "nft", "-a", "list", "chain", "inet", "vnstitch", chain).stdout
    line = next(line for line in listed.splitlines() if "dport 8443" in line)
    handle = line.rsplit("# handle ", 1)[1].strip()
    edited = line.split(" # handle")[0].strip().replace("dport 8443", "dport 9000")
    done = lab.run("n1", "nft", "replace", "rule", "inet", "vnstitch", chain, "handle", handle, edited)
    assert done.returncode == 0, done.stderr
    seen = lab.driver.observe().stitches[KEY]
    assert seen.services == (ServiceRule("tcp", 9000),), seen.services
    assert not seen.healthy and chain in seen.problem
    assert lab.driver.apply(op) is True, "the repair rewrites the chain"
    assert lab.driver.observe().stitches[KEY].services == op.services

    # Flushed: nothing crosses; observe says which chain, and the next ensure puts the rules back.
    assert tcp_connects(lab, "blue-1", RED_1, 8443)
    flushed = lab.run("n1", "nft", "flush", "chain", "inet", "vnstitch", chain)
    assert flushed.returncode == 0, flushed.stderr
    assert not tcp_connects(lab, "blue-1", RED_1, 8443)
    seen = lab.driver.observe().stitches[KEY]
    assert not seen.healthy and f"nftables chain {chain} does not hold the stitch's rules" in seen.problem
    assert seen.services != op.services
    assert lab.driver.apply(op) is True
    assert tcp_connects(lab, "blue-1", RED_1, 8443)
    assert not tcp_connects(lab, "blue-1", RED_1, 9000)
    deadline = time.monotonic() + 2
    seen = lab.driver.observe().stitches[KEY]
    while not seen.healthy and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy and seen.services == op.services and seen.denied_packets >= 1, seen


STITCH = """
apiVersion: vnstitch.io/v1
kind: Stitch
metadata: {name: b1-r1, tenant: acme}
spec:
  type: direct
  from: {network: blue, member: blue-1}
  to: {network: red, member: red-1}
  encryption: required
  bandwidth: 1Gbps
  services: [{protocol: tcp, port: 8443}]
  qos:
    - {name: gold, rank: 1, share: 0.6, dscp: 46}
    - {name: bronze, rank: 2, share: 0.4}
"""


def test_the_controller_converges_and_reports_denied_packets(controlled):
    """Through the reconciler: the stitch is built with its services and classes, the next pass finds
    nothing to do (observe reports exactly what the op asks), and denied packets reach the status."""
    lab = controlled.lab
    _listen(lab, "red-1", "8443,9000", 9001)
    controlled.apply(STITCH)
    controlled.services.reconcile_once()
    assert controlled.stitch("b1-r1").status.state.value == "ACTIVE"
    assert not controlled.services.reconcile_once().plan.ops, "observed services and classes are the desired ones"
    assert tcp_connects(lab, "blue-1", RED_1, 8443)
    assert not tcp_connects(lab, "blue-1", RED_1, 9000)
    assert not lab.pings("blue-1", RED_1)
    report = controlled.services.reconcile_once()
    assert not report.plan.ops
    denied = controlled.stitch("b1-r1").status.measured.denied
    assert denied is not None and denied >= 2, denied


def test_a_stitch_on_one_node_enforces_its_services_and_classes_too(lab):
    """blue-2 and red-2 are both on n2: one chain between the two gateway veths, classes on each."""
    _listen(lab, "red-2", "8443,9000", 9001)
    _listen(lab, "blue-2", "8443", 9001)
    op = lab.stitch_op("b2-r2", "direct", {"network": "blue", "member": "blue-2"},
                       {"network": "red", "member": "red-2"}, bandwidth="1Gbps",
                       services=[{"protocol": "tcp", "port": 8443}],
                       qos=[{"name": "gold", "rank": 1, "share": 0.5, "ports": [8443]},
                            {"name": "rest", "rank": 2, "share": 0.5}])
    assert op.path == ("n2",)
    assert lab.driver.apply(op) is True
    assert tcp_connects(lab, "blue-2", "10.2.0.22", 8443)
    assert not tcp_connects(lab, "blue-2", "10.2.0.22", 9000)
    assert not tcp_connects(lab, "red-2", "10.1.0.12", 8443)
    seen = lab.driver.observe().stitches["acme/b2-r2"]
    assert seen.healthy, seen.problem
    assert seen.services == op.services and seen.qos == op.qos and seen.denied_packets >= 2, seen
    assert lab.driver.apply(op) is False


def test_services_through_the_nft_command(lab, monkeypatch):
    """Where libnftables cannot be used (missing, or 1000+ files open) the `nft` command writes and
    lists the same chains."""
    from vnstitch.drivers.linux import nft
    monkeypatch.setattr(nft._Lib, "get", classmethod(lambda cls: None))
    _listen(lab, "red-1", "8443,9000", 9001)
    op = _stitch(lab, services=[{"protocol": "tcp", "port": 8443}, {"protocol": "icmp"}])
    assert lab.driver.apply(op) is True
    assert tcp_connects(lab, "blue-1", RED_1, 8443) and lab.pings("blue-1", RED_1)
    assert not tcp_connects(lab, "blue-1", RED_1, 9000)
    seen = lab.driver.observe().stitches[KEY]
    assert seen.healthy and seen.services == op.services and seen.denied_packets >= 1, seen
    assert lab.driver.apply(op) is False
