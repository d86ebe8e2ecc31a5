"""The reconciler converges from any crash point: no duplicate tunnel, no leaked or double reservation."""

import pytest

from vnstitch.controller.reconciler import Reconciler
from vnstitch.controller.service import Controller
from vnstitch.domain.ledger import LEDGER_KIND, held_by
from vnstitch.domain.stitch import State
from vnstitch.domain.substrate import link_name
from vnstitch.drivers.sim import SimDriver
from vnstitch.planning.ops import RemoveStitch
from vnstitch.store.sqlite import SQLiteStore
from tests.helpers import stitch, vnet

BLUE = vnet("blue", 1001, "10.1.0.0/24", [("blue-1", "NYCMng", "10.1.0.11")])
RED = vnet("red", 1002, "10.2.0.0/24", [("red-1", "LOSAng", "10.2.0.11")])


class Crash(Exception):
    """Stands for the process dying at a failpoint."""


def make(store, clock, abilene, driver=None, failpoint=None):
    controller = Controller(store, clock=clock)
    driver = driver or SimDriver(topology=abilene.links)
    return controller, Reconciler(controller, driver, failpoint=failpoint)


def converged(controller, driver):
    """The data plane carries exactly the live stitches at their reservations; the ledger holds nothing else."""
    controller.refresh()
    live = {}
    for r in controller.cache.list("Stitch"):
        if r.value["status"]["state"] == "TERMINATED":
            continue  # finished, kept for inspection
        assert r.value["status"]["state"] != "TERMINATING", r.name
        live[f"{r.namespace}/{r.name}"] = r.value["status"]
    assert set(driver.stitches) == set(live)
    for key, status in live.items():
        assert status["state"] == "ACTIVE", (key, status["state"])
        assert driver.stitches[key]["path"] == status["path"]
        assert driver.stitches[key]["rate_bps"] == status["reservedBandwidth"]
    totals = {(r.name, d): r.value[d] for r in controller.cache.list(LEDGER_KIND) for d in ("forward", "reverse") if r.value[d]}
    expected: dict = {}
    for r in controller.cache.list("Stitch"):
        for (u, v), bps in held_by(r.value).items():
            link = controller.cache.get("Link", "", link_name(u, v))
            key = (link.name, "forward" if (u, v) == tuple(link.value["spec"]["endpoints"]) else "reverse")
            expected[key] = expected.get(key, 0) + bps
    assert totals == expected


def test_lifecycle_establish_adjust_terminate(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "2Gbps"),
                      stitch("d", "blue/blue-1", "red/red-1", type="direct", bandwidth=0)])
    result = rec.reconcile_once(clock.now)
    assert [type(op).__name__ for op in result.plan.ops] == ["EnsureNetwork", "EnsureNetwork", "EnsureStitch", "EnsureStitch"]
    s = controller.get("stitch", "s", "acme")
    assert [h.to_state.value for h in s.status.history] == ["PENDING", "ESTABLISHING", "ACTIVE"]
    assert rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    assert not rec.plan(), "a second pass has nothing to do"

    clock.now += 60
    controller.apply([stitch("s", "blue", "red", "3Gbps")])
    result = rec.reconcile_once(clock.now)
    assert [type(op).__name__ for op in result.plan.ops] == ["SetStitchRate"]
    assert "reservation is 3 Gbps" in result.plan.ops[0].reason
    s = controller.get("stitch", "s", "acme")
    assert [h.to_state.value for h in s.status.history][-2:] == ["ADJUSTING", "ACTIVE"]
    assert rec.driver.stitches["acme/s"]["rate_bps"] == 3e9

    controller.delete("stitches", "s", "acme")
    controller.delete("stitches", "d", "acme")
    result = rec.reconcile_once(clock.now)
    assert all(isinstance(op, RemoveStitch) for op in result.plan.ops)
    assert sorted(result.released) == ["acme/d", "acme/s"]
    finished = controller.list("stitches")   # kept for inspection, holding nothing
    assert sorted(s.name for s in finished) == ["d", "s"]
    assert all(s.status.state.value == "TERMINATED" and s.status.reserved_bandwidth == 0 for s in finished)
    assert finished[0].status.history[-1].reason == "teardown confirmed"
    assert not rec.driver.reach("acme/blue/blue-1", "acme/red/red-1").reachable
    converged(controller, rec.driver)


