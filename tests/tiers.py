"""Tiers that need a tool (root, etcd, Prometheus, TUN…): skipped with the reason on a developer
machine, failed with the reason under CI=true, where a tier that cannot run must not pass silently.

VNSTITCH_TEST_MISSING_TIERS=linux,etcd makes those tiers behave as if their tool were missing (the
tests of this helper use it; so can anyone checking what CI would say)."""

from __future__ import annotations

import os

import pytest

FORCE_MISSING_ENV = "VNSTITCH_TEST_MISSING_TIERS"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def forced_missing(name: str) -> str | None:
    """The reason to give when `name` is listed in VNSTITCH_TEST_MISSING_TIERS, else None."""
    listed = {part.strip() for part in os.environ.get(FORCE_MISSING_ENV, "").split(",") if part.strip()}
    return f"{FORCE_MISSING_ENV} lists {name!r}" if name in listed else None


def why_missing(name: str, reason: str | None) -> str | None:
    """`reason` (why the tier cannot run here), or the forced one, or None when it can run."""
    return reason or forced_missing(name)


def require_tier(name: str, reason: str | None) -> None:
    """Return when the tier can run (reason None and not forced missing); otherwise skip with the
    reason, or fail with it under CI=true."""
    reason = why_missing(name, reason)
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"tier {name!r} cannot run: {reason}; CI=true, so a tier that cannot run fails", pytrace=False)
    print(f"\nskipping tier {name!r}: {reason}")
    pytest.skip(f"tier {name!r}: {reason}", allow_module_level=True)


def import_or_require(module: str, tier: str, hint: str):
    """`pytest.importorskip` that fails under CI=true (a test dependency missing there is a broken setup)."""
    import importlib

    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        require_tier(tier, f"cannot import {module} ({exc}): {hint}")
        raise  # not reached: require_tier skips or fails
    require_tier(tier, None)
    return imported
