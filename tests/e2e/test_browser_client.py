"""herald.js (SPEC §11) in a real headless Chromium against real replicas: its API in a page, and the
web page built on it through the repo's nginx: a replica SIGKILLed mid-stream, a trimmed history
(``recovered: false``), and a proxy that passes no WebSocket (the client falls back to SSE)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from api.auth import Auth
from tests.helpers.browser import WAIT_MS, chromium, joined, open_page, say
from tests.helpers.nginx import run_nginx
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

#: a killed replica's clients back off and come back through nginx: more than one page assertion's wait
RECOVER_MS = 30_000
SECRET = "browser-client-test-secret-of-32-bytes"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=WAIT_MS)
    with chromium() as browser:
        yield browser


@pytest.fixture
def pair(redis_server: RedisServer, herald_factory: Callable[..., Herald]) -> tuple[Herald, Herald]:
    return herald_factory(redis_server.url), herald_factory(redis_server.url)


def post(herald: Herald, room: str, text: str) -> str:
    response = httpx.post(f"{herald.http}/api/chat/{room}/messages", json={"text": text}, timeout=5)
    assert response.status_code == 202, response.text
    offset: str = response.json()["id"]
    return offset


# The client's own API, imported into a page of the replica's origin (no app.js involved).
OPEN_ROOM = """async ([room, user]) => {
  const { Herald } = await import("/static/herald.js");
  window.frames = [];
  window.herald = new Herald({ url: location.origin, user });
  await new Promise((opened, failed) => {
    window.room = herald.room(room, {
      onFrame: (frame) => window.frames.push(frame),
      onState: (state) => state === "open" && opened(),
      onError: failed,
    });
  });
  return { replica: window.room.replica, transport: window.room.transport, offset: window.room.offset };
}"""


def frames(page: Page, kind: str) -> list[dict[str, object]]:
    got: list[dict[str, object]] = page.evaluate(f"window.frames.filter((f) => f.type === {kind!r})")
    return got


def test_herald_js_rooms_on_two_replicas_send_receive_and_ask_presence(
    pair: tuple[Herald, Herald], browser: Browser, room: str
) -> None:
    one, two = pair
    with open_page(browser, f"{one.http}/health") as alice, open_page(browser, f"{two.http}/health") as bob:
        assert alice.evaluate(OPEN_ROOM, [room, "alice"]) == {
            "replica": one.replica_id,
            "transport": "websocket",
            "offset": "0",
        }
        assert bob.evaluate(OPEN_ROOM, [room, "bob"])["replica"] == two.replica_id
        alice.wait_for_function("window.frames.some((f) => f.type === 'join' && f.user === 'bob')")

        offset = alice.evaluate("room.send('hello from one')")  # resolves once acknowledged
        from_http = post(two, room, "hello over HTTP")
        bob.wait_for_function("window.frames.filter((f) => f.type === 'message').length === 2")
        seen = [(m["id"], m["user"], m["text"]) for m in frames(bob, "message")]
        assert seen == [(offset, "alice", "hello from one"), (from_http, "anonymous", "hello over HTTP")]
        assert alice.evaluate("room.offset") == bob.evaluate("room.offset") == from_http  # resume points

        assert alice.evaluate("room.presence()") == ["alice", "bob"]  # cluster-wide, sorted
        bob.evaluate("room.close()")
        alice.wait_for_function("window.frames.some((f) => f.type === 'leave' && f.user === 'bob')")
        assert alice.evaluate("room.presence()") == ["alice"]
        assert bob.evaluate("room.state") == "closed"


def test_a_page_behind_nginx_whose_replica_is_killed_mid_stream_gets_every_number_once_in_order(
    pair: tuple[Herald, Herald], browser: Browser, room: str, tmp_path: Path
) -> None:
    total, kill_at = 80, 25
    with run_nginx([herald.port for herald in pair], tmp_path) as port:
        with open_page(browser, f"http://127.0.0.1:{port}/?room={room}&user=watcher") as page:
            expect(page.locator("#status")).to_have_text("connected")
            serving = page.locator("#replica").inner_text().removeprefix("served by replica ")
            doomed = next(herald for herald in pair if herald.replica_id == serving)
            survivor = next(herald for herald in pair if herald is not doomed)
            for number in range(1, total + 1):
                post(survivor, room, str(number))
                if number == kill_at:
                    doomed.kill()  # no close frame: the socket just dies
                time.sleep(0.02)  # a steady stream, not a synchronisation
            expect(page.locator("#messages .message .text")).to_have_text(
                [str(n) for n in range(1, total + 1)], timeout=RECOVER_MS
            )
            joined(page, survivor)
            expect(page.locator("#messages .system.warn")).to_have_count(0)  # nothing was lost for good


def test_a_page_told_recovered_false_says_so_before_what_the_history_still_holds(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], browser: Browser, room: str
) -> None:
    away, elsewhere = (herald_factory(redis_server.url, HERALD_HISTORY_SIZE="3") for _ in range(2))
    with open_page(browser, f"{away.http}/?room={room}&user=alice") as page:
        joined(page, away)
        say(page, "before")
        expect(page.locator("#messages .message .text")).to_have_text(["before"])
        away.kill()
        expect(page.locator("#status")).to_have_text("reconnecting…")
        for number in range(1, 7):  # the history keeps 3: "before", 1, 2 and 3 are gone for good
            post(elsewhere, room, str(number))
        away.start()  # same port: the page resumes with since=<before's offset>
        joined(page, away)
        expect(page.locator("#messages > div")).to_have_text(
            [
                re.compile("alicebefore$"),  # each line: time, user, text
                "Some earlier messages could not be recovered: the room's history no longer reaches back that far.",
                re.compile("anonymous4$"),
                re.compile("anonymous5$"),
                re.compile("anonymous6$"),
            ]
        )


def test_a_proxy_that_passes_no_websocket_gets_the_page_onto_server_sent_events(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], browser: Browser, room: str, tmp_path: Path
) -> None:
    # auth on: a message POSTed over the fallback is its token's user (with auth off it would be "anonymous")
    one, two = (herald_factory(redis_server.url, HERALD_JWT_SECRET=SECRET) for _ in range(2))
    alice_token, bob_token = (Auth(SECRET).issue(user, 600) for user in ("alice", "bob"))
    stamp = uuid.uuid4().int % 10**8
    with run_nginx([one.port, two.port], tmp_path, websockets=False) as port:
        with (
            open_page(browser, f"http://127.0.0.1:{port}/?room={room}&token={alice_token}") as alice,
            open_page(browser, f"{two.http}/?room={room}&token={bob_token}") as bob,
        ):
            expect(alice.locator("#status")).to_have_text("connected")
            expect(alice.locator("#transport")).to_have_text("server-sent events")
            joined(bob, two)
            expect(bob.locator("#transport")).to_have_text("WebSocket")
            expect(bob.locator("#presence li")).to_have_text(["alice", "bob"])  # an SSE reader is present too
            expect(alice.locator("#presence li")).to_have_text(["alice", "bob"])  # asked over HTTP

            say(alice, "sent with POST, read over SSE")
            expect(bob.locator("#messages .message .text")).to_have_text(["sent with POST, read over SSE"])
            say(bob, "sent over a WebSocket")
            for page in (alice, bob):
                expect(page.locator("#messages .message .text")).to_have_text(
                    ["sent with POST, read over SSE", "sent over a WebSocket"]
                )
            expect(alice.locator("#messages .message.mine .user")).to_have_text(["alice"])

            # The book feed falls back too: graphql-sse on /graphql/stream.
            expect(alice.locator("#books-status")).to_have_text("live")
            isbn = f"97822{stamp:08d}"
            response = httpx.post(
                f"{one.http}/api/books",
                json={"isbn": isbn, "title": "Kindred", "author": "Octavia E. Butler"},
                headers={"Authorization": f"Bearer {bob_token}"},
                timeout=5,
            )
            assert response.status_code == 201, response.text
            expect(alice.locator(f"#books li[data-isbn='{isbn}']")).to_contain_text("Kindred by Octavia E. Butler")


SUBSCRIBE_CHAT = """async ([room]) => {
  const { Herald } = await import("/static/herald.js");
  window.texts = [];
  window.herald = new Herald({ url: location.origin });
  await new Promise((subscribed, failed) => {
    herald.subscribe(
      "subscription ($room: String!, $since: String) { chatMessage(room: $room, since: $since) { id text } }",
      { room },
      {
        next: (result) => window.texts.push(result.data.chatMessage.text),
        error: failed,
        onState: (state) => state === "open" && subscribed(),
      },
    );
  });
}"""


def test_a_graphql_subscription_resumes_with_since_after_its_replica_is_killed(
    pair: tuple[Herald, Herald], browser: Browser, room: str, tmp_path: Path
) -> None:
    total, kill_at = 60, 20
    doomed, survivor = pair
    # the second upstream is nginx's backup: the subscription starts on `doomed`, then has only `survivor`
    with run_nginx([doomed.port, survivor.port], tmp_path, backups=1) as port:
        with open_page(browser, f"http://127.0.0.1:{port}/") as page:
            page.evaluate(SUBSCRIBE_CHAT, [room])
            for number in range(1, total + 1):
                post(survivor, room, str(number))
                if number == kill_at:
                    doomed.kill()
                time.sleep(0.02)  # a steady stream, not a synchronisation
            page.wait_for_function(f"window.texts.length >= {total}", timeout=RECOVER_MS)
            time.sleep(0.3)  # anything extra (a duplicate) would arrive now
            assert page.evaluate("window.texts") == [str(n) for n in range(1, total + 1)]
