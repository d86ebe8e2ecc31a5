"""`vnstitch serve --proactive`: telemetry pushed through the API drives the running controller's loop,
which stitches a rising pair before its link saturates; the predicted graph, its history and the
policy's status are read back through the same API."""

import time

from vnstitch.domain.resources import parse_timestamp

from tests.api.payloads import vnet

INTERVAL = 1.0  # seconds: a compressed control interval


def policy(mode="auto"):
    return {"kind": "ForecastPolicy", "metadata": {"name": "fc"},
            "spec": {"networks": ["web", "db"], "interval": f"{INTERVAL:g}s", "horizon": 1, "mode": mode,
                     "minHistory": 1000}}


def push(api, rates, at):
    samples = [{"from": a, "to": b, "time": at, "rateBps": bps} for (a, b), bps in rates.items()]
    response = api.call("member", "POST", "/v1/telemetry", json={"samples": samples})
    assert response.status_code == 200, response.text


def into_an_interval() -> float:
    """Sleep until the next moment 0.3 of the way into a control interval (a sample pushed then lands well
    before the loop reads its interval); that moment."""
    time.sleep((0.3 - time.time() / INTERVAL % 1) % 1 * INTERVAL or INTERVAL)
    return time.time()


def forecast_stitches(api):
    items = api.call("member", "GET", "/v1/stitches").json()["items"]
    return [s for s in items if s["spec"]["origin"] == "forecast" and s["status"]["state"] != "TERMINATED"]


def test_the_running_controller_stitches_a_rising_pair_from_pushed_telemetry(make_api):
    api = make_api(reconcile=True, proactive=True, tick_s=0.2, reconcile_min_interval_s=0.05)
    for doc in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=doc).raise_for_status()
    created = api.call("member", "POST", "/v1/forecastpolicies", json=policy())
    assert created.status_code == 201, created.text
    # web→db ramps towards the ~9.9 Gbit/s links: the loop must stitch before the load reaches them
    stitched_at = None
    deadline = time.monotonic() + 40
    rate = 2e9
    while stitched_at is None:
        assert time.monotonic() < deadline, api.call("member", "GET", "/v1/forecastpolicies/fc").json()["status"]
        now = time.time()
        push(api, {("web", "db"): rate, ("db", "web"): 1e8}, now)
        time.sleep(INTERVAL)
        if forecast_stitches(api):
            stitched_at = rate
        rate += 0.5e9
    assert stitched_at < 9.92e9, "stitched before the offered load passed the link's capacity"
    deadline = time.monotonic() + 10
    while not all(s["status"]["state"] == "ACTIVE" for s in forecast_stitches(api)):
        assert time.monotonic() < deadline, forecast_stitches(api)
        time.sleep(0.1)
    stitches = forecast_stitches(api)  # every part is the rising pair's: the constant one needs none
    assert {s["metadata"]["annotations"]["vnstitch.io/pair"] for s in stitches} == {"web>db"}, stitches
    stitch = stitches[0]
    assert "forecast p90" in stitch["metadata"]["annotations"]["vnstitch.io/reason"]

    status = api.call("reader", "GET", "/v1/forecastpolicies/fc").json()["status"]
    assert status["lastStep"] is not None and status["pairs"] == 2
    assert status["model"]["state"] == "baseline" and "baseline" in status["message"]
    graph = api.call("reader", "GET", "/v1/predictedgraph").json()
    assert graph["spec"]["policy"] == "fc" and graph["spec"]["stitches"]
    assert {(s["from"], s["to"]) for s in graph["spec"]["stitches"]} == {("web", "db")}
    earlier = api.call("reader", "GET", "/v1/predictedgraph", params={"at": time.time() - 3600}).json()
    assert earlier["spec"]["step"] is None, "nothing was predicted an hour ago"
    assert status["lastRun"].endswith("Z")  # RFC 3339 UTC on the wire
    last_run = parse_timestamp(status["lastRun"])
    first = api.call("reader", "GET", "/v1/predictedgraph", params={"at": last_run - 2.5 * INTERVAL})
    assert first.json()["spec"]["step"] < status["lastStep"], "the kept history answers for an earlier time"
    assert api.call("other", "GET", "/v1/forecastpolicies/fc", params={"tenant": "acme"}).status_code == 404


def test_an_interval_without_telemetry_does_not_stitch_a_constant_pair(make_api):
    """A gap in the history the baseline is fitted on is missing data, not a forecast error of the whole
    rate: the constant pair's p90 stays near its 100 Mbit/s, and no pair is stitched."""
    api = make_api(reconcile=True, proactive=True, tick_s=0.2, reconcile_min_interval_s=0.05)
    for doc in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=doc).raise_for_status()
    assert api.call("member", "POST", "/v1/forecastpolicies", json=policy()).status_code == 201
    rates = {("web", "db"): 2e9, ("db", "web"): 1e8}
    push(api, rates, into_an_interval())
    time.sleep(INTERVAL)
    pushed = into_an_interval()  # two intervals on: the one between gets no sample
    push(api, rates, pushed)
    deadline = time.monotonic() + 10
    while (api.call("reader", "GET", "/v1/forecastpolicies/fc").json()["status"].get("lastStep") or 0) \
            < int(pushed // INTERVAL) + 1:  # the interval holding the second sample has run
        assert time.monotonic() < deadline, api.call("reader", "GET", "/v1/forecastpolicies/fc").json()["status"]
        time.sleep(0.1)
    graph = api.call("reader", "GET", "/v1/predictedgraph").json()["spec"]
    upper = {(f["from"], f["to"]): f["upperBps"] for f in graph["forecast"]}
    assert upper[("db", "web")] < 2e8 and upper[("web", "db")] < 4e9, graph["forecast"]
    assert graph["decisions"] == [] and forecast_stitches(api) == []


def test_bad_policies_and_suggestions_over_the_api(make_api):
    api = make_api()
    bad = policy()
    bad["spec"]["model"] = "prophet"
    answer = api.call("member", "POST", "/v1/forecastpolicies", json=bad)
    assert answer.status_code == 422 and "valid:" in answer.json()["message"] and "gru" in answer.json()["message"]
    assert api.call("member", "GET", "/v1/suggestions").json()["items"] == []
    missing = api.call("member", "POST", "/v1/suggestions/nope/approve")
    assert missing.status_code == 404
    assert api.call("reader", "POST", "/v1/suggestions/nope/approve").status_code == 403


def test_forecast_stitches_count_against_the_tenants_quota(make_api):
    api = make_api(reconcile=True, proactive=True, tick_s=0.2, reconcile_min_interval_s=0.05,
                   quota_bandwidth_bps=1e9)
    for doc in (vnet("web", 100, "10.0.0.0/24", [("w1", "NYCMng", "10.0.0.1")]),
                vnet("db", 101, "10.1.0.0/24", [("d1", "LOSAng", "10.1.0.1")])):
        api.call("member", "POST", "/v1/virtualnetworks", json=doc).raise_for_status()
    assert api.call("member", "POST", "/v1/forecastpolicies", json=policy()).status_code == 201
    deadline = time.monotonic() + 30
    while True:  # near the links' capacity: the loop wants a stitch of several Gbit/s, over the 1 Gbit/s quota
        push(api, {("web", "db"): 9.5e9}, time.time())
        time.sleep(INTERVAL)
        status = api.call("member", "GET", "/v1/forecastpolicies/fc").json()["status"]
        if "refused" in status.get("message", "") and "quota 'bandwidth'" in status["message"]:
            break
        assert time.monotonic() < deadline, status
    assert forecast_stitches(api) == []
