"""Data-plane drivers; `create_driver(name)` is the explicit registry."""

from __future__ import annotations

from vnstitch.drivers.base import Driver, Observed, ObservedNetwork, ObservedStitch
from vnstitch.errors import InvalidInput

DRIVERS = ("sim", "linux")


def create_driver(name: str, state_path: str | None = None, topology=None) -> Driver:
    """'sim' (state in a JSON file when `state_path` is given) or 'linux' (needs root)."""
    if name == "sim":
        from vnstitch.drivers.sim import SimDriver

        return SimDriver(state_path=state_path, topology=topology)
    if name == "linux":
        from vnstitch.drivers.linux import create_driver as create_linux

        return create_linux(state_dir=state_path)
    raise InvalidInput(f"unknown driver '{name}' (valid: {', '.join(DRIVERS)})", field="--driver")


__all__ = ["Driver", "Observed", "ObservedNetwork", "ObservedStitch", "create_driver", "DRIVERS"]
