"""The API's 422 bodies say what is allowed in the same words as `vnstitch validate` (tests/unit/test_messages.py)."""

import pytest
import yaml

from tests.unit.test_messages import CASES


@pytest.mark.parametrize("document,field,message", CASES, ids=[f"{c[1]}:{c[2][:24]}" for c in CASES])
def test_the_api_answers_the_same_words(api, document, field, message):
    body = yaml.safe_load(document)
    body["apiVersion"] = "vnstitch.io/v1"
    plural = {"VirtualNetwork": "virtualnetworks", "Stitch": "stitches", "Link": "substrate/links",
              "Node": "substrate/nodes", "ForecastPolicy": "forecastpolicies"}[body["kind"]]
    answer = api.call("admin", "POST", f"/v1/{plural}", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json() == {"code": "invalid", "message": message, "field": field}


def test_apply_over_the_api_names_the_field_without_the_kind_tag(api):
    body = {"items": [{"apiVersion": "vnstitch.io/v1", "kind": "Stitch", "metadata": {"name": "s"},
                       "spec": {"type": "segment", "from": {"network": "a"}, "to": {"network": "b"}, "colour": 1}}]}
    answer = api.call("admin", "POST", "/v1/apply", json=body)
    assert answer.status_code == 422
    assert answer.json()["field"] == "items[0].spec.colour"
    assert answer.json()["message"].startswith("is not a known field (known: type, from, to, bandwidth, maxLatency")


def test_query_parameters_too(api):
    answer = api.call("admin", "GET", "/v1/virtualnetworks?limit=5000")
    assert answer.json() == {"code": "invalid", "message": "query parameter: must be ≤ 1000", "field": "limit"}
