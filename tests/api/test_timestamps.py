"""Objects carry RFC 3339 UTC times on the wire (reads, lists, watches, status, history), as Kubernetes
users expect; the store keeps unix seconds, and both forms are accepted on input."""

import json
import re
import time

from vnstitch.domain.resources import parse_timestamp

from tests.api.payloads import vnet

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
MERGE = {"Content-Type": "application/merge-patch+json"}


def _recent(text: str) -> bool:
    return bool(RFC3339_UTC.match(text)) and abs(parse_timestamp(text) - time.time()) < 120


def test_reads_lists_status_and_history_show_rfc3339(seeded):
    stitch = seeded.call("member", "GET", "/v1/stitches/web-db").json()
    assert _recent(stitch["metadata"]["creationTimestamp"]), stitch["metadata"]
    assert all(_recent(entry["time"]) for entry in stitch["status"]["history"])
    listed = seeded.call("member", "GET", "/v1/stitches").json()["items"]
    assert [_recent(s["metadata"]["creationTimestamp"]) for s in listed] == [True]
    status = seeded.call("member", "GET", "/v1/stitches/web-db/status").json()
    history = seeded.call("member", "GET", "/v1/stitches/web-db/history").json()["items"]
    assert all(_recent(entry["time"]) for entry in status["history"] + history)
    network = seeded.call("member", "GET", "/v1/virtualnetworks/web").json()
    assert _recent(network["metadata"]["creationTimestamp"])


def test_watch_events_show_rfc3339(seeded):
    start = seeded.call("member", "GET", "/v1/stitches").json()["metadata"]["resourceVersion"]
    seeded.call("member", "PATCH", "/v1/stitches/web-db", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
    lines = seeded.call("member", "GET", "/v1/stitches",
                        params={"watch": "true", "resourceVersion": start, "timeoutSeconds": 1}).text.splitlines()
    (event,) = [json.loads(line) for line in lines]
    assert _recent(event["object"]["metadata"]["creationTimestamp"])
    assert all(_recent(entry["time"]) for entry in event["object"]["status"]["history"])


def test_an_object_read_back_is_accepted_again(seeded):
    """GET → PUT of what was read round-trips: the RFC 3339 strings parse (server-set times are kept)."""
    before = seeded.call("member", "GET", "/v1/virtualnetworks/web").json()
    again = seeded.call("member", "PUT", "/v1/virtualnetworks/web", json=before)
    assert again.status_code == 200, again.text
    assert again.json()["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]


def test_the_store_keeps_unix_seconds(seeded):
    """The controller computes with these (ages, grace periods): the stored form stays a number."""
    record = seeded.app.state.ctx.store.get("Stitch", "acme", "web-db")
    assert isinstance(record.value["metadata"]["creationTimestamp"], float)
    assert all(isinstance(entry["time"], float) for entry in record.value["status"]["history"])


def test_a_bad_time_on_input_names_the_field(seeded):
    body = vnet("g", 400, "10.4.0.0/24", [])
    body["metadata"]["creationTimestamp"] = "yesterday"
    answer = seeded.call("member", "POST", "/v1/virtualnetworks", json=body)
    assert answer.status_code == 422 and "RFC 3339" in answer.json()["message"]


def test_a_time_out_of_range_is_refused_not_a_500(seeded):
    """A time RFC 3339 cannot write (beyond year 9999, NaN as a string) is a 422 on input."""
    for bad in (1e300, "1e300", -1e20):
        body = vnet("g", 400, "10.4.0.0/24", [])
        body["metadata"]["creationTimestamp"] = bad
        answer = seeded.call("member", "POST", "/v1/virtualnetworks", json=body, params={"dryRun": "true"})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["field"] == "metadata.creationTimestamp"
