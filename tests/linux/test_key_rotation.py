"""WireGuard key rotation on the real kernel: new keys on both ends while a continuous ping (100 echoes a
second) loses nothing, asked for through the driver, through the controller (`rotate_keys`) and by the
spec's period; ten rotations in a row; and a crash mid-rotation (the new wireguard-go SIGKILLed, the driver
SIGKILLed before, at and after its switch) that the next apply converges from, without loss and without
leftovers of the other tunnel slot."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from tests.linux.conftest import LAB_FILE

B1_R1 = """
apiVersion: vnstitch.io/v1
kind: Stitch
metadata: {name: b1-r1, tenant: acme}
spec:
  type: direct
  from: {network: blue, member: blue-1}
  to: {network: red, member: red-1}
"""


def _ping(lab, seconds: float = 4.0):
    """A continuous ping blue-1 → red-1 across the stitch, 10 echoes a second (as `ping -i 0.1`), and 100 a
    second for the test to be sharper: the stricter of the two is asserted."""
    count = int(seconds * 100)
    return lab.spawn("blue-1", "ping", "-n", "-q", "-i", "0.01", "-c", str(count), "-W", "1", "10.2.0.21")


MAX_LOST = 0  # echoes at 100/s: a rotation is make-before-break (docs/DATAPLANE.md, "Key rotation")


def _lost(ping) -> str:
    import re
    out, err = ping.communicate(timeout=120)
    sent, got = (int(n) for n in re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    assert sent - got <= MAX_LOST, out + err
    return out


def _wg_processes() -> dict[str, list[int]]:
    """wireguard-go interface name → pids of the live processes serving it (from /proc)."""
    out: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = [a.decode() for a in handle.read().split(b"\0") if a]
            with open(f"/proc/{entry}/stat", "rb") as handle:
                if handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "wireguard-go":
            out.setdefault(argv[-1], []).append(int(entry))
    return out


def _assert_one_slot(lab, key: str) -> None:
    """The stitch runs on its current slot only: its two wireguard-go (the recorded pids) and devices, and
    nothing of the other slot (device, process, UAPI socket, key file, rule, nft map entry)."""
    from vnstitch.drivers.linux import nft
    from vnstitch.drivers.linux.layout import StitchNames
    from vnstitch.drivers.linux.wireguard import socket_path
    lab.driver.state = lab.driver._load()
    record = lab.driver.state["stitches"][key]
    assert "next" not in record and "retiring" not in record, record
    names = StitchNames.of(record)
    other = names.other_slot
    running = _wg_processes()
    for side, node in (("a", record["op"]["a"]["node"]), ("b", record["op"]["b"]["node"])):
        ns = lab.driver.lab.node_ns(node)
        links = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True).stdout
        rules = subprocess.run(["ip", "-n", ns, "rule", "show"], capture_output=True, text=True).stdout
        assert f" {names.wg_if(side)}:" in links
        assert running.get(names.wg_if(side)) == [record["pids"][side]], running
        for leftover in (f" {other.wg_if(side)}:" in links, other.wg_if(side) in running,
                         other.wg_if(side) in rules, os.path.exists(socket_path(other.wg_if(side))),
                         os.path.exists(os.path.join(lab.directory, "keys", f"{other.wg_if(side)}.key")),
                         other.wg_if(side) in nft.read_table(ns)["map"]):
            assert not leftover, (other.wg_if(side), links, rules, running)


def _keys(lab, key: str) -> dict:
    """What the kernel holds, read back over UAPI: each end's public key and the key it knows its peer by;
    and the 0600 key files (content, mode)."""
    from vnstitch.drivers.linux.layout import StitchNames
    record = lab.driver.state["stitches"][key]
    names = StitchNames.of(record)
    status = lab.driver.wireguard_status(key)
    files = {}
    for side in ("a", "b"):
        path = os.path.join(lab.directory, "keys", f"{names.wg_if(side)}.key")
        files[side] = (open(path).read(), stat.S_IMODE(os.stat(path).st_mode))
    return {"public": {side: status[side]["public_key"] for side in ("a", "b")},
            "peer": {side: status[side]["peer"]["public_key"] for side in ("a", "b")}, "files": files}


def _assert_rotated(before: dict, after: dict) -> None:
    import base64
    for side, other in (("a", "b"), ("b", "a")):
        assert after["public"][side] != before["public"][side], f"end {side} kept its key"
        # each end knows the other by its new key (UAPI peers are hex)
        assert after["peer"][side] == base64.b64decode(after["public"][other]).hex()
        assert after["files"][side][0] != before["files"][side][0] and after["files"][side][1] == 0o600


def test_rotation_through_the_driver_loses_no_ping(lab):
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    lab.driver.apply(op)
    assert lab.pings("blue-1", "10.2.0.21")
    pids = dict(lab.driver.state["stitches"][op.stitch]["pids"])
    first = _keys(lab, op.stitch)
    made = lab.driver.observe().stitches[op.stitch].keys_at
    assert made is not None and abs(made - time.time()) < 60

    ping = _ping(lab)
    time.sleep(0.5)
    asked = time.time()
    started = time.monotonic()
    assert lab.driver.apply(dataclasses.replace(op, keys_after=asked)) is True
    took = time.monotonic() - started
    second = _keys(lab, op.stitch)
    time.sleep(0.5)
    assert lab.driver.apply(dataclasses.replace(op, keys_after=time.time())) is True  # and once more
    third = _keys(lab, op.stitch)
    out = _lost(ping)

    _assert_rotated(first, second)
    _assert_rotated(second, third)
    # make-before-break: each rotation brought a new tunnel (new wireguard-go) up beside the old one
    assert lab.driver.state["stitches"][op.stitch]["pids"] != pids
    _assert_one_slot(lab, op.stitch)
    seen = lab.driver.observe().stitches[op.stitch]
    assert seen.healthy, seen.problem
    assert seen.keys_at >= asked
    # the same request again changes nothing: the keys are newer than it asks
    assert lab.driver.apply(dataclasses.replace(op, keys_after=asked)) is False
    # a new driver over the same state (a restarted controller) adopts the rotated tunnel as it is
    lab.driver.close()
    lab.driver = lab.create_driver()
    assert lab.driver.apply(dataclasses.replace(op, keys_after=asked)) is False
    assert _keys(lab, op.stitch) == third
    print(f"rotation took {took * 1e3:.1f} ms; {out.strip().splitlines()[-2]}")


def test_rotation_asked_through_the_controller_loses_no_ping(controlled):
    lab = controlled.lab
    services = controlled.services
    controlled.apply(B1_R1)
    services.reconcile_once()
    assert controlled.stitch("b1-r1").status.state.value == "ACTIVE"
    assert lab.pings("blue-1", "10.2.0.21")
    driver = services.reconciler.driver
    lab.driver = driver  # _keys reads the controller's driver state
    first = _keys(lab, "acme/b1-r1")
    made = controlled.stitch("b1-r1").status.keys_rotated_at
    assert made is not None

    ping = _ping(lab)
    time.sleep(0.5)
    requested = services.rotate_keys("b1-r1", "acme")
    assert requested >= made
    report = services.reconcile_once()
    assert [op.reason for op in report.plan.ops] == ["rotate keys: requested after they were made"], report
    assert not report.failures
    out = _lost(ping)

    _assert_rotated(first, _keys(lab, "acme/b1-r1"))
    stitch = controlled.stitch("b1-r1")
    assert stitch.status.state.value == "ACTIVE"
    assert stitch.status.keys_rotated_at >= requested
    assert [t.to_state.value for t in stitch.status.history] == ["PENDING", "ESTABLISHING", "ACTIVE"], \
        "a rotation is not a repair: the stitch never left ACTIVE"
    assert driver.observe().stitches["acme/b1-r1"].healthy
    assert not services.reconcile_once().plan.ops, "one request, one rotation"
    print(out.strip().splitlines()[-2])


def test_rotation_by_the_spec_period_with_an_injected_clock(lab, tmp_path):
    """keyRotation: 1h. The controller and the driver read one fake clock; nothing rotates before the hour
    is up, the pass after it rotates (a ping running across it loses nothing), and the next does not."""
    from vnstitch.controller.service import Controller
    from vnstitch.controller.services import LocalServices
    from vnstitch.domain.registry import parse_documents
    from vnstitch.drivers.linux.driver import LinuxDriver
    from vnstitch.store import open_store

    now = [1.9e9]
    clock = lambda: now[0]  # noqa: E731
    controller = Controller(open_store(f"sqlite://{tmp_path}/state.db"), clock=clock)
    driver = LinuxDriver(lab.directory, wall_clock=clock)
    services = LocalServices(controller, driver=driver, clock=clock)
    try:
        services.apply(parse_documents(LAB_FILE.read_text()))
        services.apply(parse_documents(B1_R1 + "  keyRotation: 1h\n"))
        services.reconcile_once()
        stitch = services.get("Stitch", "b1-r1", "acme")
        assert stitch.status.state.value == "ACTIVE" and stitch.status.keys_rotated_at == now[0]
        assert stitch.model_dump(by_alias=True, mode="json")["spec"]["keyRotation"] == "1h"
        lab.driver = driver
        first = _keys(lab, "acme/b1-r1")

        now[0] += 3599
        assert not services.reconcile_once().plan.ops, "not due yet"
        ping = _ping(lab)
        time.sleep(0.5)
        now[0] += 2
        report = services.reconcile_once()
        (op,) = report.plan.ops
        assert op.reason.startswith("rotate keys: made 3601 s ago, period 3600 s"), op
        out = _lost(ping)
        _assert_rotated(first, _keys(lab, "acme/b1-r1"))
        stitch = services.get("Stitch", "b1-r1", "acme")
        assert stitch.status.keys_rotated_at == now[0] and stitch.status.state.value == "ACTIVE"
        assert not services.reconcile_once().plan.ops, "the new keys are not due for another hour"
        print(out.strip().splitlines()[-2])
    finally:
        services.close()
        driver.close()


def _direct_stitch(lab):
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"})
    lab.driver.apply(op)
    assert lab.pings("blue-1", "10.2.0.21")
    return op


ROTATIONS = 10


def test_ten_rotations_in_a_row_lose_no_ping(lab):
    op = _direct_stitch(lab)
    ping = _ping(lab, seconds=ROTATIONS * 1.0 + 3)
    time.sleep(0.5)
    took = []
    for _ in range(ROTATIONS):
        before = _keys(lab, op.stitch)
        started = time.monotonic()
        assert lab.driver.apply(dataclasses.replace(op, keys_after=time.time())) is True
        took.append(time.monotonic() - started)
        _assert_rotated(before, _keys(lab, op.stitch))
        time.sleep(0.1)
    assert max(took) < 1.0, took   # the ping must outlast the rotations
    out = _lost(ping)
    _assert_one_slot(lab, op.stitch)
    seen = lab.driver.observe().stitches[op.stitch]
    assert seen.healthy, seen.problem
    print(f"{ROTATIONS} rotations, {min(took) * 1e3:.0f}–{max(took) * 1e3:.0f} ms each; "
          f"{out.strip().splitlines()[-2]}")


def test_new_wireguard_go_killed_mid_rotation_keeps_the_old_tunnel(lab, monkeypatch):
    """SIGKILL of a new wireguard-go while the new tunnel handshakes: the rotation fails and removes the new
    slot, the old tunnel carries on (nothing lost), and the next apply rotates."""
    from vnstitch.drivers.linux import stitch as stitch_mod, wireguard
    from vnstitch.errors import DriverError
    op = _direct_stitch(lab)
    first = _keys(lab, op.stitch)
    made = lab.driver.observe().stitches[op.stitch].keys_at
    real = stitch_mod._wait_handshake
    killed = []

    def kill_then_wait(op_, waits, *args, **kwargs):
        if not killed:
            new_a = waits[0][0]
            killed.append(wireguard.socket_pid(new_a))
            os.kill(killed[0], signal.SIGKILL)
        return real(op_, waits, *args, **kwargs)

    monkeypatch.setattr(stitch_mod, "_wait_handshake", kill_then_wait)
    ping = _ping(lab, seconds=4.0)
    time.sleep(0.5)
    with pytest.raises(DriverError):
        lab.driver.apply(dataclasses.replace(op, keys_after=time.time()))
    assert killed and killed[0]
    _assert_one_slot(lab, op.stitch)
    assert _keys(lab, op.stitch) == first, "the old tunnel and keys stay"
    assert lab.driver.observe().stitches[op.stitch].keys_at == made
    monkeypatch.setattr(stitch_mod, "_wait_handshake", real)
    time.sleep(0.5)
    assert lab.driver.apply(dataclasses.replace(op, keys_after=time.time())) is True
    out = _lost(ping)
    _assert_rotated(first, _keys(lab, op.stitch))
    _assert_one_slot(lab, op.stitch)
    assert lab.driver.observe().stitches[op.stitch].healthy
    print(out.strip().splitlines()[-2])


CRASH = """
import json, os, signal, sys
from vnstitch.drivers.linux import create_driver, stitch
from vnstitch.drivers.linux.driver import op_from_dict
directory, point, op = sys.argv[1], sys.argv[2], op_from_dict(json.loads(sys.argv[3]))
real = getattr(stitch, point)
def crash(*args, **kwargs):
    if point != "_drain":
        real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
