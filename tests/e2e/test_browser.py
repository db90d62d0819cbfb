"""The web page at ``/`` in a real headless Chromium, against two real replicas
sharing one redis-server: what two people on two different replicas see."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers.browser import ARTIFACTS, WAIT_MS, chromium, joined, open_page, say
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
# Set to 1 to refresh the README's screenshot from a run of the books test.
UPDATE_SCREENSHOT_ENV = "HERALD_UPDATE_SCREENSHOT"


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Herald, Herald]]:
    logs = tmp_path_factory.mktemp("browser")
    env = {"HERALD_KEY_PREFIX": f"b{uuid.uuid4().hex[:8]}"}
    one = Herald(logs, redis_server.url, "replica-one", **env).start()
    two = Herald(logs, redis_server.url, "replica-two", **env).start()
    yield one, two
    one.stop()
    two.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)  # reconnects back off for a while on a busy CI machine
    with chromium() as browser:
        yield browser


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:6]}"


def screenshot(page: Page, name: str, for_docs: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png")
    if for_docs and os.environ.get(UPDATE_SCREENSHOT_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOT)


def graphql_wired(replica: Herald) -> bool:
    response = httpx.post(f"{replica.http}/graphql", json={"query": "{ __typename }"}, timeout=5)
    return response.status_code == 200


def test_two_pages_on_two_replicas_chat_and_see_each_other(
    replicas: tuple[Herald, Herald], browser: Browser, room: str
) -> None:
    one, two = replicas
    with open_page(browser, f"{one.http}/?room={room}&user=alice") as alice:
        joined(alice, one)
        with open_page(browser, f"{two.http}/?room={room}&user=bob") as bob:
            joined(bob, two)
            for page in (alice, bob):
                expect(page.locator("#presence li")).to_have_text(["alice", "bob"])
                expect(page.locator("#room-title")).to_have_text(f"#{room}")
            expect(alice.locator("#messages .system")).to_have_text(["bob joined"])

            say(alice, "Hello from replica one")
            say(bob, "Hi Alice, replica two here")
            for page in (alice, bob):
                expect(page.locator("#messages .message .text")).to_have_text(
                    ["Hello from replica one", "Hi Alice, replica two here"]
                )
            # Each page marks its own lines: the sender is who the server says.
            expect(alice.locator("#messages .message.mine .user")).to_have_text(["alice"])
            expect(bob.locator("#messages .message.mine .user")).to_have_text(["bob"])
            screenshot(alice, "chat-alice")
            screenshot(bob, "chat-bob")

        # Bob closed his tab: Alice's replica hears it through Redis.
        expect(alice.locator("#messages .system")).to_have_text(["bob joined", "bob left"])
        expect(alice.locator("#presence li")).to_have_text(["alice"])

        # A latecomer gets the room's history, each message once, then live ones.
        with open_page(browser, f"{two.http}/?room={room}&user=carol") as carol:
            joined(carol, two)
            expect(carol.locator("#messages .message .text")).to_have_text(
                ["Hello from replica one", "Hi Alice, replica two here"]
            )
            say(alice, "Welcome, Carol")
            expect(carol.locator("#messages .message .text")).to_have_text(
                ["Hello from replica one", "Hi Alice, replica two here", "Welcome, Carol"]
            )


def test_a_page_whose_replica_restarts_reconnects_and_misses_nothing(
    replicas: tuple[Herald, Herald], browser: Browser, room: str
) -> None:
    one, two = replicas
    with (
        open_page(browser, f"{one.http}/?room={room}&user=alice") as alice,
        open_page(browser, f"{two.http}/?room={room}&user=bob") as bob,
    ):
        joined(alice, one)
        joined(bob, two)
        say(bob, "before")
        expect(alice.locator("#messages .message .text")).to_have_text(["before"])

        assert one.terminate() in (0, -signal.SIGTERM)  # alice's socket closes 1012
        expect(alice.locator("#status")).to_have_text("reconnecting…")
        say(bob, "while you were away")
        one.start()  # same port: the page retries the address it was loaded from

        joined(alice, one)
        say(bob, "after")
        # Replayed with since, then live: in order, nothing missing, nothing twice.
        expect(alice.locator("#messages .message .text")).to_have_text(["before", "while you were away", "after"])


def add_book_in_page(page: Page, isbn: str, title: str, author: str) -> None:
    page.locator("#book-isbn").fill(isbn)
    page.locator("#book-title").fill(title)
    page.locator("#book-author").fill(author)
    page.locator("#add-book").click()


def test_books_added_over_http_or_in_the_page_appear_live_on_both_pages(
    replicas: tuple[Herald, Herald], browser: Browser, room: str
) -> None:
    one, two = replicas
    stamp = uuid.uuid4().int % 10**8
    by_http, by_page = f"97800{stamp:08d}", f"97811{stamp:08d}"
    with (
        open_page(browser, f"{one.http}/?room={room}&user=alice") as alice,
        open_page(browser, f"{two.http}/?room={room}&user=bob") as bob,
    ):
        joined(alice, one)
        joined(bob, two)
        for page in (alice, bob):
            expect(page.locator("#books-status")).to_have_text("live")  # graphql-transport-ws newBook

        response = httpx.post(
            f"{one.http}/api/books", json={"isbn": by_http, "title": "Dune", "author": "Frank Herbert"}, timeout=5
        )
        assert response.status_code == 201, response.text
        for page in (alice, bob):
            book = page.locator(f"#books li[data-isbn='{by_http}']")
            expect(book).to_contain_text("Dune by Frank Herbert")

        # Bob adds one with the page's own form (REST through his replica); Alice's list grows live.
        add_book_in_page(bob, by_page, "The Left Hand of Darkness", "Ursula K. Le Guin")
        expect(bob.locator("#book-result")).to_have_text("Added “The Left Hand of Darkness”.")
        for page in (alice, bob):
            expect(page.locator("#books li")).to_have_count(2)
            expect(page.locator("#books li").first).to_have_attribute("data-isbn", by_page)  # newest first

        # The same ISBN again is refused, and said so; nothing new is listed.
        add_book_in_page(bob, by_page, "Again", "Someone")
        expect(bob.locator("#book-result")).to_have_text("A book with that ISBN already exists.")
        expect(alice.locator("#books li")).to_have_count(2)

        say(bob, "Just added a classic to the shelf")
        say(alice, "Saw it arrive live, thanks!")
        expect(alice.locator("#messages .message")).to_have_count(2)
        screenshot(alice, "books-alice", for_docs=True)
