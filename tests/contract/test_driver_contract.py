"""Driver contract: ops are idempotent, observe() reflects what apply() did, errors keep errno."""

import errno

import pytest

from vnstitch.drivers.sim import SimDriver
from vnstitch.errors import DriverError
from vnstitch.planning.ops import (
    EnsureNetwork, EnsureStitch, MemberPlacement, RemoveNetwork, RemoveStitch, SetStitchRate, StitchEnd,
)

BLUE = EnsureNetwork("acme/blue", 1001, "10.1.0.0/24", (MemberPlacement("blue-1", "NYCMng", "10.1.0.11"),
                                                        MemberPlacement("blue-2", "CHINng", "10.1.0.12")))
RED = EnsureNetwork("acme/red", 1002, "10.2.0.0/24", (MemberPlacement("red-1", "LOSAng", "10.2.0.11"),))
GREEN = EnsureNetwork("acme/green", 1003, "10.3.0.0/24", (MemberPlacement("green-1", "LOSAng", "10.3.0.11"),))
PATH = ("NYCMng", "CHINng", "IPLSng", "KSCYng", "DNVRng", "SNVAng", "LOSAng")


def direct(rate=0.0, path=PATH):
    return EnsureStitch("acme/d", "direct", StitchEnd("acme/blue", 1001, "10.1.0.0/24", "NYCMng", "blue-1", "10.1.0.11"),
                        StitchEnd("acme/red", 1002, "10.2.0.0/24", "LOSAng", "red-1", "10.2.0.11"), path, rate, True)


@pytest.fixture(params=["sim", "sim-persistent"])
def driver(request, tmp_path, abilene):
    state = str(tmp_path / "sim.json") if request.param == "sim-persistent" else None
    d = SimDriver(state_path=state, topology=abilene.links)
    yield d
    d.close()


def test_ops_are_idempotent(driver):
    for op in (BLUE, RED, direct(5e6)):
        assert driver.apply(op) is True
        assert driver.apply(op) is False
    assert driver.apply(SetStitchRate("acme/d", 5e6)) is False
    assert driver.apply(SetStitchRate("acme/d", 7e6)) is True
    assert driver.apply(RemoveStitch("acme/d")) is True
    assert driver.apply(RemoveStitch("acme/d")) is False


def test_observe_reflects_applied_ops(driver):
    driver.apply(BLUE)
    driver.apply(RED)
    driver.apply(direct(5e6))
    seen = driver.observe()
    assert seen.networks["acme/blue"].nodes == frozenset({"NYCMng", "CHINng"})
    assert seen.networks["acme/blue"].members == frozenset({"blue-1", "blue-2"})
    s = seen.stitches["acme/d"]
    assert (s.path, s.rate_bps, s.encrypted, s.type) == (PATH, 5e6, True, "direct")
    assert s.latency_s is not None and s.latency_s > 0.01  # a coast-to-coast path


def test_errors_keep_errno(driver):
    with pytest.raises(DriverError) as info:
        driver.apply(direct())
    assert info.value.errno == errno.ENOENT
    driver.apply(BLUE)
    driver.apply(RED)
    with pytest.raises(DriverError) as info:
        driver.apply(direct(path=("NYCMng", "LOSAng")))  # no such substrate link
    assert info.value.errno == errno.ENETUNREACH
    driver.apply(direct())
    with pytest.raises(DriverError) as info:
        driver.apply(RemoveNetwork("acme/red"))
    assert info.value.errno == errno.EBUSY
    with pytest.raises(DriverError) as info:
        driver.apply(EnsureNetwork("acme/other", 1001, "10.9.0.0/24", ()))
    assert info.value.errno == errno.EEXIST


def test_state_survives_a_new_driver_instance(tmp_path, abilene):
    path = str(tmp_path / "sim.json")
    first = SimDriver(state_path=path, topology=abilene.links)
    for op in (BLUE, RED, direct(5e6)):
        first.apply(op)
    second = SimDriver(state_path=path, topology=abilene.links)
    assert second.observe().stitches == first.observe().stitches
    assert all(second.apply(op) is False for op in (BLUE, RED, direct(5e6)))


def test_filters_are_idempotent_observed_and_removed(driver):
    """Drivers with the `filters` capability (anomaly remediation): EnsureFilter / RemoveFilter converge."""
    from vnstitch.planning.ops import EnsureFilter, RemoveFilter, ServiceRule

    assert "filters" in driver.capabilities, f"{driver.name} places no filters"  # every driver here does
    op = EnsureFilter("acme/an-x/0", "NYCMng", "10.1.0.11/32", "10.3.0.0/24", "drop",
                      allow=(ServiceRule("tcp", 443),), reason="anomaly acme/an-x")
    assert driver.apply(op) is True and driver.apply(op) is False
    seen = driver.observe().filters["acme/an-x/0"]
    assert (seen.src, seen.dst, seen.action, seen.allow) == ("10.1.0.11/32", "10.3.0.0/24", "drop", op.allow)
    limited = EnsureFilter("acme/an-x/0", "NYCMng", "10.1.0.11/32", "10.3.0.0/24", "limit", 1e6)
    assert driver.apply(limited) is True and driver.filters()["acme/an-x/0"].rate_bps == 1e6
    with pytest.raises(DriverError) as info:
        driver.apply(EnsureFilter("acme/bad", "NYCMng", "nonsense", "10.3.0.0/24"))
    assert info.value.errno == errno.EINVAL
    assert driver.apply(RemoveFilter("acme/an-x/0")) is True and driver.apply(RemoveFilter("acme/an-x/0")) is False
    assert driver.filters() == {}
