"""``GET /metrics`` after real traffic: one ``herald serve`` on a real redis-server,
driven by real WebSocket and HTTP clients, read back through the Prometheus
text format exactly as a scraper sees it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.errors import CloseCode, ErrorCode
from tests.helpers.metrics import Samples, per_node, scrape, value
from tests.helpers.servers import Herald, RedisServer

pytestmark = pytest.mark.redis

WAIT_S = 10.0

# SPEC §6: every one of these is exposed from start-up, before any traffic, with exactly these labels.
# herald_connections counts WebSockets and SSE streams; herald_sse_streams is the SSE share.
DOCUMENTED = {
    ("herald_connections", (("endpoint", "chat"),)),
    ("herald_connections", (("endpoint", "graphql"),)),
    ("herald_sse_streams", (("endpoint", "chat"),)),
    ("herald_sse_streams", (("endpoint", "graphql"),)),
    ("herald_messages_published_total", ()),
    ("herald_messages_delivered_total", ()),
    ("herald_slow_consumers_total", ()),
    ("herald_rate_limited_total", ()),
    ("herald_redis_reconnects_total", ()),
    ("herald_publish_seconds_count", ()),
    ("herald_publish_seconds_sum", ()),
    ("herald_channels", ()),
    ("herald_graphql_subscriptions", ()),
    ("herald_graphql_shared_streams", ()),
    ("herald_graphql_executions_total", ()),
}

# Small limits so every counter can be driven in a few frames: a burst of 5 chat
# messages and then (practically) no refill; a send queue of 8 frames.
REPLICA_ENV = {
    "HERALD_RATE_LIMIT": "0.01",
    "HERALD_RATE_BURST": "5",
    "HERALD_SEND_QUEUE": "8",
    "HERALD_HISTORY_SIZE": "20",
    "HERALD_HEARTBEAT_S": "3600",
}


@pytest.fixture(scope="module")
def replica(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    """One replica for the module; each test uses its own room and compares before/after."""
    env = {"HERALD_KEY_PREFIX": f"m{uuid.uuid4().hex[:8]}", **REPLICA_ENV}
    herald = Herald(tmp_path_factory.mktemp("metrics"), redis_server.url, "metrics-replica", **env).start()
    yield herald
    herald.stop()


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


def wait_until(check: Callable[[], bool]) -> None:
    """Poll ``check`` (bounded): gauges settle once the server has noticed a close."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def assert_counted(herald: Herald, before: Samples, name: str, expected: float) -> None:
    """``name`` grew by exactly ``expected`` since ``before``. Polled: a replica may count a
    publish a moment after its subscribers already have the message."""
    deadline = time.monotonic() + WAIT_S
    while (grown := value(scrape(herald), name) - value(before, name)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert grown == expected, name


def ready_status(herald: Herald) -> int:
    return httpx.get(f"{herald.http}/ready", timeout=WAIT_S).status_code


async def join(herald: Herald, room: str, user: str, **kwargs: Any) -> ClientConnection:
    ws = await connect(f"{herald.ws}/ws/chat/{room}?user={user}", open_timeout=WAIT_S, **kwargs)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert welcome["type"] == "welcome"
    return ws


async def frames_of(ws: ClientConnection, kind: str, count: int) -> list[dict[str, Any]]:
    """The next ``count`` frames of type ``kind`` (others skipped)."""
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT_S):
        while len(found) < count:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                found.append(frame)
    return found


def test_every_documented_sample_is_exposed_from_start_up(replica: Herald) -> None:
    samples = scrape(replica)
    assert DOCUMENTED <= samples.keys()
    assert any(name == "herald_publish_seconds_bucket" for name, _ in samples)


