"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright for Python with the
system browser (`executable_path`; no browser download), against a real server seeded like the demo.

Without chromium or playwright the tests skip with the reason, except under CI=true, where a tier that
cannot run fails (tests/tiers.py). Screenshots go to $VNSTITCH_BROWSER_ARTEFACTS (default out/browser/)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.tiers import require_tier

CHROMIUM = os.environ.get("VNSTITCH_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("VNSTITCH_BROWSER_ARTEFACTS", ROOT / "out" / "browser"))


def _why_no_browser() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is not installed: run scripts/system-deps.sh (Debian package chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"cannot import playwright ({exc}): pip install -e '.[test]'"
    return None


require_tier("browser", _why_no_browser())

from playwright.sync_api import sync_playwright  # noqa: E402 - after the tier check

from tests.browser.server import Traffic, abilene_demands, seed_abilene, start_server  # noqa: E402


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS


# Module, not session: sync Playwright keeps an asyncio loop running in this thread until it stops, and
# later tests (pyroute2 in tests/linux) need the thread's loop free.
@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The Abilene substrate, acme's and globex's networks and stitches, traffic carried through the simulated
    data plane, and acme's forecast policy: ready once the loop has made a forecast stitch."""
    from vnstitch.data import data_path

    served = start_server(tmp_path_factory.mktemp("dashboard"), data_path("abilene.xml"))
    try:
        seed_abilene(served)
        served.traffic = Traffic(served, abilene_demands).start()
        deadline = time.monotonic() + 60
        while True:
            stitches = served.ok("acme", "GET", "/v1/stitches")["items"]
            forecast = [s for s in stitches if s["spec"]["origin"] == "forecast" and s["status"]["state"] == "ACTIVE"]
            measured = [s for s in stitches if s["status"]["measured"].get("throughput")]
            if forecast and measured:
                break
            assert time.monotonic() < deadline, served.ok("acme", "GET", "/v1/forecastpolicies/fc")["status"]
            time.sleep(0.5)
        yield served
    finally:
        served.stop()


class Console:
    """What a page said: console errors, uncaught exceptions and dialogs (an alert would mean injected markup ran)."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

        def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            dialog.dismiss()
        page.on("dialog", on_dialog)


@pytest.fixture
def open_page(browser):
    """open_page() → (page, console); closed after the test."""
    contexts = []

    def factory(width: int = 1400, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        return page, Console(page)

    yield factory
    for context in contexts:
        context.close()


def sign_in(page, served, who: str, url: str | None = None) -> None:
    page.goto((url or served.url) + "/ui/")
    page.fill("#token", served.tokens[who])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view-topology[data-ready=true]", timeout=15_000)


def screenshot(page, artefacts: Path, name: str) -> Path:
    path = artefacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_until(page, expression: str, timeout_s: float = 30.0):
    """Poll `expression` (a JS function source) until it returns something truthy. page.wait_for_function
    compiles its predicate with eval inside the page, which the dashboard's CSP forbids (as it should)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {expression}"
        time.sleep(0.1)