setattr(stitch, point, crash)
create_driver(directory).apply(op)
"""


@pytest.mark.parametrize("point", ["_wait_handshake", "_switch", "_drain"],
                         ids=["before-switch", "switched-unsaved", "switched-saved"])
def test_driver_killed_mid_rotation_converges_on_the_next_apply(lab, point):
    """The driver SIGKILLed (a controller crash) once the new tunnel has handshaken, right after the switch
    (not yet saved), and after it was saved: a new driver's apply rolls the new slot back (and rotates
    again) or retires the old one; nothing is lost meanwhile, and no other slot's pieces are left."""
    from vnstitch.drivers.linux.driver import op_to_dict
    op = _direct_stitch(lab)
    first = _keys(lab, op.stitch)
    ping = _ping(lab, seconds=5.0)
    time.sleep(0.5)
    asked = dataclasses.replace(op, keys_after=time.time())
    crashed = subprocess.run([sys.executable, "-c", CRASH, lab.directory, point, json.dumps(op_to_dict(asked))],
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    lab.driver.close()
    lab.driver = lab.create_driver()   # the restarted controller
    record = lab.driver.state["stitches"][op.stitch]
    assert ("retiring" in record) == (point == "_drain") and ("next" in record) == (point != "_drain"), record
    time.sleep(0.3)
    assert lab.driver.apply(asked) is True
    assert lab.driver.apply(asked) is False, "converged"
    out = _lost(ping)
    _assert_rotated(first, _keys(lab, op.stitch))
    _assert_one_slot(lab, op.stitch)
    seen = lab.driver.observe().stitches[op.stitch]
    assert seen.healthy and seen.keys_at >= asked.keys_after, seen
    print(f"{point}: {out.strip().splitlines()[-2]}")


def test_rotation_keeps_services_qos_and_the_reservation(lab):
    """A stitch with services, QoS classes and a rate rotates twice (slot 0 → 1 → 0): the new tunnel gets
    the classes before it carries anything, the chains the services, the HTB class counts both slots'
    ports, and observe() reports all of it as asked, with no echo lost."""
    from vnstitch.drivers.linux.stitch import shaped_egresses
    op = lab.stitch_op("b1-r1", "direct", {"network": "blue", "member": "blue-1"},
                       {"network": "red", "member": "red-1"}, bandwidth="20Mbps",
                       services=[{"protocol": "icmp"}, {"protocol": "tcp", "port": 8443}],
                       qos=[{"name": "gold", "rank": 1, "share": 0.7, "dscp": 46},
                            {"name": "bronze", "rank": 2, "share": 0.3}])
    lab.driver.apply(op)
    assert lab.pings("blue-1", "10.2.0.21")
    ping = _ping(lab, seconds=4.0)
    time.sleep(0.5)
    for slot in (1, 0):
        assert lab.driver.apply(dataclasses.replace(op, keys_after=time.time())) is True
        assert lab.driver.state["stitches"][op.stitch]["slot"] == slot
        seen = lab.driver.observe().stitches[op.stitch]
        assert seen.healthy, seen.problem
        assert seen.services == op.services and seen.qos == op.qos and abs(seen.rate_bps - op.rate_bps) < 1e5, seen
        _assert_one_slot(lab, op.stitch)
        time.sleep(0.3)
    out = _lost(ping)
    ns = lab.driver.lab.node_ns(op.a.node)
    egress = next(e for n, e, _ in shaped_egresses(lab.driver.lab, op.path, op.symmetric) if n == op.a.node)
    filters = subprocess.run(["tc", "-n", ns, "filter", "show", "dev", egress], capture_output=True, text=True).stdout
    assert filters.count("flowid") == 4, filters  # u32 filters for both slots' two ports
    print(out.strip().splitlines()[-2])
