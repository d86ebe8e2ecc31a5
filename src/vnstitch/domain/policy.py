"""Security policy: a stitch needs both sides' policies to allow it.

Another tenant's network is *visible* to one of ours exactly when its policy lets ours stitch to
it; an invisible network answers every question as if it did not exist.
"""

from __future__ import annotations

from vnstitch.domain.vnet import LabelSelector, VirtualNetwork
from vnstitch.errors import PolicyDenied


def _allows(owner: VirtualNetwork, tenant: str, name: str, labels: dict[str, str] | None) -> bool:
    """Does `owner`'s policy let it be stitched to network `tenant/name`? `labels` None: not known
    to the asker, so a label selector counts as matching (the answer may not depend on them)."""
    policy = owner.spec.policy
    same_tenant = owner.metadata.tenant == tenant
    if policy is None or policy.allow_stitch_to is None:
        return same_tenant
    for rule in policy.allow_stitch_to:
        if isinstance(rule, LabelSelector):
            tenant_ok = rule.tenant == "*" or rule.tenant == tenant or (rule.tenant is None and same_tenant)
            if tenant_ok and (labels is None or all(labels.get(k) == v for k, v in rule.match_labels.items())):
                return True
        else:
            rule_tenant, _, rule_name = rule.rpartition("/")
            if rule_name in (name, "*") and (rule_tenant or owner.metadata.tenant) == tenant:
                return True
    return False


def visible_to(network: VirtualNetwork, viewer: VirtualNetwork) -> bool:
    """May `viewer` (a network of another tenant) see `network`? Only when `network` accepts it."""
    return _allows(network, viewer.metadata.tenant, viewer.metadata.name, dict(viewer.metadata.labels))


def check_side(owner: VirtualNetwork, peer_tenant: str, peer_name: str, peer_labels: dict[str, str] | None,
               encrypted: bool, side: str) -> None:
    """Raise PolicyDenied when `owner`'s own policy refuses the peer (labels None: the peer is
    not visible, so only a refusal that holds whatever its labels counts)."""
    if owner.metadata.name == peer_name and owner.metadata.tenant == peer_tenant:
        return
    if not _allows(owner, peer_tenant, peer_name, peer_labels):
        raise PolicyDenied(f"network '{owner.metadata.tenant}/{owner.metadata.name}' does not allow stitching to "
                           f"'{peer_tenant}/{peer_name}'", field=side)
    if not encrypted and not (owner.spec.policy and owner.spec.policy.allow_unencrypted):
        raise PolicyDenied(f"network '{owner.metadata.tenant}/{owner.metadata.name}' requires encryption "
                           "(set spec.policy.allowUnencrypted to accept an unencrypted stitch)", field=side)


def check_policies(a: VirtualNetwork, b: VirtualNetwork, encrypted: bool = True,
                   sides: tuple[str, str] = ("spec.from", "spec.to")) -> frozenset[str] | None:
    """Raise PolicyDenied naming the refusing side; return the trust zones the path may use."""
    for side, owner, peer in ((sides[0], a, b), (sides[1], b, a)):
        check_side(owner, peer.metadata.tenant, peer.metadata.name, dict(peer.metadata.labels), encrypted, side)
    zones: frozenset[str] | None = None
    for net in (a, b):
        allowed = net.spec.policy.allowed_trust_zones if net.spec.policy else None
        if allowed is not None:
            zones = frozenset(allowed) if zones is None else zones & frozenset(allowed)
    return zones

