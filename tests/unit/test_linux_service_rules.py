"""The Linux driver's pure pieces for services and QoS: the nft rules a stitch end gets, how a listed
chain reads back (its services, counters, drift), the HTB classes and u32 keys of QoS rules and what a
device's tree reads back as, and the state file's op round trip (older records included)."""

from __future__ import annotations

import copy
import json

from tests.tiers import import_or_require

import_or_require("pyroute2", "pyroute2", "pip install -e '.[linux]'")

from vnstitch.drivers.linux import nft, routing  # noqa: E402
from vnstitch.drivers.linux.driver import _agreed, _lets_icmp_through, _shape, op_from_dict, op_to_dict  # noqa: E402
from vnstitch.planning.ops import EnsureStitch, QosRule, ServiceRule, StitchEnd  # noqa: E402

GW, TUN, LOCAL, REMOTE = "vgxa", "vwxa", "10.1.0.11/32", "10.2.0.0/24"
TCP_8443, ICMP = ServiceRule("tcp", 8443), ServiceRule("icmp")

# `nft -j list table inet vnstitch` (nft 1.0.6) of end a's chain with services [tcp 8443, icmp], as
# ensure_stitch wrote it: `tcp dport 8443` lists as a tcp payload match, `meta l4proto icmp` as meta.
_IIF = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": GW}}
_OIF = {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": TUN}}
_SRC = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.1.0.11"}}
_DST = {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                  "right": {"prefix": {"addr": "10.2.0.0", "len": 24}}}}
LISTED = json.loads(json.dumps([
    {"handle": 12, "expr": [_IIF, _OIF, _SRC, _DST,
                            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                       "right": 8443}},
                            {"counter": {"packets": 3, "bytes": 180}}, {"accept": None}]},
    {"handle": 13, "expr": [_IIF, _OIF, _SRC, _DST,
                            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "icmp"}},
                            {"counter": {"packets": 1, "bytes": 84}}, {"accept": None}]},
    {"handle": 14, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": TUN}},
        {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": GW}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"prefix": {"addr": "10.2.0.0", "len": 24}}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.1.0.11"}},
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"counter": {"packets": 2, "bytes": 120}}, {"accept": None}]},
    {"handle": 15, "expr": [{"counter": {"packets": 7, "bytes": 500}}, {"drop": None}]},
]))


def test_without_services_both_ways_cross_and_the_rest_is_counted_and_dropped():
    assert nft.stitch_rules(GW, TUN, LOCAL, REMOTE) == [
        f'iifname "{GW}" oifname "{TUN}" ip saddr {LOCAL} ip daddr {REMOTE} counter accept',
        f'iifname "{TUN}" oifname "{GW}" ip saddr {REMOTE} ip daddr {LOCAL} counter accept',
        "counter drop",
    ]


def test_end_a_sends_the_services_out_and_takes_back_only_replies():
    assert nft.stitch_rules(GW, TUN, LOCAL, REMOTE, (TCP_8443, ICMP)) == [
        f'iifname "{GW}" oifname "{TUN}" ip saddr {LOCAL} ip daddr {REMOTE} tcp dport 8443 counter accept',
        f'iifname "{GW}" oifname "{TUN}" ip saddr {LOCAL} ip daddr {REMOTE} meta l4proto icmp counter accept',
        f'iifname "{TUN}" oifname "{GW}" ip saddr {REMOTE} ip daddr {LOCAL} ct state established,related '
        "counter accept",
        "counter drop",
    ]


def test_end_b_takes_the_services_in_and_sends_back_only_replies():
    rules = nft.stitch_rules("vgxb", "vwxb", REMOTE, LOCAL, (ServiceRule("udp"),), inbound=True)
    assert rules == [
        f'iifname "vgxb" oifname "vwxb" ip saddr {REMOTE} ip daddr {LOCAL} ct state established,related '
        "counter accept",
        f'iifname "vwxb" oifname "vgxb" ip saddr {LOCAL} ip daddr {REMOTE} meta l4proto udp counter accept',
        "counter drop",
    ]


