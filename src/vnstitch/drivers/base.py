"""The data-plane driver contract: apply idempotent ops, observe what really exists."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vnstitch.planning.observed import Observed, ObservedNetwork, ObservedStitch
from vnstitch.planning.ops import Op

__all__ = ["Driver", "Observed", "ObservedNetwork", "ObservedStitch"]


@runtime_checkable
class Driver(Protocol):
    """A data plane. `apply` returns True when it changed something, False when already so."""

    name: str
    capabilities: frozenset[str]   # e.g. {"encryption", "rate_limit", "counters", "reachability"}

    def apply(self, op: Op) -> bool: ...

    def observe(self) -> Observed: ...

    def close(self) -> None: ...
