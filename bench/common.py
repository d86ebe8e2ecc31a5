"""Helpers shared by the benchmarks (run as `python bench/<name>.py` from the repository root)."""

from __future__ import annotations

import time

import httpx


def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    """Until the server at `url` answers /healthz with 200; exits the benchmark when it does not start."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.1)