def test_drift_is_repaired_with_a_reason(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    rec.reconcile_once(clock.now)
    from dataclasses import replace
    kept = rec.desired()[0].stitches["acme/s"].op
    rec.driver.apply(RemoveStitch("acme/s"))                      # someone tore the tunnel down
    rec.driver.apply(replace(kept, stitch="acme/ghost"))          # and left an orphan behind
    plan = rec.plan()
    assert plan.lines()[0].endswith("(drift: tunnel missing)")
    assert plan.lines()[1].endswith("(orphan: no such stitch in the store)")
    rec.reconcile_once(clock.now)
    history = [h.to_state.value for h in controller.get("stitch", "s", "acme").status.history]
    assert history[-2:] == ["DEGRADED", "ACTIVE"]
    converged(controller, rec.driver)


def test_failed_op_marks_failed_and_retries(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    rec.driver.networks["acme/other"] = {"vnid": 1001, "cidr": "10.9.0.0/24", "members": {}}  # VNI clash in the kernel
    result = rec.reconcile_once(clock.now)
    assert result.errors
    assert controller.get("stitch", "s", "acme").status.state.value == "FAILED"
    assert "acme/other" not in rec.driver.networks  # the same pass removed the stray network
    rec.reconcile_once(clock.now)
    converged(controller, rec.driver)


def test_a_settled_stitch_is_revisited_when_its_inputs_change(controller, store, clock, abilene, monkeypatch):
    from dataclasses import replace

    import vnstitch.controller.reconciler as reconciler_module

    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps", maxLatency="40ms")])
    rec.reconcile_once(clock.now)
    assert controller.get("stitch", "s", "acme").status.state.value == "ACTIVE"
    revision = store.revision()
    rec.reconcile_once(clock.now + 5)
    assert store.revision() == revision, "nothing changed: a settled stitch writes nothing"

    def rejudged(stitch, *args):
        """A status rule that would now say DEGRADED, whatever it is shown."""
        return stitch.status.model_copy(update={"state": State.DEGRADED, "message": "re-judged"}), ["re-judged"]
    monkeypatch.setattr(reconciler_module, "next_status", rejudged)
    rec.reconcile_once(clock.now + 6)
    assert store.revision() == revision and controller.get("stitch", "s", "acme").status.state.value == "ACTIVE", \
        "with the same inputs and no op a settled stitch is not judged again"
    monkeypatch.undo()

    original = rec.driver.observe
    seen_as = {}

    def observe():
        seen = original()
        seen.stitches["acme/s"] = replace(seen.stitches["acme/s"], **seen_as)
        return seen
    rec.driver.observe = observe
    seen_as["latency_s"] = 0.055                      # the data plane now measures 55 ms
    rec.reconcile_once(clock.now + 10)
    status = controller.get("stitch", "s", "acme").status
    assert status.state.value == "DEGRADED" and status.message.startswith("latency 55.0 ms above 40.0 ms")
    seen_as.clear()
    rec.reconcile_once(clock.now + 15)
    assert controller.get("stitch", "s", "acme").status.state.value == "ACTIVE"
    rec.reconcile_once(clock.now + 20)
    seen_as["healthy"] = False
    rec.reconcile_once(clock.now + 25)
    status = controller.get("stitch", "s", "acme").status
    assert status.state.value == "DEGRADED" and "tunnel unhealthy" in status.message


def test_a_failed_stitch_recovers_when_a_failing_op_left_the_data_plane_right(controller, store, clock, abilene):
    """An op that raises after doing its work leaves a FAILED stitch whose data plane is right: the next
    quiet pass must move it on, not skip it as settled."""
    from vnstitch.errors import DriverError
    from vnstitch.planning.ops import SetStitchRate

    _, rec = make(store, clock, abilene)
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    rec.reconcile_once(clock.now)
    real_apply = rec.driver.apply

    def apply_then_fail(op):
        changed = real_apply(op)
        if isinstance(op, SetStitchRate):
            raise DriverError("lost the answer after setting the rate", errno=5)
        return changed
    rec.driver.apply = apply_then_fail
    controller.apply([stitch("s", "blue", "red", "2Gbps")])
    rec.reconcile_once(clock.now + 5)
    assert controller.get("stitch", "s", "acme").status.state.value == "FAILED"
    rec.driver.stitches["acme/s"]["rate_bps"] = 1e9            # drift under the FAILED stitch
    revision = store.revision()
    rec.reconcile_once(clock.now + 10)                          # the repair raises again: still FAILED
    assert store.revision() == revision and rec.driver.stitches["acme/s"]["rate_bps"] == 2e9
    rec.driver.apply = real_apply
    rec.reconcile_once(clock.now + 20)                          # nothing to do on the data plane
    assert controller.get("stitch", "s", "acme").status.state.value == "ACTIVE"
    converged(controller, rec.driver)


def test_statuses_land_in_chunks_and_a_stale_one_is_left_for_the_next_pass(controller, store, clock, abilene):
    controller.apply([BLUE, RED] + [stitch(f"s{i}", "blue", "red", "1Mbps") for i in range(70)])
    controller.refresh()
    records = sorted(controller.cache.list("Stitch"), key=lambda r: int(r.name[1:]))
    stale = records[66]                              # in the second chunk of 64
    controller.apply([stitch("s66", "blue", "red", "2Mbps")])  # changed after we read it
    updates = [(r, _with_message(r, "chunked")) for r in records]
    assert controller.write_statuses(updates) == 69
    controller.refresh()
    messages = {r.name: r.value["status"]["message"] for r in controller.cache.list("Stitch")}
    assert messages.pop("s66") != "chunked" and set(messages.values()) == {"chunked"}
    assert stale.name == "s66"


def _with_message(record, message):
    from vnstitch.domain.stitch import Stitch
    return Stitch.model_validate(record.value).status.model_copy(update={"message": message})


SCENARIO_STEPS = 3


def run_scenario(controller, reconciler, clock, step):
    """Step 0: create; 1: resize and add; 2: delete. Each followed by one reconcile pass."""
    if step == 0:
        controller.apply([BLUE, RED, stitch("s", "blue", "red", "2Gbps"),
                          stitch("d", "blue/blue-1", "red/red-1", type="direct", bandwidth="100Mbps")])
    elif step == 1:
        controller.apply([stitch("s", "blue", "red", "4Gbps"), stitch("t", "red", "blue", "1Gbps")])
    else:
        controller.delete("stitches", "d", "acme")
        controller.delete("stitches", "t", "acme")
    clock.now += 5
    reconciler.reconcile_once(clock.now)


CRASHES = [(p, n) for p in ("after_observe", "before_status") for n in (1, 2, 3, 5)]  # one call per pass
CRASHES += [(p, n) for p in ("before_op", "after_op") for n in (1, 2, 3, 5, 8)]  # one call per op
CRASHES += [("before_release", 1), ("before_release", 2)]  # the scenario releases two stitches


@pytest.mark.parametrize("point,crash_at", CRASHES)
def test_crash_at_any_failpoint_then_restart_converges(tmp_path, clock, abilene, point, crash_at):
    path = str(tmp_path / "state.db")
    kernel = SimDriver(topology=abilene.links)  # the data plane survives the controller
    store = SQLiteStore(path)
    Controller(store).apply(list(abilene.nodes) + list(abilene.links))
    calls = {"n": 0}

    def failpoint(name):
        if name == point:
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise Crash(f"killed at {name} #{crash_at}")

    crashed = False
    controller, rec = make(store, clock, abilene, driver=kernel, failpoint=failpoint)
    actions = [lambda c, r, i=i: run_scenario(c, r, clock, i) for i in range(SCENARIO_STEPS)]
    actions += [lambda c, r: r.reconcile_once(clock.now + 5)] * 3  # the restarted controller settles
    for action in actions:
        try:
            action(controller, rec)
        except Crash:
            crashed = True
            store.close()  # the process is gone; a new one opens the same file
            store = SQLiteStore(path)
            controller, rec = make(store, clock, abilene, driver=kernel)
    converged(controller, kernel)
    assert sorted(kernel.stitches) == ["acme/s"] and kernel.stitches["acme/s"]["rate_bps"] == 4e9
    assert crashed, "the failpoint was never reached: the test would prove nothing"
    store.close()


def test_a_pass_paces_itself_between_items(controller, store, clock, abilene):
    """The API server hands the reconciler a pace() that sleeps while requests are in flight; a pass calls it
    between ops and between stitches, so a pass over thousands of stitches yields to requests. Here pace()
    stands for a waiting request: it looks at the data plane and the store whenever the pass lets it in."""
    _, rec = make(store, clock, abilene)
    seen = []

    def request():
        controller.refresh()
        active = sum(r.value["status"]["state"] == "ACTIVE" for r in controller.cache.list("Stitch"))
        seen.append((len(rec.driver.networks), len(rec.driver.stitches), active))
    rec.pace = request
    controller.apply([BLUE, RED] + [stitch(f"s{i}", "blue", "red", "1Mbps") for i in range(130)])
    rec.reconcile_once(clock.now)
    # Let in before every op: a request sees each network and each stitch arrive one at a time …
    data_plane = sorted({(networks, stitches) for networks, stitches, _ in seen})
    assert data_plane == [(0, 0), (1, 0)] + [(2, n) for n in range(131)]
    # … while statuses are judged (every 16 stitches: ⌈130/16⌉ = 9 times with the data plane complete) …
    assert [a for n, s, a in seen if (n, s) == (2, 130)].count(0) >= 9
    # … and between chunks of the status write: it sees some stitches ACTIVE, not yet all.
    assert any(0 < active < 130 for _, _, active in seen), seen[-12:]
    converged(controller, rec.driver)


def test_the_api_pace_sleeps_only_while_requests_wait():
    import time
    from types import SimpleNamespace

    import vnstitch.api.app as app_module

    pause_s = 0.2
    queued = [0]
    context = SimpleNamespace(metrics=SimpleNamespace(in_flight=0), creates=SimpleNamespace(waiting=lambda: queued[0]))
    pace = app_module._yield_to_requests(context, pause_s=pause_s)

    def paced_s() -> float:
        started = time.monotonic()
        pace()
        return time.monotonic() - started

    assert paced_s() < pause_s, "nobody waits: the pass goes on at once"
    context.metrics.in_flight = 1
    assert paced_s() >= pause_s, "a request in flight gets the interpreter first"
    context.metrics.in_flight, queued[0] = 0, 3
    assert paced_s() >= pause_s, "so do creates waiting for the committer"


def test_a_finished_stitch_is_kept_for_inspection_then_purged(controller, store, clock, abilene):
    _, rec = make(store, clock, abilene)
    rec.terminated_retention_s = 3600
    controller.apply([BLUE, RED, stitch("s", "blue", "red", "1Gbps")])
    rec.reconcile_once(clock.now)
    controller.delete("stitches", "s", "acme")
    rec.reconcile_once(clock.now + 1)
    kept = controller.get("stitch", "s", "acme")
    assert kept.status.state.value == "TERMINATED" and kept.status.path, "what it was stays readable"
    assert not rec.plan(), "a finished stitch asks nothing of the data plane"
    controller.apply([stitch("s", "blue", "red", "2Gbps")])  # the name can be used again at once
    assert controller.get("stitch", "s", "acme").status.state.value == "PENDING"
    rec.reconcile_once(clock.now + 2)
    controller.delete("stitches", "s", "acme")
    rec.reconcile_once(clock.now + 3)
    assert rec.reconcile_once(clock.now + 3 + 3599).purged == []
    assert rec.reconcile_once(clock.now + 3 + 3600).purged == ["acme/s"]
    assert controller.list("stitches") == []
    converged(controller, rec.driver)
