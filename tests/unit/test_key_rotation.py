"""Key rotation in the pure core and the simulator: a request (annotation) and the spec's period reach the
op's `keys_after`, the plan rotates a healthy stitch whose keys are older, and a rotation is no repair."""

from __future__ import annotations

import dataclasses

from vnstitch.controller.reconciler import Reconciler
from vnstitch.controller.service import Controller
from vnstitch.domain.registry import parse_documents
from vnstitch.domain.stitch import Stitch
from vnstitch.drivers.sim import SimDriver
from vnstitch.planning.desired import ROTATE_KEYS_ANNOTATION
from vnstitch.planning.observed import Observed, ObservedStitch
from vnstitch.planning.reconcile import Desired, DesiredStitch, compute_plan
from vnstitch.store.memory import MemoryStore
from tests.unit.test_desired import BLUE, RED

VNETS = {"acme/blue": BLUE, "acme/red": RED}
WORLD = """
kind: Node
metadata: {name: n1}
---
kind: Node
metadata: {name: n3}
---
kind: Link
metadata: {name: n1--n3}
spec: {endpoints: [n1, n3], capacity: 1Gbps, latency: 1ms}
---
kind: VirtualNetwork
metadata: {name: blue, tenant: acme}
spec: {vnid: 101, cidr: 10.1.0.0/24, members: [{name: b1, node: n1, address: 10.1.0.11}], policy: {allowStitchTo: [red]}}
---
kind: VirtualNetwork
metadata: {name: red, tenant: acme}
spec: {vnid: 102, cidr: 10.2.0.0/24, members: [{name: r1, node: n3, address: 10.2.0.11}], policy: {allowStitchTo: [blue]}}
---
kind: Stitch
metadata: {name: s, tenant: acme}
spec: {type: direct, from: {network: blue, member: b1}, to: {network: red, member: r1}, keyRotation: 1h}
"""


def _stitch(annotations: dict | None = None, **spec) -> Stitch:
    return Stitch.model_validate({"kind": "Stitch", "metadata": {"name": "s", "tenant": "acme",
                                                                 "annotations": annotations or {}},
                                  "spec": {"type": "direct", "from": {"network": "blue", "member": "b1"},
                                           "to": {"network": "red", "member": "r1"}, **spec},
                                  "status": {"path": ["n1", "n3"]}})


def test_the_request_and_the_period_reach_the_op():
    plain = Reconciler._stitch_op("acme/s", "acme", _stitch(), VNETS)
    assert plain.keys_after == 0.0 and plain.key_rotation_s is None
    asked = Reconciler._stitch_op("acme/s", "acme", _stitch({ROTATE_KEYS_ANNOTATION: "1234.5"}, keyRotation="24h"),
                                  VNETS)
    assert asked.keys_after == 1234.5 and asked.key_rotation_s == 86400.0
    assert asked != plain, "a new request is a different op: the driver re-applies it"
    from vnstitch.planning.desired import stitch_op
    assert stitch_op("acme/s", "acme", _stitch(), ("n1", "n3"), VNETS, 0.0, keys_after=99.0).keys_after == 99.0


def _plan(op, keys_at: float | None, now: float | None, healthy: bool = True):
    desired = Desired(stitches={op.stitch: DesiredStitch(op, "ACTIVE")})
    have = ObservedStitch(op.stitch, op.type, op.path, op.rate_bps, True, healthy, keys_at=keys_at,
                          problem="" if healthy else "wireguard-go for vw… is not running")
    return compute_plan(desired, Observed(stitches={op.stitch: have}), now).ops