async def test_chat_traffic_is_counted_and_gauges_fall_back_to_zero(replica: Herald, room: str) -> None:
    alice, bob, carol = [await join(replica, room, user) for user in ("alice", "bob", "carol")]
    # Everyone has heard of everyone who came later: join frames are delivered frames too.
    await frames_of(alice, "join", 2)
    await frames_of(bob, "join", 1)
    before = scrape(replica)

    for i in range(5):
        await alice.send(json.dumps({"type": "message", "text": f"m{i}"}))
    for ws in (alice, bob, carol):
        assert [m["text"] for m in await frames_of(ws, "message", 5)] == [f"m{i}" for i in range(5)]

    assert_counted(replica, before, "herald_messages_published_total", 5)
    assert_counted(replica, before, "herald_messages_delivered_total", 15)  # 5 messages x 3 sockets
    assert_counted(replica, before, "herald_publish_seconds_count", 5)
    after = scrape(replica)
    assert value(after, "herald_publish_seconds_sum") > value(before, "herald_publish_seconds_sum")
    assert value(after, "herald_rate_limited_total") == value(before, "herald_rate_limited_total")
    assert value(after, "herald_connections", endpoint="chat") == 3
    assert value(after, "herald_connections", endpoint="graphql") == 0
    assert value(after, "herald_channels") == 1

    for ws in (alice, bob, carol):
        await ws.close()
    wait_until(lambda: value(scrape(replica), "herald_connections", endpoint="chat") == 0)
    wait_until(lambda: value(scrape(replica), "herald_channels") == 0)


async def test_sse_streams_are_counted_as_connections_of_their_endpoint(replica: Herald, room: str) -> None:
    async with (
        httpx.AsyncClient(base_url=replica.http, timeout=WAIT_S) as http,
        http.stream("GET", f"/sse/chat/{room}?user=reader") as chat,
        http.stream(
            "POST",
            "/graphql/stream",
            json={"query": "subscription { newBook { isbn } }"},
            headers={"Accept": "text/event-stream"},
        ) as books,
        connect(f"{replica.ws}/ws/chat/{room}?user=writer", open_timeout=WAIT_S),
    ):
        assert chat.status_code == books.status_code == 200
        wait_until(lambda: value(scrape(replica), "herald_graphql_subscriptions") == 1)
        during = scrape(replica)
        assert value(during, "herald_connections", endpoint="chat") == 2  # the WebSocket and the SSE stream
        assert value(during, "herald_sse_streams", endpoint="chat") == 1
        assert value(during, "herald_connections", endpoint="graphql") == 1
        assert value(during, "herald_sse_streams", endpoint="graphql") == 1
    for endpoint in ("chat", "graphql"):
        for name in ("herald_connections", "herald_sse_streams"):
            wait_until(lambda name=name, endpoint=endpoint: value(scrape(replica), name, endpoint=endpoint) == 0)


async def test_frames_over_the_rate_limit_are_counted_not_published(replica: Herald, room: str) -> None:
    ws = await join(replica, room, "chatty")
    before = scrape(replica)
    for i in range(8):  # the burst is 5
        await ws.send(json.dumps({"type": "message", "text": f"m{i}"}))
    errors = await frames_of(ws, "error", 3)
    assert {e["code"] for e in errors} == {ErrorCode.RATE_LIMITED}
    await ws.close()

    assert_counted(replica, before, "herald_rate_limited_total", 3)
    assert_counted(replica, before, "herald_messages_published_total", 5)


async def test_a_client_that_stops_reading_is_dropped_and_counted(replica: Herald, room: str) -> None:
    before = scrape(replica)
    # max_queue=1: the client library stops reading from TCP once one frame waits unread,
    # so the replica's socket buffers fill and then its 8-frame send queue overflows.
    # No compression, or 60 kB of one letter would shrink to a few bytes on the wire.
    sleeper = await join(replica, room, "sleeper", max_queue=1, compression=None)
    text = "x" * 60_000
    async with httpx.AsyncClient(base_url=replica.http, timeout=WAIT_S) as http:
        for _ in range(400):
            response = await http.post(f"/api/chat/{room}/messages", json={"text": text})
            assert response.status_code == 202
            if value(scrape(replica), "herald_slow_consumers_total") > value(before, "herald_slow_consumers_total"):
                break
    assert_counted(replica, before, "herald_slow_consumers_total", 1)

    # Once it reads again it finds what fitted in the buffers, then the 1013 close.
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(WAIT_S):
            while True:
                await sleeper.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.TRY_AGAIN_LATER
    wait_until(lambda: value(scrape(replica), "herald_connections", endpoint="chat") == 0)


