"""/metrics through prometheus-client: parsed back with its parser, one registry per app, process metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from vnstitch.api.metrics import CONTENT_TYPE, state_lines

# Every family /metrics served before prometheus-client, with its type and label names.
FAMILIES = {
    "vnstitch_http_request_duration_seconds": ("histogram", {"method", "route", "status"}),
    "vnstitch_stitches": ("gauge", {"state"}),
    "vnstitch_link_capacity_bps": ("gauge", {"link"}),
    "vnstitch_link_reserved_bps": ("gauge", {"link", "direction"}),
    "vnstitch_link_measured_bps": ("gauge", set()),   # no samples until a stitch is measured
    "vnstitch_reconcile_passes_total": ("counter", set()),
    "vnstitch_reconcile_failures_total": ("counter", set()),
}
ODD_REPLICA = 'rack "7" \\ host\nsecond line'   # --replica-id is free text: a quote, a backslash, a newline


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def scrape(api) -> dict:
    response = api.call("anyone", "GET", "/metrics")
    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE
    return families(response.text)


def sample(family, name: str, **labels):
    found = [s for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, (name, labels, family.samples)
    return found[0]


def test_every_metric_of_before_is_there_with_its_type_and_labels(make_api):
    api = make_api(reconcile=True, tick_s=0.2)
    api.call("member", "GET", "/v1/stitches")
    got = scrape(api)
    for name, (kind, labels) in FAMILIES.items():
        family = got[name.removesuffix("_total")] if kind == "counter" else got[name]
        assert family.type == kind, name
        for s in family.samples:
            assert labels <= set(s.labels) | ({"le"} if kind == "histogram" else set()), (name, s)
    assert sample(got["vnstitch_stitches"], "vnstitch_stitches", state="ACTIVE").value == 0
    link = sample(got["vnstitch_link_capacity_bps"], "vnstitch_link_capacity_bps", link="NYCMng--WASHng")
    assert link.value == api.app.state.ctx.controller.get("Link", "NYCMng--WASHng").spec.capacity > 0
    route = {"method": "GET", "route": "/v1/stitches", "status": "200"}
    assert sample(got["vnstitch_http_request_duration_seconds"], "vnstitch_http_request_duration_seconds_count",
                  **route).value == 1
    assert sample(got["vnstitch_http_request_duration_seconds"], "vnstitch_http_request_duration_seconds_bucket",
                  le="+Inf", **route).value == 1


def test_process_and_platform_metrics_are_exported(api):
    got = scrape(api)
    assert got["process_cpu_seconds"].type == "counter"
    assert sample(got["process_cpu_seconds"], "process_cpu_seconds_total").value > 0
    assert sample(got["process_resident_memory_bytes"], "process_resident_memory_bytes").value > 0
    assert "python_info" in got


def test_a_label_with_a_quote_a_backslash_and_a_newline_is_escaped(make_api):
    api = make_api(reconcile=True, leader_election=True, replica_id=ODD_REPLICA, leader_ttl_s=5)
    text = api.call("anyone", "GET", "/metrics").text
    assert 'vnstitch_leader{replica="rack \\"7\\" \\\\ host\\nsecond line"}' in text
    leader = families(text)["vnstitch_leader"]
    assert [s.labels["replica"] for s in leader.samples] == [ODD_REPLICA]
    assert "vnstitch_leader_fence_revision" in families(text)


def test_two_apps_in_one_process_keep_their_own_counts(make_api):
    first, second = make_api(), make_api()
    for _ in range(3):
        first.call("member", "GET", "/v1/whoami")
    count = "vnstitch_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "/v1/whoami", "status": "200"}
    assert sample(scrape(first)["vnstitch_http_request_duration_seconds"], count, **route).value == 3
    assert not [s for s in scrape(second)["vnstitch_http_request_duration_seconds"].samples
                if s.name == count and s.labels.get("route") == "/v1/whoami"]


def test_state_lines_is_the_state_part_of_the_exposition(seeded):
    text = "\n".join(state_lines(seeded.app.state.ctx.controller)) + "\n"
    got = families(text)
    assert sample(got["vnstitch_stitches"], "vnstitch_stitches", state="PENDING").value == 1
    assert "vnstitch_http_request_duration_seconds" not in got and "process_cpu_seconds" not in got