def test_a_listed_chain_reads_back_as_its_services_and_counters():
    table = {"chains": {"st_x": LISTED}, "map": {GW: "st_x", TUN: "st_x"}}
    rules, problem = nft.stitch_chain_problem(table, "st_x", GW, TUN, LOCAL, REMOTE, (TCP_8443, ICMP))
    assert problem is None and rules is LISTED
    assert nft.chain_services(LISTED, GW, TUN, LOCAL, REMOTE) == (TCP_8443, ICMP)
    assert nft.chain_totals(LISTED, GW) == (180 + 84, 120, 7), "bytes out, bytes back, packets denied"
    assert [rule["handle"] for rule in nft.direction_rules(LISTED, GW, outward=True)] == [12, 13]
    assert [rule["handle"] for rule in nft.direction_rules(LISTED, GW, outward=False)] == [14]
    # the same chain is not what a stitch without services (or with other ones) wants
    assert nft.stitch_chain_problem(table, "st_x", GW, TUN, LOCAL, REMOTE)[1] is not None
    assert nft.stitch_chain_problem(table, "st_x", GW, TUN, LOCAL, REMOTE, (TCP_8443,))[1] is not None


def test_an_edited_chain_reports_the_services_it_now_enforces():
    edited = copy.deepcopy(LISTED)
    edited[0]["expr"][4]["match"]["right"] = 9000
    assert nft.chain_services(edited, GW, TUN, LOCAL, REMOTE) == (ServiceRule("tcp", 9000), ICMP)
    table = {"chains": {"st_x": edited}, "map": {GW: "st_x", TUN: "st_x"}}
    assert "does not hold" in nft.stitch_chain_problem(table, "st_x", GW, TUN, LOCAL, REMOTE, (TCP_8443, ICMP))[1]


def test_a_flushed_or_mangled_chain_enforces_no_service_set():
    assert nft.chain_services([], GW, TUN, LOCAL, REMOTE) is None
    assert nft.chain_services(None, GW, TUN, LOCAL, REMOTE) is None
    without_drop = LISTED[:-1]
    assert nft.chain_services(without_drop, GW, TUN, LOCAL, REMOTE) is None
    without_replies = LISTED[:2] + LISTED[3:]
    assert nft.chain_services(without_replies, GW, TUN, LOCAL, REMOTE) is None


def test_a_rule_shape_ignores_the_order_of_its_matches():
    rule = nft.ChainRule("accept", iifname=GW, oifname=TUN, saddr=LOCAL, daddr=REMOTE, l4proto="tcp", dport=8443)
    assert nft._rule_shape(LISTED[0]) == rule.shape
    shuffled = {"expr": list(reversed(LISTED[0]["expr"][:5])) + LISTED[0]["expr"][5:]}
    assert nft._rule_shape(shuffled) == rule.shape
    only_established = copy.deepcopy(LISTED[2])
    only_established["expr"][4]["match"]["right"] = "established"
    assert nft._rule_shape(only_established) != nft._rule_shape(LISTED[2])


GOLD, BRONZE = QosRule("gold", 1, 0.7, 46), QosRule("bronze", 2, 0.3, None, (5202,))


def test_qos_classes_share_the_rate_and_unmatched_traffic_goes_to_the_lowest_rank():
    default, specs = routing.qos_classes((GOLD, BRONZE), 20e6)
    assert default == 0x11, "the lowest-ranked class (the last: the op sorts them by rank)"
    assert [(s.minor, s.prio, s.rate_bps, s.ceil_bps, s.filter_prio) for s in specs] == [
        (0x10, 0, 14e6, 20e6, 1), (0x11, 1, 6e6, 20e6, 2)]
    assert specs[0].filters == (("0x00b80000/0x00fc0000+0",),), "ip tos 0xb8 (DSCP 46 << 2) under mask 0xfc"
    assert specs[1].filters == (("0x00060000/0x00ff0000+8", "0x00001452/0x0000ffff+20"),
                                ("0x00110000/0x00ff0000+8", "0x00001452/0x0000ffff+20")), "tcp and udp dport 5202"
    assert routing.qos_classes((), 20e6) == (0, [])


