"""Strict units in resource files: a bare number is an error naming the field, letter case is significant,
byte rates are converted; numbers from the store, the API's JSON and the HTTP client still validate."""

import random

import pytest

from vnstitch.domain.registry import KINDS, parse_documents, parse_resource
from vnstitch.domain.resources import WITH_UNITS
from vnstitch.domain.stitch import Stitch
from vnstitch.errors import InvalidInput
from vnstitch.units import bandwidth_text, duration_text, parse_bandwidth, parse_duration

STITCH = ("kind: Stitch\nmetadata: {{name: s}}\nspec: {{type: bandwidth, from: {{network: a}}, to: {{network: b}}, "
          "bandwidth: {bandwidth}, maxLatency: {latency}}}\n")


def stitch(bandwidth="10Mbps", latency="30ms") -> Stitch:
    [res] = parse_documents(STITCH.format(bandwidth=bandwidth, latency=latency))
    return res


def refusal(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_documents(text)
    return caught.value


@pytest.mark.parametrize("text,bps", [
    ("10Mbps", 10e6), ("10 Gbit/s", 10e9), ("10Mb/s", 10e6), ("1.5kbps", 1500.0), ("2Kbps", 2000.0),
    ("1.1Gbps", 1.1e9), ("10MB/s", 80e6), ("1 GB/s", 8e9), ("5kB/s", 40e3), ("100bps", 100.0), ("1.5e9bps", 1.5e9),
])
def test_bandwidth_spellings(text, bps):
    assert stitch(bandwidth=text).spec.bandwidth == bps


@pytest.mark.parametrize("text,seconds", [("30ms", 0.03), ("1.5s", 1.5), ("5m", 300.0), ("5min", 300.0),
                                          ("2h", 7200.0), ("1d", 86400.0), ("250us", 250e-6)])
def test_duration_spellings(text, seconds):
    assert stitch(latency=text).spec.max_latency == seconds


@pytest.mark.parametrize("field,value,expected", [
    ("maxLatency", "30", "spec.maxLatency: 30 has no unit: write the duration with one, e.g. '30s' if you meant "
                         "30 seconds (ns, us, ms, s, m (or min), h, d, w)"),
    ("maxLatency", "0.02", "spec.maxLatency: 0.02 has no unit: write the duration with one, e.g. '20ms' if you meant "
                           "0.02 seconds (ns, us, ms, s, m (or min), h, d, w)"),
    ("bandwidth", "1000000", "spec.bandwidth: 1000000 has no unit: write the bandwidth with one, e.g. '1Mbps' if you "
                             "meant 1000000 bit/s (bits: bps, kbps, Mbps, Gbps, Tbps or bit/s, kbit/s, Mbit/s, "
                             "Gbit/s, Tbit/s; bytes (×8): B/s, kB/s, MB/s, GB/s, TB/s)"),
    ("bandwidth", "'1.5e9'", "spec.bandwidth: 1.5e9 has no unit: write the bandwidth with one, e.g. '1.5Gbps' if you "
                             "meant 1.5e9 bit/s (bits: bps, kbps, Mbps, Gbps, Tbps or bit/s, kbit/s, Mbit/s, Gbit/s, "
                             "Tbit/s; bytes (×8): B/s, kB/s, MB/s, GB/s, TB/s)"),
])
def test_a_bare_number_is_an_error_naming_the_field_and_the_units(field, value, expected):
    values = {"bandwidth": "10Mbps", "latency": "30ms"}
    values["latency" if field == "maxLatency" else "bandwidth"] = value
    assert str(refusal(STITCH.format(**values))) == expected


@pytest.mark.parametrize("text,expected", [
    ("10mbps", "unknown bandwidth unit 'mbps': unit symbols are case-sensitive ('m' is milli, 'M' mega; 'b' a bit, "
               "'B' a byte); did you mean 'Mbps'?"),
    ("10mb/s", "unknown bandwidth unit 'mb/s': unit symbols are case-sensitive ('m' is milli, 'M' mega; 'b' a bit, "
               "'B' a byte); did you mean 'Mb/s' or 'MB/s'?"),
    ("10GBPS", "unknown bandwidth unit 'GBPS': unit symbols are case-sensitive ('m' is milli, 'M' mega; 'b' a bit, "
               "'B' a byte); did you mean 'Gbps'?"),
    ("10MiB/s", "unknown bandwidth unit 'MiB/s' (use bits: bps, kbps, Mbps, Gbps, Tbps or bit/s, kbit/s, Mbit/s, "
                "Gbit/s, Tbit/s; bytes (×8): B/s, kB/s, MB/s, GB/s, TB/s)"),
])
def test_letter_case_is_significant_and_refused_with_a_hint(text, expected):
    assert str(refusal(STITCH.format(bandwidth=text, latency="30ms"))) == f"spec.bandwidth: {expected}"
    with pytest.raises(ValueError, match="unknown bandwidth unit"):
        parse_bandwidth(text)  # everywhere, not only in files: '10mbps' is never read as 10 Mbit/s


def test_duration_case_too():
    assert str(refusal(STITCH.format(bandwidth="1Gbps", latency="30MS"))) == \
        "spec.maxLatency: unknown duration unit 'MS': unit symbols are case-sensitive (write them in lower case); " \
        "did you mean 'ms'?"


UNIT_FIELDS = [  # every bandwidth and duration field a resource file may hold
    ("Link", "spec: {endpoints: [a, b], capacity: 1, latency: 1ms}", "spec.capacity"),
    ("Link", "spec: {endpoints: [a, b], capacity: 1Gbps, latency: 1}", "spec.latency"),
    ("Stitch", "spec: {type: bandwidth, from: {network: a}, to: {network: b}, bandwidth: 5}", "spec.bandwidth"),
    ("Stitch", "spec: {type: segment, from: {network: a}, to: {network: b}, maxLatency: 0.05}", "spec.maxLatency"),
    ("ForecastPolicy", "spec: {interval: 300}", "spec.interval"),
    ("ForecastPolicy", "spec: {trainingWindow: 604800}", "spec.trainingWindow"),
    ("ForecastPolicy", "spec: {retrainEvery: 86400}", "spec.retrainEvery"),
    ("ForecastPolicy", "spec: {latencySlack: 0.01}", "spec.latencySlack"),
    ("Intent", "spec: {text: \"for group('a') isolate\", assuranceInterval: 10}", "spec.assuranceInterval"),
    ("AnomalyPolicy", "spec: {interval: 300}", "spec.interval"),
    ("AnomalyPolicy", "spec: {minRate: 1000000}", "spec.minRate"),
    ("AnomalyPolicy", "spec: {forbiddenRate: 1000000}", "spec.forbiddenRate"),
    ("AnomalyPolicy", "spec: {rateLimit: 1000000}", "spec.rateLimit"),
    ("Proposal", "spec: {requester: r, intent: i, expectation: e, fromNetwork: r/a, network: b, bandwidth: 5}",
     "spec.bandwidth"),
    ("Proposal", "spec: {requester: r, intent: i, expectation: e, fromNetwork: r/a, network: b, maxLatency: 0.02}",
     "spec.maxLatency"),
    ("Site", "spec: {nodes: [n], borderNode: n, asNumber: 65001, routeManagerAddress: 10.0.0.1, "
             "offeredBandwidth: 5}", "spec.offeredBandwidth"),
    ("SiteStitch", "spec: {from: {network: a}, to: {network: b, tenant: t}, bandwidth: 5}", "spec.bandwidth"),
    ("SiteStitch", "spec: {from: {network: a}, to: {network: b, tenant: t}, bandwidth: 5Mbps, maxLatency: 0.02}",
     "spec.maxLatency"),
]


@pytest.mark.parametrize("kind,spec,field", UNIT_FIELDS)
def test_every_unit_field_of_every_kind_wants_a_unit(kind, spec, field):
    err = refusal(f"kind: {kind}\nmetadata: {{name: x}}\n{spec}\n")
    assert err.field == field and "has no unit" in err.message


def test_the_list_of_unit_fields_is_complete():
    """A new bandwidth or duration field must join UNIT_FIELDS (and so its test above)."""
    def unit_fields(model, prefix):
        for name, info in model.model_fields.items():
            wire = f"{prefix}.{info.alias or name}"
            if {"_bandwidth_in", "_duration_in"} & {w for w in repr((info.annotation, info.metadata)).split()}:
                yield wire
            sub = info.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from unit_fields(sub, wire)

    found = {(kind, f) for kind, cls in KINDS.items() for f in unit_fields(cls, "")}
    assert found == {(kind, "." + field) for kind, _, field in UNIT_FIELDS}


def test_numbers_still_validate_where_the_controller_wrote_them():
    """The store, the API's JSON and the HTTP client hold numbers (bit/s, seconds): they stay valid."""
    stored = stitch().to_dict()
    assert stored["spec"]["bandwidth"] == 10e6 and stored["spec"]["maxLatency"] == 0.03
    assert Stitch.model_validate(stored).spec.bandwidth == 10e6
    assert parse_resource(stored).spec.max_latency == 0.03  # the API's merge-patch path


def test_documents_print_units_exactly_and_read_back():
    document = stitch("10MB/s", "1.5ms").model_dump(by_alias=True, mode="json", context=WITH_UNITS)
    assert document["spec"]["bandwidth"] == "80Mbps" and document["spec"]["maxLatency"] == "1.5ms"
    assert parse_resource(document, user_input=True).spec.bandwidth == 80e6


def test_exact_text_round_trips():
    rng = random.Random(17)
    values = [0.0, 1e7, 1500.0, 1.1e9, 123456789.0, 0.03, 300.0, 90.0, 1 / 3, 0.1 + 0.2]
    values += [rng.random() * 10 ** rng.randint(-9, 9) for _ in range(2000)]
    values += [float(rng.randint(0, 10**12)) for _ in range(2000)]
    for value in values:
        assert parse_duration(duration_text(value), require_unit=True) == value
        assert parse_bandwidth(bandwidth_text(value), require_unit=True) == value
    assert [duration_text(v) for v in (0.03, 300, 90, 86400, 0.0015)] == ["30ms", "5min", "90s", "1d", "1.5ms"]
    assert [bandwidth_text(v) for v in (1e7, 1500, 2.4e9, 0)] == ["10Mbps", "1.5kbps", "2.4Gbps", "0bps"]
