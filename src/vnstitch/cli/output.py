"""Render resources as a table (or a wide one), JSON, YAML or names; the one set of -o formats."""

from __future__ import annotations

import json
import time

import yaml

from vnstitch.domain.registry import kind_class
from vnstitch.domain.resources import WIRE_TIMES, WITH_UNITS, format_timestamp
from vnstitch.units import format_bandwidth

# Every command that takes -o/--output takes these; one that cannot print a format says so (exit 2).
OUTPUT_FORMATS = ("table", "wide", "json", "yaml", "name")


def _output_name(text: str) -> str:
    """argparse type of -o: 'text' is the old name of 'table'."""
    return "table" if text == "text" else text


def add_output_argument(parser, formats: tuple[str, ...] = OUTPUT_FORMATS, default: str = "table") -> None:
    """-o/--output with the shared choices; `formats` are the ones this command prints."""
    others = [f for f in OUTPUT_FORMATS if f not in formats]
    parser.add_argument("-o", "--output", type=_output_name, choices=OUTPUT_FORMATS, default=default,
                        metavar="FORMAT",
                        help=f"output format, one of {'|'.join(OUTPUT_FORMATS)}; this command prints "
                             f"{', '.join(formats)}" + (f" (not {', '.join(others)})" if others else "")
                             + f" (default: {default})")
    parser.set_defaults(output_formats=tuple(formats))


def unsupported_output(args) -> str | None:
    """The usage error for an -o this command cannot print, else None."""
    formats = getattr(args, "output_formats", None)
    chosen = getattr(args, "output", None)
    if formats and chosen not in formats:
        return f"this command cannot print -o {chosen}: it prints {', '.join(formats)}"
    return None


def dump_structured(body, fmt: str) -> str:
    """JSON or YAML of plain data (the two structured formats every command can print)."""
    if fmt == "yaml":
        return yaml.safe_dump(body, sort_keys=False, allow_unicode=True).rstrip()
    return json.dumps(body, indent=2)


def format_duration(seconds) -> str:
    """Seconds with a unit: 0.0012 → '1.2ms', 300 → '5m', 93784 → '1d2h'."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    whole = int(round(seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            major, rest = divmod(whole, size)
            minor = rest // sub_size
            return f"{major}{unit}{minor}{sub_unit}" if minor else f"{major}{unit}"
    return f"{whole}s"


def _age(created, now: float) -> str:
    """kubectl's AGE column: the time since creation with a unit."""
    if created is None:
        return "-"
    return format_duration(max(0.0, float(int(now - float(created)))))  # whole seconds, as kubectl


