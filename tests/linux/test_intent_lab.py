"""The product brief's intent on the real kernel: customer X's order processing (blue) is isolated but
reaches analytics service Y (red, tcp/8443) within 20 ms. Checked with a TCP/ICMP reachability matrix
over every member pair; then a link of the chosen path is delayed: the intent reports Degraded (a
numbered report), the engine reroutes, and it is Compliant again; a contradicting intent is refused."""

from __future__ import annotations

import time

import pytest

from vnstitch.lab import impair
from vnstitch.drivers.linux.layout import StitchNames
from tests.linux.conftest import REPO
from tests.linux.test_service_rules import _listen, tcp_connects
from vnstitch.errors import Conflict

ADDRESSES = {"blue-1": "10.1.0.11", "blue-2": "10.1.0.12", "red-1": "10.2.0.21", "red-2": "10.2.0.22",
             "green-1": "10.3.0.31"}
LAB_INTENT = REPO / "examples" / "lab-intent.yaml"   # red offers tcp/8443; the intent 'orders'


def _intent(name: str, text: str):
    from vnstitch.domain.registry import parse_resource

    return parse_resource({"kind": "Intent", "metadata": {"name": name, "tenant": "acme"}, "spec": {"text": text}},
                          user_input=True)


def _until(controlled, done, timeout_s: float = 40.0, what: str = "") -> float:
    """Reconcile passes (the intent engine runs first in each) until done(); the seconds it took."""
    start = time.monotonic()
    while True:
        controlled.services.reconcile_once()
        if done():
            return time.monotonic() - start
        assert time.monotonic() - start < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.3)


def _intent_status(controlled):
    return controlled.services.get("Intent", "orders", "acme").status


def matrix(lab) -> dict[tuple[str, str, str], bool]:
    """(from VM, to VM, flow) → crossed, for every ordered pair of VMs and flows tcp/8443, tcp/9000, icmp."""
    out = {}
    for src in ADDRESSES:
        for dst, address in ADDRESSES.items():
            if src == dst or src.split("-")[0] == dst.split("-")[0]:
                continue  # within one network: not the intent's business
            out[(src, dst, "tcp/8443")] = tcp_connects(lab, src, address, 8443, 0.5)
            out[(src, dst, "tcp/9000")] = tcp_connects(lab, src, address, 9000, 0.5)
            out[(src, dst, "icmp")] = lab.pings(src, address)
    return out


@pytest.mark.slow
def test_the_brief_intent_isolates_reaches_the_service_only_and_reroutes_around_a_delay(controlled):
    lab = controlled.lab
    for vm in ADDRESSES:
        _listen(lab, vm, "8443,9000", 9001)
    controlled.apply(LAB_INTENT.read_text())
    _until(controlled, lambda: _intent_status(controlled).handling_state == "Compliant", what="first Compliant")
    status = _intent_status(controlled)
    stitch = controlled.stitch("in-orders-reach-red-8443")
    assert stitch.spec.services[0].port == 8443 and stitch.spec.max_latency == 0.02
    assert stitch.status.state.value == "ACTIVE" and stitch.status.measured.latency < 0.02, stitch.status
    first_path = list(stitch.status.path)

    crossed = matrix(lab)
    allowed = {k for k, v in crossed.items() if v}
    assert allowed == {(s, d, "tcp/8443") for s in ("blue-1", "blue-2") for d in ("red-1", "red-2")}, \
        sorted(allowed)

    # a second intent that contradicts the first is refused with both names, and changes nothing
    with pytest.raises(Conflict) as refused:
        controlled.services.apply([_intent("web", "for group('acme/blue') allow service('acme/green:80')")])
    assert "'web'" in str(refused.value) and "'orders'" in str(refused.value)

    # delay a link of the chosen path (both directions): Degraded with a numbered report, a reroute, Compliant
    u, v = first_path[0], first_path[1]
    link, egress_u, egress_v = lab.driver.lab.link_between(u, v)
    reports_before = status.report_count
    record = controlled.driver.state["stitches"]["acme/in-orders-reach-red-8443"]
    names = StitchNames(record["hash"], record["index"])
    injected = time.monotonic()
    # the stitch's tunnel packets on that link (its HTB class there) wait 50 ms each way (no netem here)
    for node, egress in ((u, egress_u), (v, egress_v)):
        impair.add_class_delay(lab.driver.lab.node_ns(node), egress, f"1:{names.class_minor:x}", names.port("a"),
                               0.05)
    try:
        _until(controlled, lambda: any(r.verdict == "Degraded" and r.number > reports_before
                                       for r in _intent_status(controlled).reports), what="Degraded")
        degraded_after = time.monotonic() - injected
        _until(controlled, lambda: _intent_status(controlled).handling_state == "Compliant"
               and list(controlled.stitch("in-orders-reach-red-8443").status.path) != first_path,
               what="Compliant on another path")
        compliant_after = time.monotonic() - injected
    finally:
        impair.clear(lab.driver.lab.node_ns(u), egress_u)
        impair.clear(lab.driver.lab.node_ns(v), egress_v)
    status = _intent_status(controlled)
    degraded = next(r for r in status.reports if r.verdict == "Degraded" and r.number > reports_before)
    reach = next(e for e in degraded.expectations if e.id == "reach-red-8443")
    assert reach.verdict == "NOT_FULFILLED" and "latency" in reach.reason and reach.measured["latency"] > 0.02
    actions = [a for r in status.reports if r.number >= degraded.number for a in r.actions]
    assert any("reroute stitch acme/in-orders-reach-red-8443" in a and "rerouted" in a for a in actions), actions
    stitch = controlled.stitch("in-orders-reach-red-8443")
    assert {link.a, link.b} not in [{a, b} for a, b in zip(stitch.status.path, stitch.status.path[1:])], \
        "the new path avoids the delayed link"
    assert stitch.status.measured.latency < 0.02
    assert matrix(lab) == crossed, "the isolation holds on the new path"
    print(f"degraded reported {degraded_after:.1f} s after the delay, Compliant again after {compliant_after:.1f} s")
