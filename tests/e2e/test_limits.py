"""SPEC §4 limits against a real ``herald serve``: frame size (1009), rate limit
(``rate_limited`` frames, excess never published), connection cap (1013), and a
client that stops reading in a busy room (dropped 1013 while everyone else gets
every message and the replica's memory stays bounded)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.errors import CloseCode, ErrorCode
from broker import parse_offset
from tests.helpers.chat import (
    Frame,
    ametric,
    close_code,
    connect,
    eventually,
    frame_where,
    next_frame,
    post_message,
    raw_handshake,
    rss_kib,
    send,
    wait_until,
)
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def room() -> str:
    return f"r{uuid.uuid4().hex[:8]}"


async def chat_connections(herald: Herald) -> float:
    return await ametric(herald.http, "herald_connections", 'endpoint="chat"')


async def has_chat_connections(herald: Herald, expected: int) -> bool:
    return await chat_connections(herald) == expected


async def test_a_frame_over_max_message_bytes_closes_1009(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_MAX_MESSAGE_BYTES="1024")
    name = room()
    ws, _ = await connect(herald.ws, name, user="ok")
    await send(ws, {"type": "message", "text": "x" * 900})  # a whole frame just under the limit
    assert (await frame_where(ws, lambda f: f["type"] == "message"))["text"] == "x" * 900
    await send(ws, {"type": "message", "text": "x" * 2000})
    assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG
    binary, _ = await connect(herald.ws, name, user="binary")
    await binary.send(b"\0" * 4096)
    assert await close_code(binary) == CloseCode.MESSAGE_TOO_BIG
    await eventually(lambda: has_chat_connections(herald, 0), 5, "both sockets to be released")
    async with httpx.AsyncClient(timeout=5) as client:
        history = (await client.get(f"{herald.http}/api/chat/{name}/messages")).json()
    assert [len(message["text"]) for message in history] == [900]


async def test_rate_limited_messages_get_error_frames_and_are_never_published(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    rate, burst, sent = 2.0, 5, 20
    herald = herald_factory(redis_server.url, HERALD_RATE_LIMIT=str(rate), HERALD_RATE_BURST=str(burst))
    name = room()
    sender, _ = await connect(herald.ws, name, user="flood")
    listener, _ = await connect(herald.ws, name, user="listener")
    limited_before = await ametric(herald.http, "herald_rate_limited_total")
    started = time.monotonic()
    for i in range(sent):
        await send(sender, {"type": "message", "text": f"m{i}"})
    # Every frame gets exactly one answer: its echo (published) or a rate_limited error.
    accepted: list[str] = []
    refused = 0
    while len(accepted) + refused < sent:
        frame = await frame_where(sender, lambda f: f["type"] in ("message", "error"))
        if frame["type"] == "error":
            assert frame["code"] == ErrorCode.RATE_LIMITED
            refused += 1
        else:
            accepted.append(frame["text"])
    elapsed = time.monotonic() - started
    assert refused > 0
    assert burst <= len(accepted) <= burst + rate * elapsed + 1
    # Pings are not messages: never limited.
    await send(sender, {"type": "ping"})
    await frame_where(sender, lambda f: f["type"] == "pong")

    async with httpx.AsyncClient(timeout=5) as client:
        barrier = await client.post(f"{herald.http}/api/chat/{name}/messages", json={"text": "barrier"})
        assert barrier.status_code == 202
        seen: list[str] = []
        while not seen or seen[-1] != "barrier":
            seen.append((await frame_where(listener, lambda f: f["type"] == "message"))["text"])
        history = (await client.get(f"{herald.http}/api/chat/{name}/messages")).json()
    assert seen == [*accepted, "barrier"]
    assert [message["text"] for message in history] == [*accepted, "barrier"]
    assert await ametric(herald.http, "herald_rate_limited_total") - limited_before == refused
    await sender.close()
    await listener.close()


async def test_presence_requests_count_toward_the_rate_limit(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    rate, burst, sent = 2.0, 5, 30
    herald = herald_factory(redis_server.url, HERALD_RATE_LIMIT=str(rate), HERALD_RATE_BURST=str(burst))
    asker, _ = await connect(herald.ws, room(), user="asker")
    started = time.monotonic()
    for _ in range(sent):
        await send(asker, {"type": "presence"})
    answered = refused = 0
    while answered + refused < sent:
        frame = await frame_where(asker, lambda f: f["type"] in ("presence", "error"))
        if frame["type"] == "error":
            assert frame["code"] == ErrorCode.RATE_LIMITED
            refused += 1
        else:
            answered += 1
    # each presence answer is a Redis script call: a flood of them is held to the same rate as messages
    assert burst <= answered <= burst + rate * (time.monotonic() - started) + 1
    await asker.close()


async def test_beyond_max_connections_a_new_socket_is_closed_1013(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_MAX_CONNECTIONS="2")
    name = room()
    first, _ = await connect(herald.ws, name, user="one")
    second, _ = await connect(herald.ws, name, user="two")
    async with websockets.connect(f"{herald.ws}/ws/chat/{name}?user=three", open_timeout=5) as third:
        assert await close_code(third) == CloseCode.TRY_AGAIN_LATER
    # The two that got in are unaffected, and a freed slot is taken again.
    await send(first, {"type": "ping"})
    await frame_where(first, lambda f: f["type"] == "pong")
    await second.close()
    await eventually(lambda: has_chat_connections(herald, 1), 5, "the closed socket's slot")
    again, welcome = await connect(herald.ws, name, user="again")
    assert welcome["user"] == "again"
    await again.close()
    await first.close()


async def _read_messages(ws: ClientConnection, count: int, into: list[str]) -> None:
    while len(into) < count:
        frame: Frame = await next_frame(ws, within=30)
        if frame["type"] == "message":
            into.append(frame["id"])


def _drain(sock: socket.socket, deadline_s: float) -> tuple[bytes, str]:
    """Read until the connection ends; (what was read, "eof" / "reset" / "deadline")."""
    data, deadline = bytearray(), time.monotonic() + deadline_s
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return bytes(data), "reset"
        if not chunk:
            return bytes(data), "eof"
        data += chunk
    return bytes(data), "deadline"


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked frame in ``data``."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        head = 2
        if size == 126:
            size, head = int.from_bytes(data[at + 2 : at + 4], "big"), 4
        elif size == 127:
            size, head = int.from_bytes(data[at + 2 : at + 10], "big"), 10
        if at + head + size > len(data):
            break
        frames.append((opcode, data[at + head : at + head + size]))
        at += head + size
    return frames


async def test_a_client_that_stops_reading_is_dropped_and_nobody_else_misses_anything(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    count, size, queue = 600, 32 * 1024, 64
    herald = herald_factory(redis_server.url, HERALD_SEND_QUEUE=str(queue))
    assert herald.process is not None
    name = room()
    readers = [await connect(herald.ws, name, user=f"fast{i}") for i in range(3)]
    slow = await asyncio.to_thread(raw_handshake, herald.port, f"/ws/chat/{name}?user=slow")
    try:
        received: list[list[str]] = [[] for _ in readers]
        reading = [
            asyncio.create_task(_read_messages(ws, count, ids)) for (ws, _), ids in zip(readers, received, strict=True)
        ]
        await eventually(lambda: has_chat_connections(herald, 4), 5, "four open sockets")
        slow_before = await ametric(herald.http, "herald_slow_consumers_total")
        rss_before = rss_kib(herald.process.pid)

        published: list[str] = []
        text = "y" * size
        async with httpx.AsyncClient(base_url=herald.http, timeout=10) as client:
            for _ in range(count):
                response = await client.post(f"/api/chat/{name}/messages", json={"text": text})
                assert response.status_code == 202
                published.append(response.json()["id"])
        await asyncio.wait_for(asyncio.gather(*reading), 30)
        rss_after = rss_kib(herald.process.pid)

        # Every reader got every message, in publish order.
        assert published == sorted(published, key=parse_offset)
        assert all(ids == published for ids in received)
        assert await ametric(herald.http, "herald_slow_consumers_total") - slow_before == 1
        # The replica gave up on the slow socket and released it...
        await eventually(lambda: has_chat_connections(herald, 3), 10, "the slow socket to be released")
        # ...without buffering what it could not send: 600 x 32 KiB (19 MiB) were sent to it.
        assert rss_after - rss_before < 12 * 1024, (rss_before, rss_after)
        # When the peer reads again it finds a bounded backlog, then its 1013 close frame — never a bare reset.
        data, ending = await asyncio.to_thread(_drain, slow, 10.0)
        assert ending == "eof" and len(data) < count * size // 2, (ending, len(data))
        frames = _server_frames(data)
        assert frames and all(opcode == 0x1 for opcode, _ in frames[:-1])
        opcode, payload = frames[-1]
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == CloseCode.TRY_AGAIN_LATER, frames[-1]
        assert b"slow consumer" in payload
    finally:
        slow.close()
        for ws, _ in readers:
            await ws.close()


async def test_an_abandoned_room_expires_and_says_so_to_a_client_resuming_in_it_books_never_expire(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    herald = herald_factory(redis_server.url, HERALD_HISTORY_TTL_S="1")
    name = room()
    offset = await post_message(herald.http, name, "hello")
    async with httpx.AsyncClient(timeout=5) as client:
        book = await client.post(f"{herald.http}/api/books", json={"isbn": f"i-{name}", "title": "t", "author": "a"})
        assert book.status_code == 201
    redis = redis_server.client()
    room_keys = redis.keys(f"{key_prefix}:{{chat:{name}}}:*")
    assert len(room_keys) == 2  # its stream and its meta hash
    assert all(0 < redis.ttl(key) <= 1 for key in room_keys)

    def expired() -> bool:
        return not redis.keys(f"{key_prefix}:{{chat:{name}}}:*")

    await asyncio.to_thread(wait_until, expired, 5, "the room's keys to expire")
    ws, welcome = await connect(herald.ws, name, since=offset)
    assert welcome["recovered"] is False
    await ws.close()
    book_keys = redis.keys(f"{key_prefix}:{{books}}:*")
    assert book_keys and all(redis.ttl(key) == -1 for key in book_keys)  # books never expire