def _row(kind: str, obj: dict, wide: bool, now: float) -> list[str]:
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
    age = _age(meta.get("creationTimestamp"), now)
    if kind == "Stitch":
        def end(e):
            return "/".join(x for x in (e.get("tenant"), e["network"], e.get("member")) if x)
        row = [meta.get("tenant", ""), meta["name"], spec["type"], end(spec["from"]), end(spec["to"]),
               format_bandwidth(status.get("reservedBandwidth", 0)), status.get("state", "-"),
               "→".join(status.get("path", [])) or "-", age]
        if wide:
            row += [format_bandwidth(spec.get("bandwidth") or 0),
                    format_duration(spec["maxLatency"]) if spec.get("maxLatency") is not None else "-",
                    str(spec.get("priority", "-")), _created(meta), status.get("message", "") or "-"]
        return row
    if kind == "VirtualNetwork":
        row = [meta.get("tenant", ""), meta["name"], str(spec["vnid"]), spec["cidr"],
               str(len(spec.get("members", []))), age]
        return row + [_created(meta)] if wide else row
    if kind == "Node":
        row = [meta["name"], spec.get("site") or "-", spec.get("trustZone", "default"), age]
        return row + [str(spec.get("computeCores", 0)), _created(meta)] if wide else row
    if kind == "Link":
        row = [meta["name"], " ↔ ".join(spec["endpoints"]), format_bandwidth(spec["capacity"]),
               format_duration(spec.get("latency")), spec.get("trustZone", "default"), age]
        return row + [spec.get("state", "up"), str(spec.get("cost", 1.0)), _created(meta)] if wide else row
    if kind == "ForecastPolicy":
        model = status.get("model") or {}
        row = [meta.get("tenant", ""), meta["name"], spec.get("mode", "auto"), spec.get("model", "-"),
               f"{model.get('state', 'waiting')}" + (f" v{model['version']}" if model.get("version") else ""),
               str(status.get("lastStep", "-")), str(status.get("stitches", 0)), status.get("message", "") or "-"]
        if wide:
            row += [format_duration(spec.get("interval")), str(spec.get("horizon", "-")),
                    f"p{spec['quantile'] * 100:.0f}" if spec.get("quantile") else "-",
                    _stamp(status.get("lastRun")), _created(meta)]
        return row
    if kind == "Intent":
        fulfilment = status.get("fulfilment", [])
        met = sum(1 for f in fulfilment if f.get("status") == "FULFILLED")
        row = [meta.get("tenant", ""), meta["name"], status.get("handlingState", "Received"),
               f"{met}/{len(spec.get('expectations', []))}", str(status.get("reportCount", 0)),
               status.get("message", "") or "-", age]
        return row + [str(spec.get("priority", 100)), _stamp(status.get("lastAssessed")), _created(meta)] if wide else row
    if kind == "Proposal":
        history = status.get("history", [])
        row = [meta.get("tenant", ""), meta["name"], f"{spec['requester']}/{spec['intent']}", spec["fromNetwork"],
               spec["network"], ", ".join(f"{s.get('protocol', 'tcp')}/{s.get('port', '*')}" for s in spec.get("services", []))
               or "-", status.get("state", "Pending"), age]
        return row + [spec.get("reason", "") or "-", history[-1].get("by", "-") if history else "-"] if wide else row
    if kind == "Anomaly":
        actions = status.get("actions", [])
        done = ", ".join(f"{a['type']} {a.get('state', '')}" for a in actions) or "-"
        row = [meta.get("tenant", ""), meta["name"], spec["kind"], ", ".join(spec.get("pairs", [])[:3]) or "-",
               f"{float(spec.get('score', 0)):.2f}", status.get("state", "Open"), done, _stamp(spec.get("start")),
               _stamp(status.get("end"))]
        return row + [spec.get("policy", "-"), spec.get("detector", "-"), ", ".join(spec.get("links", [])) or "-",
                      str(status.get("intervals", 1)), status.get("message", "") or "-"] if wide else row
    if kind == "AnomalyPolicy":
        row = [meta.get("tenant", ""), meta["name"], spec.get("mode", "suggest"), spec.get("detector", "residual"),
               "yes" if status.get("ready") else "no", str(status.get("open", 0)), status.get("message", "") or "-"]
        return row + [format_duration(spec.get("interval")), str(spec.get("minHistory", "-")),
                      _stamp(status.get("lastEnd")), _created(meta)] if wide else row
    if kind == "Site":
        row = [meta["name"], str(spec["asNumber"]), spec["routeManagerAddress"], spec["borderNode"],
               str(len(spec.get("nodes", []))), spec.get("trustLevel", "trusted"),
               format_bandwidth(float(spec.get("offeredBandwidth", 0))), age]
        return row + [spec.get("tunnelAddress") or spec["routeManagerAddress"], _created(meta)] if wide else row
    if kind == "SiteStitch":
        def site_end(e):
            return "/".join(x for x in (e.get("tenant"), e["network"]) if x)
        row = [meta.get("tenant", ""), meta["name"], site_end(spec["from"]), site_end(spec["to"]),
               format_bandwidth(float(spec.get("bandwidth", 0))), spec.get("tunnel", "wireguard"), age]
        return row + [format_duration(spec.get("maxLatency")), _created(meta)] if wide else row
    return [meta["name"], age]


def _stamp(seconds) -> str:
    """RFC 3339 to the second (JSON and YAML keep the fraction)."""
    return "-" if seconds is None else format_timestamp(int(float(seconds)))


def _created(meta: dict) -> str:
    return _stamp(meta.get("creationTimestamp"))


