"""Small builders for resource documents used across tests."""

from vnstitch.domain.registry import parse_resource


def vnet(name, vnid, cidr, members=(), tenant="acme", policy=None, labels=None):
    doc = {"kind": "VirtualNetwork", "metadata": {"name": name, "tenant": tenant, "labels": labels or {}},
           "spec": {"vnid": vnid, "cidr": cidr,
                    "members": [{"name": m, "node": n, "address": a} for m, n, a in members]}}
    if policy is not None:
        doc["spec"]["policy"] = policy
    return parse_resource(doc)


def stitch(name, src, dst, bandwidth="1Gbps", tenant="acme", type="bandwidth", **spec):
    def end(text):
        parts = text.split("/")
        out = {"network": parts[0]}
        if len(parts) > 1:
            out["member"] = parts[1]
        return out

    doc = {"kind": "Stitch", "metadata": {"name": name, "tenant": tenant},
           "spec": {"type": type, "from": spec.pop("from_", None) or end(src), "to": spec.pop("to_", None) or end(dst),
                    "bandwidth": bandwidth, **spec}}
    return parse_resource(doc)
