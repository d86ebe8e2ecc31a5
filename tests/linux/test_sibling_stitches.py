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