def test_the_plan_rotates_a_healthy_stitch_whose_keys_are_due():
    op = Reconciler._stitch_op("acme/s", "acme", _stitch({ROTATE_KEYS_ANNOTATION: "500"}, keyRotation="1h"), VNETS)
    (rotate,) = _plan(op, keys_at=400.0, now=1000.0)
    assert rotate.reason == "rotate keys: requested after they were made" and rotate.keys_after == 500.0
    assert _plan(op, keys_at=600.0, now=1000.0) == [], "newer than the request and within the hour"
    (due,) = _plan(op, keys_at=600.0, now=600.0 + 3601)
    assert due.reason == "rotate keys: made 3601 s ago, period 3600 s" and due.keys_after == 601.0
    assert _plan(op, keys_at=None, now=1e9) == [], "no keys reported (unencrypted, or a driver without keys)"
    (repair,) = _plan(op, keys_at=600.0, now=600.0 + 3601, healthy=False)
    assert repair.reason.startswith("repair:") and repair.keys_after == 601.0, "the repair rotates on the way"
    assert _plan(dataclasses.replace(op, key_rotation_s=None), keys_at=600.0, now=1e9) == []


def test_the_simulator_rotates_once_per_request_and_the_status_stays_active():
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    controller = Controller(MemoryStore(), clock=clock)
    controller.apply(parse_documents(WORLD))
    driver = SimDriver(clock=clock)
    reconciler = Reconciler(controller, driver)
    reconciler.reconcile_once(now[0])
    stitch = controller.get("Stitch", "s", "acme")
    assert stitch.status.state.value == "ACTIVE" and stitch.status.keys_rotated_at == 1000.0

    now[0] = 2000.0
    from vnstitch.controller.services import LocalServices
    requested = LocalServices(controller, driver=driver, clock=clock).rotate_keys("s", "acme")
    assert requested == 2000.0
    now[0] = 2001.0
    result = reconciler.reconcile_once(now[0])
    assert [op.reason for op, _ in result.applied] == ["rotate keys: requested after they were made"]
    assert driver.stitches["acme/s"]["key_rotations"] == 1 and driver.stitches["acme/s"]["keys_at"] == 2001.0
    stitch = controller.get("Stitch", "s", "acme")
    assert stitch.status.keys_rotated_at == 2001.0 and stitch.status.state.value == "ACTIVE"
    assert [t.to_state.value for t in stitch.status.history] == ["PENDING", "ESTABLISHING", "ACTIVE"]
    assert not reconciler.reconcile_once(2002.0).applied

    now[0] = 2001.0 + 3601  # keyRotation: 1h, and the keys are older than that
    result = reconciler.reconcile_once(now[0])
    assert [op.reason for op, _ in result.applied] == ["rotate keys: made 3601 s ago, period 3600 s"]
    assert driver.stitches["acme/s"]["key_rotations"] == 2
    assert not reconciler.reconcile_once(now[0] + 1).applied


def test_the_two_tunnel_slots_have_their_own_names_and_ports():
    """A rotation builds the other slot's tunnel beside the current one: its devices (UAPI sockets are
    global) and UDP ports must be unique among all stitches' slots, names within IFNAMSIZ, and neither
    slot's name inside the other's (pid checks look for it in wireguard-go's command line)."""
    from vnstitch.drivers.linux.layout import ROTATABLE_STITCHES, StitchNames
    names = [StitchNames("0123abcd", 0, slot) for slot in (0, 1)]
    assert StitchNames.of({"hash": "0123abcd", "index": 0}) == names[0], "records before slots: slot 0"
    assert StitchNames.of({"hash": "0123abcd", "index": 0, "slot": 1}) == names[1] == names[0].other_slot
    ifnames = [n.wg_if(side) for n in names for side in "ab"]
    assert len(set(ifnames)) == 4 and max(map(len, ifnames)) <= 15
    assert not any(x in y for x in ifnames for y in ifnames if x != y)
    ports = [StitchNames("h", index, slot).port(side)
             for index in range(ROTATABLE_STITCHES) for slot in (0, 1) for side in "ab"]
    assert len(set(ports)) == len(ports) and max(ports) < 32768, "unique, below the ephemeral range"
    assert names[1].port("b") - names[1].port("a") == 1, "adjacent: one `ip rule dport A-B` pins a slot"