HEADERS = {
    "ForecastPolicy": ["TENANT", "NAME", "MODE", "MODEL", "STATE", "LAST", "STITCHES", "MESSAGE"],
    "Stitch": ["TENANT", "NAME", "TYPE", "FROM", "TO", "RESERVED", "STATE", "PATH", "AGE"],
    "VirtualNetwork": ["TENANT", "NAME", "VNID", "CIDR", "MEMBERS", "AGE"],
    "Node": ["NAME", "SITE", "ZONE", "AGE"],
    "Link": ["NAME", "ENDPOINTS", "CAPACITY", "LATENCY", "ZONE", "AGE"],
    "Intent": ["TENANT", "NAME", "STATE", "FULFILLED", "REPORTS", "MESSAGE", "AGE"],
    "Proposal": ["TENANT", "NAME", "FROM INTENT", "GROUP", "NETWORK", "SERVICES", "STATE", "AGE"],
    "Anomaly": ["TENANT", "NAME", "KIND", "PAIRS", "SCORE", "STATE", "ACTIONS", "START", "END"],
    "AnomalyPolicy": ["TENANT", "NAME", "MODE", "DETECTOR", "READY", "OPEN", "MESSAGE"],
    "Site": ["NAME", "AS", "ROUTE MANAGER", "BORDER", "NODES", "TRUST", "OFFERED", "AGE"],
    "SiteStitch": ["TENANT", "NAME", "FROM", "TO", "BANDWIDTH", "TUNNEL", "AGE"],
}
WIDE = {
    "ForecastPolicy": ["INTERVAL", "HORIZON", "QUANTILE", "LAST RUN", "CREATED"],
    "Stitch": ["BANDWIDTH", "MAX LATENCY", "PRIORITY", "CREATED", "MESSAGE"],
    "VirtualNetwork": ["CREATED"],
    "Node": ["CORES", "CREATED"],
    "Link": ["STATE", "COST", "CREATED"],
    "Intent": ["PRIORITY", "LAST ASSESSED", "CREATED"],
    "Proposal": ["REASON", "LAST BY"],
    "Anomaly": ["POLICY", "DETECTOR", "LINKS", "INTERVALS", "MESSAGE"],
    "AnomalyPolicy": ["INTERVAL", "MIN HISTORY", "LAST END", "CREATED"],
    "Site": ["VTEP", "CREATED"],
    "SiteStitch": ["MAX LATENCY", "CREATED"],   # its outcome is in the route managers' status.json
}


def wire_dict(obj) -> dict:
    """The object as a document to apply again: times as RFC 3339 UTC strings, bandwidths and durations
    with their units ('10Mbps', '30ms': a resource file must name them); a null is left out unless its field
    is required (the first `status.history[].from` is null, and the parser needs the key)."""
    dumped = obj.model_dump(by_alias=True, mode="json", context={**WIRE_TIMES, **WITH_UNITS})
    return _without_optional_nulls(obj, dumped)


def _without_optional_nulls(model, dumped):
    """`dumped` (the JSON dump of `model`) less the None values of fields that have a default."""
    from pydantic import BaseModel

    if isinstance(model, BaseModel) and isinstance(dumped, dict):
        for name, info in type(model).model_fields.items():
            key = info.alias or name
            if key not in dumped:
                continue
            if dumped[key] is None and not info.is_required():
                del dumped[key]
            else:
                dumped[key] = _without_optional_nulls(getattr(model, name), dumped[key])
    elif isinstance(model, (list, tuple)) and isinstance(dumped, list):
        dumped = [_without_optional_nulls(m, d) for m, d in zip(model, dumped)]
    elif isinstance(model, dict) and isinstance(dumped, dict):
        dumped = {k: (_without_optional_nulls(model[k], v) if k in model else v) for k, v in dumped.items()}
    return dumped


def render(kind: str, objects: list, fmt: str, single: bool = False, now: float | None = None) -> str:
    cls = kind_class(kind)
    if fmt == "name":
        return "\n".join(f"{cls.KIND.lower()}/{o.metadata.name}" for o in objects)
    if fmt in ("json", "yaml"):
        dicts = [wire_dict(o) for o in objects]
        if fmt == "json":
            return json.dumps(dicts[0] if single else dicts, indent=2)
        return yaml.safe_dump_all(dicts, sort_keys=False, allow_unicode=True).rstrip()
    dicts = [o.to_dict() for o in objects]  # unix seconds: the AGE column is arithmetic on them
    now = time.time() if now is None else now
    wide = fmt == "wide"
    head = HEADERS.get(cls.KIND, ["NAME", "AGE"]) + (WIDE.get(cls.KIND, []) if wide else [])
    rows = [head] + [_row(cls.KIND, d, wide, now) for d in dicts]
    if len(rows) == 1:
        return f"No {cls.PLURAL} found."
    return table(rows)


def table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