async def test_redis_reconnects_are_counted(own_redis: RedisServer, herald_factory: Callable[..., Herald]) -> None:
    herald = herald_factory(own_redis.url)
    assert value(scrape(herald), "herald_redis_reconnects_total") == 0

    own_redis.kill()
    wait_until(lambda: ready_status(herald) == 503)
    own_redis.start()
    wait_until(lambda: ready_status(herald) == 200)
    samples = scrape(herald)
    assert value(samples, "herald_redis_reconnects_total") == 1
    # The same server again: a reconnect, not a failover.
    assert value(samples, "herald_redis_topology_changes_total") == 0
    assert per_node(samples, "herald_redis_pubsub_connections") == {f"127.0.0.1:{own_redis.port}": 1}


async def test_the_redis_node_and_the_pubsub_connection_to_it_are_shown(
    replica: Herald, redis_server: RedisServer, room: str
) -> None:
    node = f"127.0.0.1:{redis_server.port}"
    samples = scrape(replica)
    assert value(samples, "herald_redis_nodes") == 1
    assert value(samples, "herald_redis_topology_changes_total") == 0
    assert per_node(samples, "herald_redis_pubsub_connections") == {node: 1}

    ws = await join(replica, room, "alice")
    samples = scrape(replica)
    assert value(samples, "herald_channels") >= 1
    assert per_node(samples, "herald_redis_pubsub_channels") == {node: value(samples, "herald_channels")}
    await ws.close()


async def subscribe_books(herald: Herald, fields: str) -> ClientConnection:
    """A graphql-transport-ws client with one ``newBook`` subscription."""
    ws = await connect(f"{herald.ws}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=WAIT_S)
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["type"] == "connection_ack"
    query = f"subscription {{ newBook {{ {fields} }} }}"
    await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": {"query": query}}))
    return ws


async def test_identical_graphql_subscriptions_share_one_execution(replica: Herald) -> None:
    async with httpx.AsyncClient(base_url=replica.http, timeout=WAIT_S) as http:
        if (await http.post("/graphql", json={"query": "{ __typename }"})).status_code == 404:
            pytest.skip("GraphQL not wired yet")
        before = scrape(replica)
        same = [await subscribe_books(replica, "isbn title") for _ in range(3)]
        other = await subscribe_books(replica, "isbn author")
        wait_until(lambda: value(scrape(replica), "herald_graphql_subscriptions") == 4)
        during = scrape(replica)
        assert value(during, "herald_connections", endpoint="graphql") == 4
        assert value(during, "herald_graphql_shared_streams") == 2  # one per distinct document

        isbn = f"isbn-{uuid.uuid4().hex[:8]}"
        response = await http.post("/api/books", json={"isbn": isbn, "title": "Dune", "author": "Frank Herbert"})
        assert response.status_code == 201, response.text
    for ws in [*same, other]:
        frame = (await frames_of(ws, "next", 1))[0]
        assert frame["payload"]["data"]["newBook"]["isbn"] == isbn
    assert_counted(replica, before, "herald_graphql_executions_total", 2)  # one per distinct document

    for ws in [*same, other]:
        await ws.close()
    wait_until(lambda: value(scrape(replica), "herald_connections", endpoint="graphql") == 0)
    wait_until(lambda: value(scrape(replica), "herald_graphql_subscriptions") == 0)
    assert value(scrape(replica), "herald_graphql_shared_streams") == 0
