"""Every registered intent translator (the built-ins and the example plugin) through one contract: it
declares its type, targets and capabilities; refuses targets it does not know and unknown groups, naming
the field; compiles into a Compiled; assesses into FULFILLED or NOT_FULFILLED with a 28.312 state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vnstitch.domain.intent import Expectation, Intent
from vnstitch.domain.registry import parse_resource
from vnstitch.errors import InvalidInput
from vnstitch.intent.checks import context_for
from vnstitch.intent.translators import (
    Assessment, Compiled, Translator, TranslatorRegistry, builtin_translators,
)
from vnstitch.intent.vngraph import VNGraph
from tests.helpers import vnet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "intent-plugin"))
from vnstitch_trustzones import TrustZones  # noqa: E402  (the example third-party translator)

ANALYTICS = parse_resource({"kind": "VirtualNetwork", "metadata": {"name": "analytics", "tenant": "acme"},
                            "spec": {"vnid": 2, "cidr": "10.2.0.0/24", "services": [{"name": "rep", "port": 8443}],
                                     "members": [{"name": "a1", "node": "B", "address": "10.2.0.1"}]}})
ORDERS = vnet("orders", 1, "10.1.0.0/24", [("o1", "A", "10.1.0.1")])
# one valid expectation per type, with what else the intent needs
EXPECTATIONS = {
    "isolation": [{"id": "e", "type": "isolation", "object": {"group": "orders"}}],
    "reachability": [{"id": "e", "type": "reachability", "object": {"group": "orders"}, "service": "analytics:8443",
                      "targets": [{"name": "latency", "condition": "lessThan", "value": 0.02}]}],
    "qos": [{"id": "r", "type": "reachability", "object": {"group": "orders"}, "service": "analytics:8443",
             "targets": [{"name": "bandwidth", "condition": "atLeast", "value": 1e8}]},
            {"id": "e", "type": "qos", "object": {"group": "orders"}, "service": "analytics:8443",
             "classes": [{"name": "gold", "rank": 1, "share": 0.7, "dscp": 46}, {"name": "rest", "rank": 2, "share": 0.3}]}],
    "trustZones": [{"id": "e", "type": "trustZones", "object": {"group": "orders"}, "parameters": {"zones": "core"}}],
}
TRANSLATORS = builtin_translators() + [TrustZones()]


def intent_with(expectations) -> Intent:
    return Intent.model_validate({"kind": "Intent", "metadata": {"name": "i", "tenant": "acme"},
                                  "spec": {"expectations": expectations}})


def context(intent: Intent):
    return context_for(intent, VNGraph([ORDERS, ANALYTICS], [], [intent]), now=1.7e9)


@pytest.fixture(params=TRANSLATORS, ids=lambda t: t.type)
def translator(request) -> Translator:
    return request.param


def the(translator, intent: Intent) -> Expectation:
    return next(e for e in intent.spec.expectations if e.type == translator.type)


def test_it_implements_the_contract_and_registers_once(translator):
    assert isinstance(translator, Translator)
    assert translator.type and isinstance(translator.targets, frozenset) and translator.capabilities
    registry = TranslatorRegistry([translator])
    assert registry.get(translator.type) is translator
    with pytest.raises(ValueError, match="already registered"):
        registry.register(translator)
    with pytest.raises(InvalidInput, match=f"valid: {translator.type}"):
        registry.get("nosuch", "spec.expectations[0].type")


def test_it_validates_compiles_and_assesses_a_valid_expectation(translator):
    intent = intent_with(EXPECTATIONS[translator.type])
    exp, ctx = the(translator, intent), context(intent)
    translator.validate(exp, ctx, "spec.expectations[0]")
    compiled = translator.compile(exp, ctx)
    assert isinstance(compiled, Compiled) and compiled.rules  # it says what it put in force
    assessment = translator.assess(exp, ctx)
    assert isinstance(assessment, Assessment) and assessment.verdict in ("FULFILLED", "NOT_FULFILLED")
    if assessment.verdict == "NOT_FULFILLED":
        assert assessment.state in ("ACKNOWLEDGED", "DEGRADED", "SUSPENDED", "FULFILMENTFAILED") and assessment.reason


def test_an_unknown_target_is_refused_naming_the_field(translator):
    docs = [dict(d) for d in EXPECTATIONS[translator.type]]
    mine = next(d for d in docs if d["type"] == translator.type)
    mine["targets"] = [*mine.get("targets", []), {"name": "colour", "condition": "equals", "value": "blue"}]
    intent = intent_with(docs)
    with pytest.raises(InvalidInput) as err:
        translator.validate(the(translator, intent), context(intent), "spec.expectations[1]")
    assert err.value.field.endswith(".name") and "colour" in err.value.message


def test_an_unknown_group_is_refused_naming_the_field(translator):
    docs = [{**d, "object": {"group": "nowhere"}} for d in EXPECTATIONS[translator.type]]
    intent = intent_with(docs)
    with pytest.raises(InvalidInput) as err:
        translator.validate(the(translator, intent), context(intent), "spec.expectations[0]")
    assert err.value.field == "spec.expectations[0].object.group" and "unknown group 'nowhere'" in err.value.message


def test_the_default_registry_holds_the_built_ins():
    from vnstitch.intent.translators import default_registry

    assert {"isolation", "reachability", "qos"} <= set(default_registry().types())