def _tree(rate=20e6, default=0x11, changes: dict | None = None):
    """What routing.read_qos returns for GOLD and BRONZE at `rate`, with `changes` (minor → class or None)."""
    classes = {0x1: {"rate_bps": rate, "ceil_bps": rate, "prio": 0, "parent": 0xFFFF},
               0x10: {"rate_bps": 0.7 * rate, "ceil_bps": rate, "prio": 0, "parent": 1},
               0x11: {"rate_bps": 0.3 * rate, "ceil_bps": rate, "prio": 1, "parent": 1}}
    classes.update(changes or {})
    return {"default": default, "classes": {k: v for k, v in classes.items() if v is not None},
            "filters": {1: [0x10], 2: [0x11, 0x11]}}


def test_a_device_tree_reads_back_as_the_qos_rules_it_enforces():
    assert routing.qos_in_force((GOLD, BRONZE), 20e6, _tree()) == (GOLD, BRONZE)
    assert routing.qos_in_force((GOLD, BRONZE), 20e6, None) == (), "no HTB root: no classes"
    assert routing.qos_in_force((), 20e6, None) == ()
    assert routing.qos_in_force((GOLD, BRONZE), 20e6, _tree(changes={0x10: None})) == (BRONZE,)
    wrong_rate = routing.qos_in_force((GOLD, BRONZE), 20e6, _tree(changes={
        0x10: {"rate_bps": 5e6, "ceil_bps": 20e6, "prio": 0, "parent": 1}}))
    assert wrong_rate == (QosRule("class-1:10", 1, 0.25), BRONZE)
    no_filter = _tree()
    no_filter["filters"].pop(1)
    assert routing.qos_in_force((GOLD, BRONZE), 20e6, no_filter)[0].name == "class-1:10", "gold matches nothing"
    assert routing.qos_in_force((), 20e6, _tree()) != (), "leftover classes of removed rules show"
    assert routing.qos_in_force((GOLD, BRONZE), 10e6, _tree()) != (GOLD, BRONZE), "the parent holds the old rate"
    assert routing.qos_in_force((GOLD, BRONZE), 20e6, _tree(default=0x10)) != (GOLD, BRONZE)


OP = EnsureStitch("acme/s", "direct", StitchEnd("acme/blue", 1001, "10.1.0.0/24", "n1", "blue-1", "10.1.0.11"),
                  StitchEnd("acme/red", 1002, "10.2.0.0/24", "n3", "red-1", "10.2.0.21"), ("n1", "n3"), 2e9, True,
                  services=(TCP_8443, ICMP), qos=(GOLD, BRONZE))


def test_the_state_file_round_trips_services_and_qos_and_old_records_load():
    stored = json.loads(json.dumps(op_to_dict(OP)))
    assert op_from_dict(stored) == OP
    old = {k: v for k, v in stored.items() if k not in ("services", "qos")}
    loaded = op_from_dict(old)
    assert loaded.services == () and loaded.qos == ()


def test_services_and_qos_change_in_place_and_the_probe_needs_icmp():
    assert _shape(OP) == _shape(EnsureStitch(**{**OP.__dict__, "services": (), "qos": ()}))
    assert _lets_icmp_through(OP) and not _lets_icmp_through(EnsureStitch(**{**OP.__dict__, "services": (TCP_8443,)}))
    assert _lets_icmp_through(EnsureStitch(**{**OP.__dict__, "services": ()}))


def test_the_ends_report_what_they_agree_on_or_what_differs():
    assert _agreed([(TCP_8443,), (TCP_8443,)], (TCP_8443,)) == (TCP_8443,)
    assert _agreed([(TCP_8443,), (ICMP,)], (TCP_8443,)) == (ICMP,)
    assert _agreed([(TCP_8443,), None], (TCP_8443,)) is None
    assert _agreed([], ()) is None
