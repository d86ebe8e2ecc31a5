"""The intent language: what it compiles to, and errors that point at the line and column."""

import pytest

from vnstitch.domain.intent import Intent
from vnstitch.errors import InvalidInput
from vnstitch.intent.language import IntentSyntaxError, parse_intent_text
from vnstitch.intent.translators import in_force

BRIEF = ("for group('acme/orders') isolate;\n"
         "    allow service('acme/analytics:8443') latency < 20ms bandwidth >= 200Mbps between 08:00-20:00")


def test_the_brief_example_compiles_to_an_isolation_and_a_bounded_reachability():
    spec = parse_intent_text(BRIEF)
    isolate, reach = spec["expectations"]
    assert isolate == {"id": "isolate-orders", "type": "isolation", "object": {"group": "acme/orders"}}
    assert reach["service"] == "acme/analytics:8443"
    assert reach["targets"] == [{"name": "latency", "condition": "lessThan", "value": "20ms"},
                                {"name": "bandwidth", "condition": "atLeast", "value": "200Mbps"}]
    assert reach["contexts"] == [{"attribute": "timeWindow", "value": "08:00-20:00"}]
    intent = Intent.model_validate({"kind": "Intent", "metadata": {"name": "x"}, "spec": {"text": BRIEF}},
                                   context={"user_input": True})
    assert intent.spec.expectations[1].target("latency").value == 0.02


def test_options_selectors_classes_percentages_and_plugins():
    spec = parse_intent_text("priority 300 valid from 2027-01-01T00:00:00Z until 2027-02-01T00:00:00Z\n"
                             "for group(app=orders) allow service('b/lake/sql') loss <= 0.1% bandwidth >= 1Gbps at p95 "
                             "classes gold(dscp=46, share=60%) > silver(ports=9000|9001) > bronze on mon-fri "
                             "timezone 'Europe/Berlin' unencrypted; expect trustZones(zones='core', n=2)")
    assert spec["priority"] == 300 and spec["validity"]["start"].startswith("2027-01-01")
    reach, qos, plugin = spec["expectations"]
    assert reach["object"] == {"selector": {"app": "orders"}}
    assert {"name": "loss", "condition": "atMost", "value": "0.1%"} in reach["targets"]
    assert {"name": "bandwidth", "condition": "atLeast", "value": "1Gbps", "quantile": 0.95} in reach["targets"]
    assert {"name": "encryption", "condition": "equals", "value": "none"} in reach["targets"]
    assert [(c["name"], c["rank"], round(c["share"], 3)) for c in qos["classes"]] == \
        [("gold", 1, 0.6), ("silver", 2, 0.2), ("bronze", 3, 0.2)]
    assert qos["classes"][1]["ports"] == [9000, 9001]
    assert plugin == {"id": "trustzones-selected", "type": "trustZones", "object": {"selector": {"app": "orders"}},
                      "parameters": {"zones": "core", "n": 2}}


@pytest.mark.parametrize("text,line,column,words", [
    ("for group('a') isolat", 1, 16, "expected 'allow', 'expect', 'isolate'"),
    ("for group('a')\n  allow service('b:1') latency < 20", 2, 34, "a quantity with its unit"),
    ("for group('a') allow service('b:1') latency << 20ms", 1, 46, "unexpected '<'"),
    ("for group('a') allow service('b:1') between 8:00-9:00", 1, 45, "a time of day"),
    ("for group('a') allow", 1, 21, "unexpected the end of the text; expected 'service'"),
    ("isolate", 1, 1, "unexpected 'isolate'"),
])
def test_errors_point_at_the_line_and_column(text, line, column, words):
    with pytest.raises(IntentSyntaxError) as err:
        parse_intent_text(text)
    assert (err.value.line, err.value.column) == (line, column), str(err.value)
    assert words in str(err.value) and err.value.field == "spec.text"


def test_a_bad_text_in_a_resource_names_spec_text_and_an_edit_of_one_half_is_refused():
    from vnstitch.domain.registry import parse_resource

    with pytest.raises(InvalidInput) as err:
        parse_resource({"kind": "Intent", "metadata": {"name": "x"}, "spec": {"text": "for group('a') isolat"}},
                       user_input=True)
    assert err.value.field == "spec.text" and "line 1, column 16" in err.value.message
    stored = parse_resource({"kind": "Intent", "metadata": {"name": "x"}, "spec": {"text": BRIEF}}, user_input=True)
    doc = stored.model_dump(by_alias=True, mode="json", context={"units": True})
    doc["spec"]["text"] = BRIEF.replace("20ms", "30ms")  # the text changed, the expectations not
    with pytest.raises(InvalidInput) as err:
        parse_resource(doc, user_input=True)
    assert err.value.field == "spec.expectations" and "differ" in err.value.message
    doc["spec"]["text"] = BRIEF
    assert parse_resource(doc, user_input=True).spec == stored.spec  # as printed, it applies again


def test_targets_in_files_need_units_and_windows_are_checked():
    from vnstitch.domain.registry import parse_resource

    def refused(target=None, context=None):
        exp = {"id": "e", "type": "reachability", "object": {"group": "a"}, "service": "b:1",
               "targets": [target] if target else [], "contexts": [context] if context else []}
        with pytest.raises(InvalidInput) as err:
            parse_resource({"kind": "Intent", "metadata": {"name": "x"}, "spec": {"expectations": [exp]}},
                           user_input=True)
        return err.value

    assert "has no unit" in refused({"name": "latency", "condition": "lessThan", "value": 20}).message
    assert "fraction" in refused({"name": "loss", "condition": "lessThan", "value": 2}).message
    assert "time window" in refused(context={"attribute": "timeWindow", "value": "8-20"}).message
    assert "time zone" in refused(context={"attribute": "timeZone", "value": "Mars/Olympus"}).message


def test_time_contexts_decide_whether_targets_are_in_force():
    exp = Intent.model_validate({"kind": "Intent", "metadata": {"name": "x"}, "spec": {"text":
        "for group('a') allow service('b:1') bandwidth >= 1Mbps between 08:00-20:00 on mon-fri"}},
        context={"user_input": True}).spec.expectations[0]
    from datetime import datetime, timezone

    def at(text):
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()

    monday_noon, monday_night, saturday_noon = at("2026-12-07T12:00"), at("2026-12-07T23:00"), at("2026-12-12T12:00")
    assert in_force(exp, monday_noon) and not in_force(exp, monday_night) and not in_force(exp, saturday_noon)
