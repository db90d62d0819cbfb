"""A real headless Chromium for page tests, driven by Playwright.

Playwright's own browser download is not used: tests run Debian's ``chromium``
package (``apt-get install chromium``) through ``executable_path``. Without it
the test skips, or fails when CI sets HERALD_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.helpers.servers import Herald
from tests.helpers.services import require

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VIEWPORT: ViewportSize = {"width": 1000, "height": 650}
#: how long a page assertion waits (reconnects back off for a while on a busy CI machine)
WAIT_MS = 10_000

# Headless in a container: no sandbox (often no user namespaces), no GPU, and none of
# the background traffic (updates, sync, QUIC probes) that would leave 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Launch headless Chromium; closed (with its processes) on exit."""
    executable = require("chromium", "apt-get install chromium; Playwright's own download is not used")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser, url: str) -> Iterator[Page]:
    """A page in its own browser context (its own cookies and storage, like another person)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    crashes: list[str] = []
    page.on("pageerror", lambda error: crashes.append(str(error)))
    try:
        page.goto(url)
        yield page
        assert crashes == [], f"uncaught JavaScript errors on {url}"
    finally:
        context.close()


def joined(page: Page, replica: Herald) -> None:
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#replica")).to_have_text(f"served by replica {replica.replica_id}")


def say(page: Page, text: str) -> None:
    page.locator("#message-input").fill(text)
    page.locator("#message-input").press("Enter")
    expect(page.locator("#message-input")).to_have_value("")
