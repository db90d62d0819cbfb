"""SPEC §8, no silent loss: every way a connected client could miss events, provoked for real.

Each test runs ``herald serve`` replicas on a private ``redis-server`` and
checks what a client sees: every event once, in order — or a clear signal
(close 4010 and ``recovered: false``, ``extensions.recovered: false``, an
"outcome unknown" error) that it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.errors import CloseCode, ErrorCode
from tests.helpers.chat import (
    ametric,
    astatus,
    connect,
    eventually,
    frame_where,
    masked_frame,
    next_frame,
    raw_handshake,
    rss_kib,
    send,
)
from tests.helpers.proxy import FreezableProxy
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

WAIT_S = 20.0
CHAT_SUB = "subscription C($room: String!, $since: String) { chatMessage(room: $room, since: $since) { id text } }"


class Received:
    """What one chat client got, read in the background until the server closes it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.texts: list[str] = []
        self.offsets: list[str] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> int | None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                if frame["type"] == "message":
                    self.texts.append(frame["text"])
                    self.offsets.append(frame["id"])
        except websockets.ConnectionClosed:
            pass
        return self.ws.close_code

    async def closed(self) -> int | None:
        return await asyncio.wait_for(self.task, WAIT_S)


async def graphql_socket(herald: Herald) -> ClientConnection:
    ws = await websockets.connect(
        f"{herald.ws}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")], max_size=None
    )
    await send(ws, {"type": "connection_init"})
    assert (await next_frame(ws))["type"] == "connection_ack"
    return ws


async def post_many(herald: Herald, room: str, texts: list[str], **headers: str) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        offsets = []
        for text in texts:
            response = await client.post(
                f"{herald.http}/api/chat/{room}/messages", json={"text": text}, headers=headers
            )
            assert response.status_code == 202, response.text
            offsets.append(response.json()["id"])
        return offsets


# -- 1. a replica's link drops while more than the history goes by ------------------------------------------


