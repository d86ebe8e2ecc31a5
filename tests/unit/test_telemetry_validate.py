"""Bad telemetry gets an error naming the sample and field; a rejected batch is rejected whole."""

from __future__ import annotations

import math

import pytest

from vnstitch.telemetry import Sample, TelemetryError, validate_batch
from vnstitch.telemetry.validate import endpoints_of

NOW = 1_700_000_000.0
KNOWN = {"acme": endpoints_of({"web": ["vm-1"], "db": []}), "globex": endpoints_of({"shop": []})}
WIRE = {"src": "from", "dst": "to", "rate_bps": "rateBps", "latency_s": "latency"}


def ok(**changes) -> Sample:
    base = dict(tenant="acme", src="web", dst="db", time=NOW - 60, rate_bps=1e6)
    base.update(changes)
    return Sample(**base)


@pytest.mark.parametrize("bad, field, words", [
    (ok(rate_bps=math.nan), "samples[1].rateBps", "finite"),
    (ok(rate_bps=-1.0), "samples[1].rateBps", ">= 0"),
    (ok(rate_bps=math.inf), "samples[1].rateBps", "finite"),
    (ok(rate_bps=2e13), "samples[1].rateBps", "10 Tbit/s"),
    (ok(rate_bps="1e6"), "samples[1].rateBps", "finite"),
    (ok(loss=1.5), "samples[1].loss", "[0, 1]"),
    (ok(loss=-0.1), "samples[1].loss", "[0, 1]"),
    (ok(latency_s=-0.001), "samples[1].latency", ">= 0"),
    (ok(latency_s=math.nan), "samples[1].latency", "finite"),
    (ok(time=NOW + 301), "samples[1].time", "in the future"),
    (ok(time=NOW - 15 * 86400), "samples[1].time", "retention"),
    (ok(time=math.nan), "samples[1].time", "finite"),
    (ok(dst="cache"), "samples[1].to", "unknown virtual network 'cache'"),
    (ok(src="web/vm-9"), "samples[1].from", "unknown VM 'web/vm-9'"),
    (ok(dst="shop"), "samples[1].to", "unknown virtual network 'shop' in tenant 'acme'"),  # globex's network
    (ok(src=""), "samples[1].from", "non-empty"),
    (ok(src="a/b/c"), "samples[1].from", "'network' or 'network/vm'"),
    (ok(tenant="nobody"), "samples[1].from", "unknown"),
])
def test_each_bad_sample_is_named_by_index_and_field(bad, field, words):
    with pytest.raises(TelemetryError) as caught:
        validate_batch([ok(), bad, ok(time=NOW)], NOW, KNOWN, names=WIRE)
    assert caught.value.field == field and caught.value.index == 1
    assert words in caught.value.message
    assert caught.value.http_status == 422


def test_good_batches_pass_out_of_order_with_vms_and_optional_fields():
    batch = [ok(time=NOW), ok(time=NOW - 600, src="web/vm-1", latency_s=0.01, loss=0.0), ok(time=NOW + 299),
             ok(rate_bps=0.0), ok(src="db", dst="db")]
    assert validate_batch(batch, NOW, KNOWN) == batch
    assert validate_batch(batch, NOW, lambda tenant: KNOWN[tenant]) == batch  # a callable works too
    assert validate_batch([ok(dst="anything")], NOW, None)  # no endpoint check without `known`


def test_duplicates_last_wins_or_rejected():
    first, corrected, other = ok(rate_bps=1.0), ok(rate_bps=2.0), ok(time=NOW)
    assert validate_batch([first, other, corrected], NOW, KNOWN) == [other, corrected]
    assert validate_batch([first, ok(time=NOW - 60 + 0.0004, rate_bps=3.0)], NOW)[0].rate_bps == 3.0  # same ms
    with pytest.raises(TelemetryError, match=r"repeats samples\[0\]") as caught:
        validate_batch([first, other, corrected], NOW, KNOWN, duplicates="reject")
    assert caught.value.field == "samples[2].time"


def test_retention_is_a_parameter():
    with pytest.raises(TelemetryError, match="1-day retention"):
        validate_batch([ok(time=NOW - 2 * 86400)], NOW, retention_s=86400)
