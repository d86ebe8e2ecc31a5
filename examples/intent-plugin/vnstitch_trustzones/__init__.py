"""An intent translator from outside vnstitch: `expect trustZones(zones='core,campus')`."""

from __future__ import annotations

from vnstitch.errors import InvalidInput
from vnstitch.intent.translators import Compiled, check_targets, fulfilled, not_fulfilled


def _zones(exp, where: str = "parameters") -> list[str]:
    text = exp.parameters.get("zones")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("trustZones needs zones='zone[,zone…]'", field=f"{where}.parameters.zones")
    return sorted({z.strip() for z in text.split(",") if z.strip()})


class TrustZones:
    type = "trustZones"
    targets: frozenset[str] = frozenset()
    capabilities = frozenset({"policy"})

    def validate(self, exp, ctx, where: str) -> None:
        check_targets(self, exp, where)
        unknown = set(exp.parameters) - {"zones"}
        if unknown:
            raise InvalidInput(f"trustZones takes only zones (not {', '.join(sorted(unknown))})",
                               field=f"{where}.parameters")
        _zones(exp, where)
        ctx.group(exp, where)

    def compile(self, exp, ctx) -> Compiled:
        group = ctx.group(exp, "object")
        out = Compiled()
        out.policy.append((group, {"allowedTrustZones": _zones(exp)}))
        out.rules.append(f"{group.key}: stitches stay in trust zones {', '.join(_zones(exp))}")
        return out

    def assess(self, exp, ctx):
        group = ctx.group(exp, "object")
        zones = _zones(exp)
        policy = group.vnet.spec.policy if group.vnet is not None else None
        have = sorted(policy.allowed_trust_zones or []) if policy and policy.allowed_trust_zones is not None else None
        if have != zones:
            return not_fulfilled("DEGRADED", f"{group.key} allows trust zones {have}, not {zones}",
                                 [("tighten", group.key, "trust zones differ")])
        return fulfilled(f"{group.key} stays in {', '.join(zones)}", zones=",".join(zones))