async def test_a_client_whose_replica_missed_more_than_the_history_is_told(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    # Redis drops a pub/sub client that stops reading once 256 kB wait for it (the default is 32 MB).
    own_redis.client().config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    a = herald_factory(own_redis.url, HERALD_HISTORY_SIZE="20", HERALD_HEARTBEAT_S="3600")
    b = herald_factory(own_redis.url, HERALD_HISTORY_SIZE="20", HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    ws, _ = await connect(a.ws, room)
    chat = Received(ws)
    gql = await graphql_socket(a)
    await send(gql, {"type": "subscribe", "id": "1", "payload": {"query": CHAT_SUB, "variables": {"room": room}}})
    await post_many(b, room, ["before"])
    assert (await frame_where(gql, lambda f: f["type"] == "next"))["payload"]["data"]["chatMessage"]["text"] == "before"

    with a.stalled():
        # 16 MB: more than the kernel's socket buffers absorb, so Redis's own buffer overflows
        padding = "x" * 40_000
        await post_many(b, room, [f"m{n} {padding}" for n in range(400)])

    # The chat client is closed 4010 instead of being left with a hole...
    try:
        code = await chat.closed()
    finally:
        print(f"\ndelivered live {len(chat.texts)} of 401; closed with {chat.ws.close_code}")
    assert code == CloseCode.INSUFFICIENT_STATE
    delivered = len(chat.texts)
    assert delivered < 401, "the test must make the replica miss events"
    # ...and resuming where it stopped, it learns that history does not reach back that far.
    resumed, welcome = await connect(a.ws, room, since=chat.offsets[-1])
    assert welcome["recovered"] is False
    retained = [await frame_where(resumed, lambda f: f["type"] == "message") for _ in range(20)]
    assert [f["text"].split()[0] for f in retained] == [f"m{n}" for n in range(380, 400)]
    await resumed.close()

    # The GraphQL subscription stays open and its next result says recovered: false.
    def recovered_false(frame: dict[str, Any]) -> bool:
        return frame["type"] == "next" and frame["payload"].get("extensions") == {"recovered": False}

    told = await frame_where(gql, recovered_false, within=WAIT_S)
    assert told["payload"]["data"]["chatMessage"]["text"].split()[0].startswith("m")
    await gql.close()


# -- 2. a malformed pub/sub payload -------------------------------------------------------------------------


async def test_a_malformed_pubsub_payload_is_skipped_and_fan_out_goes_on(
    own_redis: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    a = herald_factory(own_redis.url, HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    ws, _ = await connect(a.ws, room)
    channel = f"{key_prefix}:{{chat:{room}}}:events"
    for junk in (b"\xff\xfe\xfd", b"no offset line", b"1-1\nnot json", b"99-x\n{}", b"\n\xc3("):
        assert own_redis.client().publish(channel, junk) == 1
    await post_many(a, room, ["after the junk"])
    frame = await frame_where(ws, lambda f: f["type"] == "message")
    assert frame["text"] == "after the junk"
    assert await astatus(f"{a.http}/ready") == 200
    assert "malformed payload" in a.log()
    await ws.close()


# -- 3. more live events during a replay than the buffer holds ----------------------------------------------


async def test_a_replay_outrun_by_live_events_rereads_the_stream_and_loses_nothing(
    own_redis: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    # A subscriber buffers at most 5 live events while it replays: a publish storm overflows it many times.
    a = herald_factory(own_redis.url, HERALD_SEND_QUEUE="5", HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    await fill_room(own_redis.url, key_prefix, room, 300, 30_000)  # a replay that takes a while
    ws, welcome = await connect(a.ws, room, since="0")
    storm = asyncio.create_task(fill_room(own_redis.url, key_prefix, room, 300, 1000))  # while it replays
    assert welcome["recovered"] is True
    got: list[str] = []
    async with asyncio.timeout(WAIT_S):
        await storm
        while len(got) < 600:
            frame = await next_frame(ws)
            if frame["type"] == "message":
                got.append(frame["id"])
    async with httpx.AsyncClient(timeout=10) as client:
        history = (await client.get(f"{a.http}/api/chat/{room}/messages", params={"limit": 1000})).json()
    assert got == [m["id"] for m in history]  # all 600, in order, once
    await ws.close()


# -- 4. a publish whose outcome is unknown, and idempotency keys ----------------------------------------------


async def test_a_publish_during_a_redis_stall_says_outcome_unknown_and_a_keyed_retry_publishes_once(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    a = herald_factory(own_redis.url, HERALD_HEARTBEAT_S="3600")
    b = herald_factory(own_redis.url, HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    ws, _ = await connect(b.ws, room)
    assert own_redis.process is not None
    await post_many(a, f"{room}-warm", ["loads the script"])  # else the stalled EVALSHA would meet NOSCRIPT
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{a.http}/api/chat/{room}/messages"
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            stalled = await client.post(url, json={"text": "once"}, headers={"Idempotency-Key": "k1"})
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert stalled.status_code == 503
        assert "may or may not" in stalled.json()["detail"]  # never "nothing was published"
        # It did land: Redis ran the script once it woke up.
        delivered = await frame_where(ws, lambda f: f["type"] == "message", within=WAIT_S)
        assert delivered["text"] == "once"

        async def ready() -> bool:
            return await astatus(f"{a.http}/ready") == 200 and await astatus(f"{b.http}/ready") == 200

        await eventually(ready, WAIT_S, "both replicas ready again")
        # The retry the error invites, on either replica, publishes nothing new: same offset, same status.
        for herald in (a, b):
            retry = await client.post(
                f"{herald.http}/api/chat/{room}/messages", json={"text": "once"}, headers={"Idempotency-Key": "k1"}
            )
            assert (retry.status_code, retry.json()) == (202, {"id": delivered["id"]})
        history = (await client.get(f"{b.http}/api/chat/{room}/messages")).json()
    assert [m["id"] for m in history] == [delivered["id"]]
    await ws.close()


async def test_an_idempotency_key_makes_a_repeat_one_event_on_every_surface(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    a = herald_factory(redis_server.url, HERALD_HEARTBEAT_S="3600")
    b = herald_factory(redis_server.url, HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    on_a, _ = await connect(a.ws, room)
    on_b, _ = await connect(b.ws, room)
    # chat frames: acknowledged with the offset, first time and repeat alike
    await send(on_a, {"type": "message", "text": "hi", "key": "chat-1"})
    ack = await frame_where(on_a, lambda f: f["type"] == "ack")
    await send(on_b, {"type": "message", "text": "hi", "key": "chat-1"})
    assert await frame_where(on_b, lambda f: f["type"] == "ack") == ack
    assert ack["key"] == "chat-1"
    # GraphQL sendMessage(key) and REST Idempotency-Key
    mutation = 'mutation { sendMessage(room: "' + room + '", text: "yo", key: "gql-1") { id } }'
    async with httpx.AsyncClient(timeout=10) as client:
        ids = [
            (await client.post(f"{h.http}/graphql", json={"query": mutation})).json()["data"]["sendMessage"]["id"]
            for h in (a, b)
        ]
        rest = [
            (
                await client.post(
                    f"{h.http}/api/chat/{room}/messages", json={"text": "r"}, headers={"Idempotency-Key": "r1"}
                )
            )
            for h in (a, b)
        ]
        history = (await client.get(f"{a.http}/api/chat/{room}/messages")).json()
    assert ids[0] == ids[1]
    assert [r.status_code for r in rest] == [202, 202] and rest[0].json() == rest[1].json()
    assert [m["id"] for m in history] == [ack["id"], ids[0], rest[0].json()["id"]]
    await on_a.close()
    await on_b.close()


async def test_an_unusable_idempotency_key_is_refused(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    a = herald_factory(redis_server.url, HERALD_HEARTBEAT_S="3600")
    ws, _ = await connect(a.ws, "keys")
    await send(ws, {"type": "message", "text": "x", "key": "k" * 129})
    error = await frame_where(ws, lambda f: f["type"] == "error")
    assert error["code"] == ErrorCode.BAD_REQUEST
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{a.http}/api/chat/keys/messages", json={"text": "x"}, headers={"Idempotency-Key": "k" * 129}
        )
    assert response.status_code == 422
    await ws.close()


# -- 5. replays that are never read ---------------------------------------------------------------------------

#: what one stalled replaying connection may cost the replica (SPEC §8; the README states this bound)
STALLED_REPLAY_BOUND_KIB = 10 * 1024


async def fill_room(url: str, prefix: str, room: str, count: int, size: int) -> None:
    """Publish ``count`` messages of ``size`` bytes through Herald's own script, quicker than over HTTP."""
    from broker import BrokerOptions, open_broker

    broker = open_broker(url, BrokerOptions(replica_id="filler", prefix=prefix))
    try:
        text = "z" * size
        payload = orjson.dumps({"room": room, "user": "filler", "text": text, "ts": 0.0}).decode()
        for start in range(0, count, 50):
            await asyncio.gather(
                *(broker.publish(f"chat:{room}", payload) for _ in range(start, min(count, start + 50)))
            )
    finally:
        await broker.close()


async def test_replays_nobody_reads_cost_a_bounded_amount_and_are_closed(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    herald = herald_factory(redis_server.url, HERALD_SLOW_CLOSE_S="3", HERALD_HEARTBEAT_S="3600")
    assert herald.process is not None
    room = f"r{uuid.uuid4().hex[:8]}"
    await fill_room(redis_server.url, key_prefix, room, 400, 60_000)  # 24 MB of history
    # warm up: one full replay read by a real client
    ws, _ = await connect(herald.ws, room, since="0")
    async with asyncio.timeout(WAIT_S):
        for _ in range(400):
            await frame_where(ws, lambda f: f["type"] == "message")
    await ws.close()
    await eventually(lambda: chat_connections_are(herald, 0), WAIT_S, "the warm-up socket to go")
    before = rss_kib(herald.process.pid)

    chat = [await asyncio.to_thread(raw_handshake, herald.port, f"/ws/chat/{room}?since=0") for _ in range(10)]
    gql = [await asyncio.to_thread(stalled_graphql_replay, herald.port, room) for _ in range(3)]
    peak = before
    async with asyncio.timeout(WAIT_S):
        while not await chat_connections_are(herald, 0) or not await graphql_connections_are(herald, 0):
            peak = max(peak, rss_kib(herald.process.pid))
            await asyncio.sleep(0.05)
    for sock in chat + gql:
        sock.close()
    growth = peak - before
    print(f"\nRSS before {before} KiB, peak {peak} KiB: {growth / 13:.0f} KiB per stalled replaying connection")
    assert growth < 13 * STALLED_REPLAY_BOUND_KIB, (before, peak)


async def chat_connections_are(herald: Herald, count: int) -> bool:
    return await ametric(herald.http, "herald_connections", 'endpoint="chat"') == count


async def graphql_connections_are(herald: Herald, count: int) -> bool:
    return await ametric(herald.http, "herald_connections", 'endpoint="graphql"') == count


def stalled_graphql_replay(port: int, room: str) -> socket.socket:
    """A graphql-transport-ws socket that subscribes with since "0" and then never reads."""
    sock = raw_handshake(port, "/graphql", subprotocol="graphql-transport-ws")
    query = CHAT_SUB
    sock.sendall(masked_frame(0x1, b'{"type":"connection_init"}'))
    subscribe = {"type": "subscribe", "id": "1", "payload": {"query": query, "variables": {"room": room, "since": "0"}}}
    sock.sendall(masked_frame(0x1, orjson.dumps(subscribe)))
    return sock


# -- 6. a subscribe storm ------------------------------------------------------------------------------------------

STORM_QUERY = "subscription C($room: String!) { chatMessage(room: $room) { id } }"


async def subscribe_storm(ws: ClientConnection, prefix: str, size: int) -> None:
    for n in range(size):
        payload = {"query": STORM_QUERY, "variables": {"room": f"{prefix}{n}"}}
        await ws.send(orjson.dumps({"type": "subscribe", "id": str(n), "payload": payload}).decode())


async def welcomed(herald: Herald, room: str, within: float) -> float:
    """Seconds until a chat socket to ``room`` got its welcome."""
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(within):
        ws = await websockets.connect(f"{herald.ws}/ws/chat/{room}", open_timeout=within)
        assert orjson.loads(await ws.recv())["type"] == "welcome"
    await ws.close()
    return asyncio.get_running_loop().time() - started


async def test_a_subscribe_storm_is_served_without_a_false_unavailable(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    size = 10_000
    herald = herald_factory(redis_server.url, HERALD_GRAPHQL_MAX_OPERATIONS=str(size), HERALD_HEARTBEAT_S="3600")
    prefix = uuid.uuid4().hex[:6]
    storm = await graphql_socket(herald)
    sending = asyncio.create_task(subscribe_storm(storm, prefix, size))
    # Others connecting meanwhile wait for CPU, never for a Redis wrongly believed down.
    waits = await asyncio.gather(*(welcomed(herald, f"{prefix}-others", 120) for _ in range(5)))
    await sending

    async def all_live() -> bool:
        try:
            return await ametric(herald.http, "herald_graphql_subscriptions") == size
        except httpx.TimeoutException:
            return False  # busy serving the storm: ask again

    seconds = await eventually(all_live, 120, f"{size} subscriptions live", interval=0.5)
    print(f"\n{size} subscriptions live {seconds:.1f} s after sending; others welcomed after {max(waits):.1f} s")
    assert await astatus(f"{herald.http}/ready") == 200
    # Not one subscription was refused: nothing arrived for any of them.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            frame = orjson.loads(await storm.recv())
            raise AssertionError(f"unexpected {frame}")
    await post_many(herald, f"{prefix}{size - 1}", ["still here"])
    assert (await frame_where(storm, lambda f: f["type"] == "next"))["id"] == str(size - 1)
    await storm.close()


async def test_one_socket_cannot_run_more_than_its_operations_cap(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_HEARTBEAT_S="3600")  # the default cap: 100
    prefix = uuid.uuid4().hex[:6]
    storm = await graphql_socket(herald)
    await subscribe_storm(storm, prefix, 10_000)
    assert await welcomed(herald, f"{prefix}-others", 5) < 5
    refused: set[str] = set()
    async with asyncio.timeout(WAIT_S):
        while len(refused) < 9_900:
            frame = orjson.loads(await storm.recv())
            assert frame["type"] == "error", frame
            assert "HERALD_GRAPHQL_MAX_OPERATIONS" in frame["payload"][0]["message"]
            refused.add(frame["id"])
    assert refused == {str(n) for n in range(100, 10_000)}
    assert await ametric(herald.http, "herald_graphql_subscriptions") == 100
    await storm.close()


# -- 7. a pub/sub link that stays open but stops delivering -----------------------------------------------------


async def test_a_stuck_pubsub_link_is_noticed_by_its_probe_and_the_gap_replayed(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    proxy = await FreezableProxy(own_redis.port).start()
    try:
        b = herald_factory(own_redis.url, HERALD_HEARTBEAT_S="3600")
        # started from a thread: the proxy lives on this test's event loop, which must keep running
        a = await asyncio.to_thread(herald_factory, proxy.url, HERALD_PUBSUB_PROBE_S="1", HERALD_HEARTBEAT_S="3600")
        room = f"r{uuid.uuid4().hex[:8]}"
        ws, _ = await connect(a.ws, room)
        expected = await post_many(b, room, ["before"])
        assert (await frame_where(ws, lambda f: f["type"] == "message"))["id"] == expected[0]
        proxy.freeze()  # A's pub/sub connection (and its idle command connections) go silent
        expected = await post_many(b, room, [f"during {n}" for n in range(5)])
        got = [await frame_where(ws, lambda f: f["type"] == "message", within=WAIT_S) for _ in range(5)]
        assert [f["id"] for f in got] == expected
        assert "probe not back" in a.log()
        await ws.close()
    finally:
        await proxy.close()


async def test_a_since_from_a_lost_history_in_a_trimmed_room_is_told_once_then_gets_the_retained_events(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_HISTORY_SIZE="5", HERALD_HEARTBEAT_S="3600")
    room = f"r{uuid.uuid4().hex[:8]}"
    offsets = await post_many(herald, room, [f"m{n}" for n in range(21)])
    ws, welcome = await connect(herald.ws, room, since="1-0")  # before this stream began
    assert welcome["recovered"] is False
    got = [await frame_where(ws, lambda f: f["type"] == "message") for _ in range(5)]
    assert [f["id"] for f in got] == offsets[-5:]  # told once, in the welcome; never closed 4010
    await ws.close()


async def test_a_publish_no_redis_replica_confirms_is_answered_503_not_confirmed(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    # HERALD_REDIS_MIN_REPLICAS_ACK=1 on a server without replicas: WAIT falls short every time (SPEC §9)
    herald = herald_factory(redis_server.url, HERALD_REDIS_MIN_REPLICAS_ACK="1", HERALD_REDIS_ACK_TIMEOUT_MS="20")
    room = f"r{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{herald.http}/api/chat/{room}/messages", json={"text": "hi"})
    assert response.status_code == 503
    assert "not confirmed" in response.json()["detail"]
    ws, _ = await connect(herald.ws, room)
    await send(ws, {"type": "message", "text": "hi"})
    error = await frame_where(ws, lambda f: f["type"] == "error")
    assert error["code"] == ErrorCode.UNAVAILABLE and "not confirmed" in error["detail"]
    await ws.close()
