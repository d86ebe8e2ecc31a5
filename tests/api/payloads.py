"""Request bodies the API tests share."""

from __future__ import annotations

ROLES = ("none", "other", "reader", "member", "admin")


def vnet(name: str, vnid: int, cidr: str, members: list[tuple[str, str, str]], **extra) -> dict:
    spec = {"vnid": vnid, "cidr": cidr, "members": [{"name": m, "node": n, "address": a} for m, n, a in members]}
    spec.update(extra)
    return {"apiVersion": "vnstitch.io/v1", "kind": "VirtualNetwork", "metadata": {"name": name}, "spec": spec}


def stitch(name: str, src: str, dst: str, bandwidth="10Mbps", **extra) -> dict:
    spec = {"type": "bandwidth", "from": {"network": src}, "to": {"network": dst}, "bandwidth": bandwidth}
    spec.update(extra)
    return {"apiVersion": "vnstitch.io/v1", "kind": "Stitch", "metadata": {"name": name}, "spec": spec}
