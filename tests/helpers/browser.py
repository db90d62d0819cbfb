"""A real headless Chromium for page tests, driven by Playwright.

Playwright's own browser download is not used: tests run Debian's ``chromium``
package (``apt-get install chromium``) through ``executable_path``. Without it
the test skips, or fails when CI sets HERALD_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.helpers.services import require

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

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
