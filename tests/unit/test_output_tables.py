"""`vnstitch get` tables: bandwidths and durations with units, an AGE column, RFC 3339 in -o wide, JSON and
YAML; -o name; a table never shows a bare unix time."""

import json

import yaml

from vnstitch.cli.output import format_duration, render
from vnstitch.domain.registry import parse_resource
from vnstitch.domain.resources import format_timestamp, parse_timestamp

CREATED = 1796157720.0  # 2026-12-01T20:42:00Z
NOW = CREATED + 90


def _link():
    return parse_resource({"kind": "Link", "metadata": {"name": "a--b", "creationTimestamp": CREATED},
                           "spec": {"endpoints": ["a", "b"], "capacity": "9.92Gbps", "latency": "5.4ms"}})


def _stitch():
    return parse_resource({
        "kind": "Stitch", "metadata": {"name": "blue-red", "tenant": "acme", "creationTimestamp": "2026-12-01T20:42:00Z"},
        "spec": {"type": "bandwidth", "from": {"network": "blue"}, "to": {"network": "red"}, "bandwidth": "2Gbps",
                 "maxLatency": "30ms"},
        "status": {"state": "ACTIVE", "reservedBandwidth": 2e9, "path": ["a", "b"],
                   "history": [{"time": CREATED, "from": None, "to": "PENDING", "reason": "accepted"}]}})


def test_rfc3339_both_ways():
    assert format_timestamp(CREATED) == "2026-12-01T20:42:00Z"
    assert format_timestamp(CREATED + 0.25) == "2026-12-01T20:42:00.25Z"
    assert parse_timestamp("2026-12-01T20:42:00Z") == CREATED
    assert parse_timestamp("2026-12-01T21:42:00+01:00") == CREATED
    assert parse_timestamp(CREATED) == CREATED


def test_durations_carry_units():
    assert [format_duration(s) for s in (0.0054, 0.5, 42, 90, 300, 3600, 5400, 93784)] == \
        ["5.4ms", "500ms", "42s", "1m30s", "5m", "1h", "1h30m", "1d2h"]


def test_tables_show_units_and_age():
    links = render("links", [_link()], "table", now=NOW).splitlines()
    assert links[0].split() == ["NAME", "ENDPOINTS", "CAPACITY", "LATENCY", "ZONE", "AGE"]
    assert "9.92 Gbps" in links[1] and "5.4ms" in links[1] and links[1].endswith("1m30s")
    stitches = render("stitches", [_stitch()], "table", now=NOW).splitlines()
    assert "2 Gbps" in stitches[1] and stitches[1].endswith("1m30s")
    assert str(int(CREATED)) not in "\n".join(stitches)


def test_wide_shows_the_creation_time_and_the_requested_bandwidth():
    wide = render("stitches", [_stitch()], "wide", now=NOW).splitlines()
    for column in ("BANDWIDTH", "MAX LATENCY", "CREATED"):
        assert column in wide[0]
    assert "2026-12-01T20:42:00Z" in wide[1] and "30ms" in wide[1]


def test_json_and_yaml_show_rfc3339_and_parse_back():
    for text in (render("stitches", [_stitch()], "json", single=True),
                 render("stitches", [_stitch()], "yaml", single=True)):
        body = json.loads(text) if text.startswith("{") else yaml.safe_load(text)
        assert body["metadata"]["creationTimestamp"] == "2026-12-01T20:42:00Z"
        assert body["status"]["history"][0]["time"] == "2026-12-01T20:42:00Z"


def test_a_document_read_back_parses_to_the_same_time():
    for text in (render("links", [_link()], "json", single=True), render("links", [_link()], "yaml", single=True)):
        body = json.loads(text) if text.startswith("{") else yaml.safe_load(text)
        assert body["metadata"]["creationTimestamp"] == "2026-12-01T20:42:00Z"
        assert parse_resource(body).metadata.creation_timestamp == CREATED  # get -o yaml | apply -f -


def test_name_output():
    assert render("stitches", [_stitch()], "name") == "stitch/blue-red"


def test_every_kind_has_its_own_table_and_sites_show_with_units():
    from vnstitch.cli.output import HEADERS, WIDE
    from vnstitch.domain.registry import KINDS

    assert set(KINDS) <= set(HEADERS) and set(KINDS) <= set(WIDE), "a kind without columns fell back to NAME/AGE"
    site = parse_resource({"kind": "Site", "metadata": {"name": "east", "creationTimestamp": CREATED},
                           "spec": {"nodes": ["n1", "n2"], "borderNode": "n1", "asNumber": 65001,
                                    "routeManagerAddress": "192.0.2.1", "offeredBandwidth": "2Gbps"}})
    lines = render("Site", [site], "wide", now=NOW).splitlines()
    assert lines[1].split() == ["east", "65001", "192.0.2.1", "n1", "2", "trusted", "2", "Gbps", "1m30s",
                                "192.0.2.1", "2026-12-01T20:42:00Z"]
    stitch = parse_resource({"kind": "SiteStitch", "metadata": {"name": "bg", "tenant": "acme",
                                                                "creationTimestamp": CREATED},
                             "spec": {"from": {"network": "blue"}, "to": {"network": "green", "tenant": "globex"},
                                      "bandwidth": "100Mbps", "maxLatency": "20ms"}})
    assert render("SiteStitch", [stitch], "wide", now=NOW).splitlines()[1].split() == \
        ["acme", "bg", "blue", "globex/green", "100", "Mbps", "wireguard", "1m30s", "20ms", "2026-12-01T20:42:00Z"]
