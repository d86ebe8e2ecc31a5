"""One op compiler: the reconciler (from the store) and the namespace lab (from its YAML) compile the
same stitch into the same op."""

from vnstitch.controller.reconciler import Reconciler
from vnstitch.domain.stitch import Stitch
from vnstitch.domain.vnet import VirtualNetwork
from vnstitch.lab.stitching import stitch_op as lab_stitch_op
from vnstitch.planning.desired import network_op

BLUE = VirtualNetwork.model_validate({"kind": "VirtualNetwork", "metadata": {"name": "blue", "tenant": "acme"},
                                      "spec": {"vnid": 101, "cidr": "10.1.0.0/24",
                                               "members": [{"name": "b1", "node": "n1", "address": "10.1.0.11"}]}})
RED = VirtualNetwork.model_validate({"kind": "VirtualNetwork", "metadata": {"name": "red", "tenant": "acme"},
                                     "spec": {"vnid": 102, "cidr": "10.2.0.0/24",
                                              "members": [{"name": "r1", "node": "n3", "address": "10.2.0.11"}]}})


def _stitch(kind: str, **ends) -> Stitch:
    return Stitch.model_validate({"kind": "Stitch", "metadata": {"name": "s", "tenant": "acme"},
                                  "spec": {"type": kind, "from": ends["src"], "to": ends["dst"], "bandwidth": "100Mbps"},
                                  "status": {"path": ["n1", "n2", "n3"], "reservedBandwidth": 1e8}})


def _lab_networks():
    return {f"acme/{v.name}": {"vnid": v.spec.vnid, "cidr": v.spec.cidr,
                               "members": [m.model_dump() for m in v.spec.members]} for v in (BLUE, RED)}


def test_the_lab_and_the_reconciler_compile_the_same_ops():
    vnets = {"acme/blue": BLUE, "acme/red": RED}
    for kind, src, dst in (("direct", {"network": "blue", "member": "b1"}, {"network": "red", "member": "r1"}),
                           ("bandwidth", {"network": "blue"}, {"network": "red"}),
                           ("segment", {"network": "blue", "subnet": "10.1.0.0/25"}, {"network": "red"})):
        stitch = _stitch(kind, src=src, dst=dst)
        controller_op = Reconciler._stitch_op("acme/s", "acme", stitch, vnets)
        lab_op = lab_stitch_op(None, _lab_networks(), stitch, path=("n1", "n2", "n3"))
        assert controller_op == lab_op, kind
        assert controller_op.a.node == "n1" and controller_op.b.node == "n3" and controller_op.rate_bps == 1e8
    assert Reconciler._stitch_op("acme/s", "acme", _stitch("bandwidth", src={"network": "gone"}, dst={"network": "red"}),
                                 vnets) is None
    op = network_op(BLUE)
    assert (op.network, op.vnid, op.cidr, [m.node for m in op.members]) == ("acme/blue", 101, "10.1.0.0/24", ["n1"])
