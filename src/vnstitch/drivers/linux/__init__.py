"""The `linux` data-plane driver: namespaces, VXLAN, wireguard-go, tc HTB and nftables."""

from __future__ import annotations

from vnstitch.drivers.base import Driver
from vnstitch.drivers.linux.driver import LinuxDriver


def create_driver(state_dir: str | None = None) -> Driver:
    """The driver over the lab in `state_dir` (default $VNSTITCH_LAB_DIR or /run/vnstitch/lab)."""
    return LinuxDriver(state_dir)


__all__ = ["LinuxDriver", "create_driver"]
