"""Samples from a Prometheus server: one instant PromQL query per scope and field (`/api/v1/query`).

A query's result vector gives one value per series; its `src`/`dst` labels (names configurable)
say which endpoints of the scope's tenant it is between. A server that is down, refuses the
query or answers something that is not Prometheus JSON raises `TelemetryUnavailable` with the
reason: the caller records it (a policy's status) and keeps running on what it has.
"""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field as dataclass_field
from typing import Mapping, Sequence

from vnstitch.telemetry.base import LATENCY, LOSS, PULL, VM_PAIRS, Sample, TelemetryUnavailable

FIELDS = ("rate_bps", "latency_s", "loss")


@dataclass(frozen=True)
class PromQuery:
    """One PromQL expression whose instant vector fills one field of a tenant's samples.

    `scale` converts the result's unit (8 for bytes/s → bit/s, 1e-3 for ms → s); `names` maps label
    values to endpoint names ('ATLA' → 'pop-atla'); values it does not name are used as they are."""

    tenant: str
    promql: str
    field: str = "rate_bps"
    src_label: str = "src"
    dst_label: str = "dst"
    scale: float = 1.0
    names: Mapping[str, str] = dataclass_field(default_factory=dict)

    def __post_init__(self):
        if self.field not in FIELDS:
            from vnstitch.errors import InvalidInput

            raise InvalidInput(f"unknown sample field '{self.field}' (valid: {', '.join(FIELDS)})", field="field")


class PrometheusSource:
    """Pull source over a real Prometheus HTTP API. Series without a rate (only latency or loss)
    give no sample; NaN values (Prometheus' "no data") are gaps and counted in `skipped`."""

    name = "prometheus"
    capabilities = frozenset({PULL, VM_PAIRS, LATENCY, LOSS})

    def __init__(self, url: str, queries: Sequence[PromQuery], timeout_s: float = 5.0):
        self.url = url.rstrip("/")
        self.queries = list(queries)
        self.timeout_s = timeout_s
        self.skipped = 0

    def collect(self, now: float) -> list[Sample]:
        found: dict[tuple[str, str, str], dict] = {}
        for q in self.queries:
            for labels, at, value in self.query(q.promql, now):
                try:
                    src, dst = labels[q.src_label], labels[q.dst_label]
                except KeyError as missing:
                    raise TelemetryUnavailable(
                        f"prometheus query {q.promql!r} returned a series without label {missing}: {labels} "
                        f"(set src_label/dst_label)", self.name) from None
                if not math.isfinite(value):
                    self.skipped += 1
                    continue
                key = (q.tenant, q.names.get(src, src), q.names.get(dst, dst))
                entry = found.setdefault(key, {"time": at})
                entry[q.field] = value * q.scale
        out = []
        for (tenant, src, dst), entry in sorted(found.items()):
            if "rate_bps" not in entry:
                self.skipped += 1
                continue
            out.append(Sample(tenant, src, dst, entry["time"], entry["rate_bps"], entry.get("latency_s"),
                              entry.get("loss")))
        return out

    def query(self, promql: str, now: float) -> list[tuple[dict, float, float]]:
        """(labels, time, value) of each series of an instant query evaluated at `now`."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": f"{now:.3f}"})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:  # 400 bad query, 422 cannot execute, 503 overloaded …
            raw = exc.read()
            detail = _error_of(raw) or raw[:120].decode("utf-8", "replace")
            raise TelemetryUnavailable(f"prometheus at {self.url} refused query {promql!r} "
                                       f"(HTTP {exc.code}): {detail}", self.name) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TelemetryUnavailable(f"prometheus at {self.url} is unreachable: {reason}", self.name) from None
        return self._parse(raw, promql)

    def _parse(self, raw: bytes, promql: str) -> list[tuple[dict, float, float]]:
        def garbage(why: str) -> TelemetryUnavailable:
            return TelemetryUnavailable(f"prometheus at {self.url} answered query {promql!r} with something that "
                                        f"is not a Prometheus instant vector ({why}): {raw[:80]!r}", self.name)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise garbage("not JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = _error_of(raw)
            if detail:
                raise TelemetryUnavailable(f"prometheus at {self.url} failed query {promql!r}: {detail}", self.name)
            raise garbage("no status 'success'")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            kind = data.get("resultType") if isinstance(data, dict) else None
            raise garbage(f"result type {kind!r}, expected 'vector'")
        out = []
        for item in data["result"]:
            try:
                labels, (at, text) = item["metric"], item["value"]
                out.append((dict(labels), float(at), float(text)))
            except (KeyError, TypeError, ValueError):
                raise garbage(f"series {str(item)[:80]}") from None
        return out


def _error_of(raw: bytes) -> str | None:
    """Prometheus' own error text ({"status": "error", "errorType": …, "error": …}), if that is what came."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(body, dict) and body.get("status") == "error":
        return f"{body.get('errorType', 'error')}: {body.get('error', '')}"
    return None


# --- the server's configuration ------------------------------------------------------------------

def load_source(path: str) -> PrometheusSource:
    """A PrometheusSource from a YAML (or JSON) file, as `vnstitch serve --proactive --prometheus FILE`
    takes it:

        url: http://127.0.0.1:9090          # Prometheus' HTTP API
        timeout: 5s                         # optional, per query
        queries:
          - tenant: acme
            promql: sum by (src, dst) (rate(flow_bytes_total[1m]))
            field: rate_bps                 # rate_bps (default) | latency_s | loss
            scale: 8                        # optional: bytes/s → bit/s
            srcLabel: src                   # optional, the labels naming the endpoints
            dstLabel: dst
            names: {ATLA: pop-atla}         # optional: label value → network or VM name

    Errors name the file and the field (`queries[1].promql`)."""
    from pydantic import BaseModel, ConfigDict, Field, ValidationError

    from vnstitch.domain.registry import load_yaml_documents
    from vnstitch.domain.resources import invalid_from_pydantic
    from vnstitch.errors import InvalidInput
    from vnstitch.units import parse_duration

    class Query(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        tenant: str = Field(min_length=1)
        promql: str = Field(min_length=1)
        field: str = "rate_bps"
        scale: float = Field(default=1.0, gt=0)
        src_label: str = Field(default="src", alias="srcLabel", min_length=1)
        dst_label: str = Field(default="dst", alias="dstLabel", min_length=1)
        names: dict[str, str] = Field(default_factory=dict)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        url: str = Field(pattern=r"^https?://")
        timeout: str = "5s"
        queries: list[Query] = Field(min_length=1)

    try:
        with open(path, encoding="utf-8") as handle:
            docs = load_yaml_documents(handle)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="--prometheus") from None
    except Exception as exc:  # noqa: BLE001 - a YAML error: one line with its position
        raise InvalidInput(f"{path}: malformed YAML: {str(exc).splitlines()[0]}", field="--prometheus") from None
    if len(docs) != 1:
        raise InvalidInput(f"{path}: expected one document with url and queries, found {len(docs)}",
                           field="--prometheus")
    try:
        config = Config.model_validate(docs[0])
    except ValidationError as exc:
        err = invalid_from_pydantic(exc)
        raise InvalidInput(f"{path}: {err.message}", field=err.field) from None
    queries = [PromQuery(q.tenant, q.promql, q.field, q.src_label, q.dst_label, q.scale, q.names)
               for q in config.queries]
    return PrometheusSource(config.url, queries, timeout_s=parse_duration(config.timeout))
