"""The Services values and helpers: a plan renders the same on both sides; a shared driver takes turns."""

from __future__ import annotations

import threading
import time

from tests.helpers import stitch, vnet
from vnstitch.controller.services import LocalServices, PlanReport, SerializedDriver
from vnstitch.drivers.sim import SimDriver
from vnstitch.planning.ops import RemoveStitch
from vnstitch.planning.reconcile import Plan


BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")])


def test_a_plan_report_reads_as_the_plan_it_came_from(controller, clock, abilene):
    services = LocalServices(controller, driver=SimDriver(topology=abilene.links), clock=clock)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    report = services.plan()
    assert report.render() == services.reconciler.plan().render()
    assert [op.action for op in report.ops] == ["ensure-network", "ensure-network", "ensure-stitch"]
    assert all(op.reason for op in report.ops)
    passed = services.reconcile_once()  # the pass applies what the plan said, and nothing is left
    assert passed.plan == report and passed.failures == ()
    assert services.plan().ops == ()
    mixed = Plan([RemoveStitch("acme/old", reason="orphan: no such stitch in the store")],
                 replans=[("acme/s", "link NYCMng--WASHng is gone")])
    assert PlanReport.of(mixed).render() == mixed.render()
    assert PlanReport.of(Plan()).render() == Plan().render()


def test_a_serialized_driver_never_observes_in_the_middle_of_an_apply():
    class Slow:
        name, capabilities = "slow", frozenset()

        def __init__(self):
            self.applying = False
            self.overlaps = 0

        def apply(self, op):
            self.applying = True
            time.sleep(0.005)
            self.applying = False
            return True

        def observe(self):
            self.overlaps += self.applying

        def close(self):
            pass

    inner = Slow()
    shared = SerializedDriver(inner)
    writer = threading.Thread(target=lambda: [shared.apply(None) for _ in range(40)])
    writer.start()
    while writer.is_alive():
        shared.observe()
    writer.join()
    assert inner.overlaps == 0
    assert shared.name == "slow" and getattr(shared, "set_topology", None) is None  # capabilities show through


def test_the_local_services_and_the_http_client_speak_one_interface(controller):
    from vnstitch.api.client import RemoteController
    from vnstitch.controller.services import Services

    remote = RemoteController("http://127.0.0.1:9")
    try:
        assert isinstance(LocalServices(controller), Services) and isinstance(remote, Services)
    finally:
        remote.close()
