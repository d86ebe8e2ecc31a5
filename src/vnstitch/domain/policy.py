"""Security policy: a stitch needs both sides' policies to allow it."""

from __future__ import annotations

from vnstitch.domain.stitch import StitchSpec
from vnstitch.domain.vnet import LabelSelector, VirtualNetwork
from vnstitch.errors import PolicyDenied


def _allows(owner: VirtualNetwork, peer: VirtualNetwork) -> bool:
    """Does `owner`'s policy let it be stitched to `peer`?"""
    policy = owner.spec.policy
    same_tenant = owner.metadata.tenant == peer.metadata.tenant
    if policy is None or policy.allow_stitch_to is None:
        return same_tenant
    for rule in policy.allow_stitch_to:
        if isinstance(rule, LabelSelector):
            tenant_ok = (rule.tenant == "*" or rule.tenant == peer.metadata.tenant
                         or (rule.tenant is None and same_tenant))
            if tenant_ok and all(peer.metadata.labels.get(k) == v for k, v in rule.match_labels.items()):
                return True
        else:
            tenant, _, name = rule.rpartition("/")
            if name in (peer.metadata.name, "*") and (tenant or owner.metadata.tenant) == peer.metadata.tenant:
                return True
    return False


def check_stitch_policy(spec: StitchSpec, a: VirtualNetwork, b: VirtualNetwork) -> frozenset[str] | None:
    """Raise PolicyDenied naming the refusing side; return the trust zones the path may use."""
    for side, owner, peer in (("spec.from", a, b), ("spec.to", b, a)):
        if owner.metadata.name == peer.metadata.name and owner.metadata.tenant == peer.metadata.tenant:
            continue
        if not _allows(owner, peer):
            raise PolicyDenied(
                f"network '{owner.metadata.tenant}/{owner.metadata.name}' does not allow stitching to "
                f"'{peer.metadata.tenant}/{peer.metadata.name}'", field=side)
        if not spec.encrypted and not (owner.spec.policy and owner.spec.policy.allow_unencrypted):
            raise PolicyDenied(
                f"network '{owner.metadata.tenant}/{owner.metadata.name}' requires encryption "
                "(set spec.policy.allowUnencrypted to accept an unencrypted stitch)", field=side)
    zones: frozenset[str] | None = None
    for net in (a, b):
        allowed = net.spec.policy.allowed_trust_zones if net.spec.policy else None
        if allowed is not None:
            zones = frozenset(allowed) if zones is None else zones & frozenset(allowed)
    return zones
