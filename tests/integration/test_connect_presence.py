"""Presence entered as a chat subscriber starts, before its welcome: what the room sees.

Two in-process replicas on one redis-server. A subscriber's presence entry and its join go out in the
round trip that reads where the room stands (tests/integration/test_connect_cost.py counts it), so
the entry exists before the welcome and replay are sent: when those fail (a client that never reads
its replay, here), the entry is exited again and the room is told with a ``leave``; when the start itself
fails (Redis gone), this replica keeps no entry alive.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable, Iterator

import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from broker import BrokerOptions, PresenceEntry, Unavailable, open_broker
from broker.keys import ChannelKeys
from tests.helpers.chat import Frame, connect, frame_where, raw_handshake, say, send, wait_until
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import RedisServer
from tests.helpers.sse import opened, post_many, sse

pytestmark = [pytest.mark.redis]

Replicas = tuple[InProcessReplica, InProcessReplica]

#: a replay too big for the kernel's buffers: a client that never reads stalls it
STALL_EVENTS, STALL_EVENT_BYTES = 200, 60_000


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer) -> Iterator[Replicas]:
    prefix = f"p{uuid.uuid4().hex[:8]}"
    started = [
        InProcessReplica(redis_url=redis_server.url, replica_id=name, key_prefix=prefix, slow_close_s=1.0).start()
        for name in "ab"
    ]
    yield started[0], started[1]
    for replica in started:
        replica.stop()


def membership(frame: Frame) -> bool:
    return frame["type"] in ("join", "leave")


async def membership_until(ws: ClientConnection, barrier: str) -> list[tuple[str, str]]:
    """(type, user) of every join/leave before the chat message ``barrier``."""
    seen: list[tuple[str, str]] = []
    while True:
        frame = await frame_where(ws, lambda f: membership(f) or (f["type"] == "message" and f["text"] == barrier))
        if frame["type"] == "message":
            return seen
        seen.append((frame["type"], frame["user"]))


async def presence(ws: ClientConnection) -> list[str]:
    await send(ws, {"type": "presence"})
    users: list[str] = (await frame_where(ws, lambda f: f["type"] == "presence"))["users"]
    return users


async def test_the_join_reaches_the_other_replica_once_and_never_the_joiner(replicas: Replicas) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    observer, _ = await connect(a.ws, room, user="olga")
    ann, _ = await connect(b.ws, room, user="ann")
    ann_tab, _ = await connect(a.ws, room, user="ann")  # a second socket of ann's: no second join
    await say(ann, "barrier")
    assert await membership_until(observer, "barrier") == [("join", "ann")]
    for socket_of_ann in (ann, ann_tab):
        assert await membership_until(socket_of_ann, "barrier") == []  # not told of her own arrival
    assert await presence(observer) == ["ann", "olga"]
    for ws in (ann, ann_tab, observer):
        await ws.close()


async def test_an_sse_reader_is_not_told_of_its_own_join(replicas: Replicas) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    observer, _ = await connect(a.ws, room, user="olga")
    async with sse(b.http, f"/sse/chat/{room}", user="ann") as reader:
        await opened(reader)
        assert (await frame_where(observer, membership))["user"] == "ann"  # her join went out
        await post_many(a, room, ["barrier"])
        events = []
        while not events or events[-1].event != "message":
            event = await reader.next()
            assert event is not None
            events.append(event)
    assert [event.event for event in events] == ["message"]
    await observer.close()


async def fill(url: str, prefix: str, room: str) -> None:
    broker = open_broker(url, BrokerOptions(replica_id="filler", prefix=prefix))
    try:
        payload = orjson.dumps({"room": room, "user": "filler", "text": "z" * STALL_EVENT_BYTES, "ts": 0.0}).decode()
        for _batch in range(STALL_EVENTS // 50):
            await asyncio.gather(*(broker.publish(f"chat:{room}", payload) for _ in range(50)))
    finally:
        await broker.close()


def stalled_sse(port: int, path: str) -> socket.socket:
    """An SSE request on a plain socket with a small window, which the test then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_subscriber_whose_replay_fails_leaves_the_room_again(
    replicas: Replicas, redis_server: RedisServer, transport: str
) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    await fill(redis_server.url, b.settings.key_prefix, room)
    observer, _ = await connect(a.ws, room, user="olga")
    path = f"/{transport}/chat/{room}?since=0&user=stalled"
    opener: Callable[[int, str], socket.socket] = raw_handshake if transport == "ws" else stalled_sse
    stalled = await asyncio.to_thread(opener, b.port, path)
    try:
        # entered as the replay began, exited once it was not read within HERALD_SLOW_CLOSE_S
        for kind in ("join", "leave"):
            frame = await frame_where(observer, membership, within=10)
            assert (frame["type"], frame["user"]) == (kind, "stalled")
        assert await presence(observer) == ["olga"]
    finally:
        stalled.close()
    await observer.close()


async def test_a_start_that_redis_failed_leaves_no_entry_behind(own_redis: RedisServer, key_prefix: str) -> None:
    """Broker level: the entry a failed start would have made is not kept alive by this replica's refresh
    (which re-adds the entries it holds when Redis lost them, as after this restart)."""
    broker = open_broker(own_redis.url, BrokerOptions(replica_id="r", prefix=key_prefix, presence_ttl_s=0.3))
    await broker.start()
    broker.presence.start()
    entries = ChannelKeys.of(key_prefix, "chat:x").presence
    try:
        held = await broker.subscribe("chat:x", lambda event: None)  # the channel stays subscribed meanwhile
        await broker.presence.enter("chat:x", "stayer", "s")
        own_redis.stop()
        with pytest.raises(Unavailable):
            await broker.subscribe("chat:x", lambda event: None, presence=PresenceEntry("ghost", "g"))
        own_redis.start()
        client = own_redis.client()

        def refreshed() -> bool:  # the restarted Redis is empty: the refresh put back what this replica holds
            return client.zscore(entries, "stayer\0r:s") is not None

        await asyncio.to_thread(wait_until, refreshed, 5, "the presence refresh after the restart")
        assert [member.split(b"\0")[0] for member in client.zrange(entries, 0, -1)] == [b"stayer"]
        await held.close()
    finally:
        await broker.presence.stop()
        await broker.close()
