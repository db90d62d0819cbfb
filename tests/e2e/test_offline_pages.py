"""Every page works offline (issue 15, item 3): the web page, /docs and GraphiQL at /graphql load in a real headless
Chromium in which every request that leaves 127.0.0.1 is refused and recorded. A page that needs a CDN fails
twice: the recorded request, and the page not rendering."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers.browser import chromium
from tests.helpers.servers import Herald

pytestmark = [pytest.mark.e2e]

WAIT_MS = 15_000
LOOPBACK = {"127.0.0.1"}


@pytest.fixture(scope="module")
def herald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    server = Herald(tmp_path_factory.mktemp("offline"), "memory://", "offline").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@contextmanager
def offline_page(browser: Browser, url: str) -> Iterator[Page]:
    """A page whose every non-loopback request is aborted; on exit, none may have been attempted."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    off_host: list[str] = []
    crashes: list[str] = []

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith("data:"):
            route.continue_()
        else:
            off_host.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: crashes.append(str(error)))
    try:
        page.goto(url)
        yield page
        assert off_host == [], f"{url} requested off-host resources"
        assert crashes == [], f"uncaught JavaScript errors on {url}"
    finally:
        context.close()


def test_swagger_ui_renders_every_route_offline(browser: Browser, herald: Herald) -> None:
    with offline_page(browser, f"{herald.http}/docs") as page:
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Herald", timeout=WAIT_MS)
        expect(page.locator(".opblock-summary-path", has_text="/api/chat/{room}/messages").first).to_be_visible()
        expect(page.locator(".opblock-summary-path", has_text="/graphql").first).to_be_visible()


def test_the_web_page_works_offline(browser: Browser, herald: Herald) -> None:
    with offline_page(browser, f"{herald.http}/?room=offline&user=ada") as page:
        expect(page.locator("#status")).to_have_text("connected", timeout=WAIT_MS)
        expect(page.locator("#replica")).to_have_text("served by replica offline")


def test_redoc_is_not_served_since_it_cannot_work_offline(herald: Herald) -> None:
    assert httpx.get(f"{herald.http}/redoc", timeout=5).status_code == 404


def set_query(page: Page, text: str) -> None:
    page.evaluate(
        "(text) => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(text)", text
    )


def response_text(page: Page) -> str:
    return str(page.evaluate("() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"))


def run(page: Page) -> None:
    page.locator(".graphiql-execute-button").click()


def test_graphiql_explores_the_schema_completes_runs_a_query_and_a_subscription_offline(
    browser: Browser, herald: Herald
) -> None:
    with offline_page(browser, f"{herald.http}/graphql") as page:
        expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible()

        # The schema explorer (introspection over HTTP).
        page.get_by_label("Show Documentation Explorer").click()
        page.locator(".graphiql-doc-explorer").get_by_text("Query", exact=True).first.click()
        expect(page.locator(".graphiql-doc-explorer")).to_contain_text("books")

        # Autocomplete from the schema.
        set_query(page, "")
        page.locator(".graphiql-query-editor .CodeMirror").click()
        page.keyboard.type("{ boo")
        expect(page.locator(".CodeMirror-hints")).to_contain_text("books")
        page.keyboard.press("Escape")

        # A mutation and a query over HTTP.
        isbn = f"97800000{uuid.uuid4().int % 100000:05d}"
        set_query(page, f'mutation {{ addBook(isbn: "{isbn}", title: "Offline", author: "Ada") {{ isbn }} }}')
        run(page)
        page.wait_for_function(
            "(isbn) => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue().includes(isbn)",
            arg=isbn,
        )
        set_query(page, "{ books(limit: 1) { isbn title author } }")
        run(page)
        page.wait_for_function(
            "() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue().includes('Offline')"
        )
        assert '"author": "Ada"' in response_text(page)

        # A subscription over graphql-transport-ws: it sees a book added by someone else. GraphiQL decides
        # "subscription, so WebSocket" from its own parse of the editor, which ignores setValue() and lags typing
        # a little (debounced): type it as a person would, and run again until the WebSocket opens (bounded).
        set_query(page, "")
        page.locator(".graphiql-query-editor .CodeMirror").click()
        page.keyboard.type("subscription { newBook { isbn title } }")
        sockets: list[str] = []
        for _ in range(5):
            try:
                with page.expect_websocket(timeout=3000) as opened:
                    run(page)
                sockets.append(opened.value.url)
                break
            except PlaywrightTimeoutError:
                continue
        assert sockets == [herald.ws + "/graphql"]
        live = f"97811111{uuid.uuid4().int % 100000:05d}"
        mutation = f'mutation {{ addBook(isbn: "{live}", title: "Live", author: "Bob") {{ isbn }} }}'
        # The subscribe frame has no acknowledgement: publish until the live result shows (bounded).
        for attempt in range(20):
            isbn_n = live if attempt == 0 else f"{live[:-2]}{attempt:02d}"
            body = {"query": mutation.replace(live, isbn_n)}
            assert httpx.post(f"{herald.http}/graphql", json=body, timeout=5).status_code == 200
            try:
                page.wait_for_function(
                    "() => document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
                    ".includes('\"Live\"')",
                    timeout=500,
                )
                break
            except PlaywrightTimeoutError:  # not shown: the subscription was not registered before this publish
                continue
        assert '"newBook"' in response_text(page)
        assert '"Live"' in response_text(page)


def test_the_vendored_assets_keep_their_licences() -> None:
    vendor = Path(__file__).resolve().parents[2] / "api" / "static" / "vendor"
    for package in ("graphiql", "react", "react-dom", "graphql-ws"):
        assert any((vendor / package).glob("LICENSE*")), package
