"""Render resources as a table, JSON or YAML."""

from __future__ import annotations

import json

import yaml

from vnstitch.domain.registry import kind_class
from vnstitch.units import format_bandwidth


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g}ms"


def _row(kind: str, obj: dict) -> list[str]:
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
    if kind == "Stitch":
        def end(e):
            return "/".join(x for x in (e.get("tenant"), e["network"], e.get("member")) if x)
        return [meta.get("tenant", ""), meta["name"], spec["type"], end(spec["from"]), end(spec["to"]),
                format_bandwidth(status.get("reservedBandwidth", 0)), status.get("state", "-"),
                "→".join(status.get("path", [])) or "-"]
    if kind == "VirtualNetwork":
        return [meta.get("tenant", ""), meta["name"], str(spec["vnid"]), spec["cidr"], str(len(spec.get("members", [])))]
    if kind == "Node":
        return [meta["name"], spec.get("site") or "-", spec.get("trustZone", "default")]
    if kind == "Link":
        return [meta["name"], " ↔ ".join(spec["endpoints"]), format_bandwidth(spec["capacity"]),
                _ms(spec.get("latency")), spec.get("trustZone", "default")]
    if kind == "ForecastPolicy":
        model = status.get("model") or {}
        return [meta.get("tenant", ""), meta["name"], spec.get("mode", "auto"), spec.get("model", "-"),
                f"{model.get('state', 'waiting')}" + (f" v{model['version']}" if model.get("version") else ""),
                str(status.get("lastStep", "-")), str(status.get("stitches", 0)), status.get("message", "") or "-"]
    return [meta["name"]]


HEADERS = {
    "ForecastPolicy": ["TENANT", "NAME", "MODE", "MODEL", "STATE", "LAST", "STITCHES", "MESSAGE"],
    "Stitch": ["TENANT", "NAME", "TYPE", "FROM", "TO", "RESERVED", "STATE", "PATH"],
    "VirtualNetwork": ["TENANT", "NAME", "VNID", "CIDR", "MEMBERS"],
    "Node": ["NAME", "SITE", "ZONE"],
    "Link": ["NAME", "ENDPOINTS", "CAPACITY", "LATENCY", "ZONE"],
}


def render(kind: str, objects: list, fmt: str, single: bool = False) -> str:
    dicts = [o.to_dict() for o in objects]
    if fmt == "json":
        return json.dumps(dicts[0] if single else dicts, indent=2)
    if fmt == "yaml":
        return yaml.safe_dump_all(dicts, sort_keys=False, allow_unicode=True).rstrip()
    cls = kind_class(kind)
    rows = [HEADERS[cls.KIND]] + [_row(cls.KIND, d) for d in dicts]
    if len(rows) == 1:
        return f"No {cls.PLURAL} found."
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
