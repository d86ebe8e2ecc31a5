"""Two stitches between the same networks (a user segment stitch and, e.g., a forecast bandwidth
stitch): the one ensured last carries the VMs' traffic, and ending it hands the route back, so the
pair stays reachable over the stitch that remains."""

from vnstitch.planning.ops import RemoveStitch


def test_ending_one_of_two_stitches_between_the_same_networks_keeps_the_pair_reachable(lab):
    user = lab.stitch_op("user", "segment", {"network": "blue"}, {"network": "green"}, encryption="none")
    assert lab.driver.apply(user) is True
    assert lab.pings("blue-1", "10.3.0.31", count=2)
    extra = lab.stitch_op("fc", "bandwidth", {"network": "blue"}, {"network": "green"}, bandwidth="1Gbps",
                          path=("n1", "n2", "n3"))
    assert lab.driver.apply(extra) is True
    assert lab.pings("blue-1", "10.3.0.31", count=2), "over the newer stitch"
    assert lab.driver.apply(RemoveStitch("acme/fc", reason="test")) is True
    assert lab.pings("blue-1", "10.3.0.31", count=3), "the route went back to the user stitch"
    assert lab.pings("green-1", "10.1.0.11", count=2)
    seen = lab.driver.observe().stitches
    assert "acme/fc" not in seen and seen["acme/user"].healthy


def test_two_stitches_of_one_network_each_answer_for_their_own_gateway(lab):
    """blue→red and blue→green made back to back, both of blue's ends on n1: each gateway veth holds its
    169.254 address and joins blue's bridge, so a VM's ARP for one gateway reaches both veths. Unless the
    node answers ARP only on the interface that holds the address, the other stitch's veth may answer
    first and the VM sends green's traffic into red's table (where it is unreachable)."""
    import json

    from vnstitch.drivers.linux.layout import StitchNames

    red = lab.stitch_op("br", "segment", {"network": "blue"}, {"network": "red"}, encryption="none")
    green = lab.stitch_op("bg", "segment", {"network": "blue"}, {"network": "green"}, encryption="none")
    assert lab.driver.apply(red) is True and lab.driver.apply(green) is True
    names = {key: StitchNames.of(lab.driver.state["stitches"][key]) for key in ("acme/br", "acme/bg")}
    sides = {key: "a" for key in names}   # blue is each stitch's `from`: end a
    assert red.a.node == green.a.node, "both of blue's ends on one node (the case that needs the fix)"
    gateways = {names[k].gateway_address(sides[k]): names[k].gateway_mac(sides[k]) for k in names}
    for trial in range(8):   # each trial resolves both gateways afresh
        for vm in ("blue-1", "blue-2"):
            lab.run(vm, "ip", "neigh", "flush", "dev", "eth0")
            assert lab.pings(vm, "10.2.0.21") and lab.pings(vm, "10.3.0.31"), (trial, vm)
            seen = {n["dst"]: n.get("lladdr") for n in json.loads(lab.run(vm, "ip", "-j", "neigh", "show", "dev",
                                                                            "eth0").stdout or "[]")}
            assert {ip: seen.get(ip) for ip in gateways} == gateways, (trial, vm, seen)
