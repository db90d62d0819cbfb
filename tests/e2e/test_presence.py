"""SPEC §4 presence and join/leave, cluster-wide: two real replicas on one real
redis-server, clients spread over both, and a replica SIGKILLed to prove that
presence entries expire and a ``leave`` goes out without anyone else acting."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from broker import chat_channel
from broker.keys import ChannelKeys
from tests.helpers.chat import Frame, ametric, connect, eventually, frame_where, send
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

ROOM = "presence-room"


def membership(frame: Frame) -> bool:
    return frame["type"] in ("join", "leave")


async def presence(ws: ClientConnection) -> list[str]:
    await send(ws, {"type": "presence"})
    frame = await frame_where(ws, lambda f: f["type"] == "presence")
    assert frame["room"] == ROOM
    users: list[str] = frame["users"]
    return users


async def next_membership_or_barrier(ws: ClientConnection, barrier: str) -> Frame:
    """The next join/leave frame, or the chat message ``barrier`` if it comes first."""
    return await frame_where(ws, lambda f: membership(f) or (f["type"] == "message" and f["text"] == barrier))


async def join(base_ws: str, user: str) -> ClientConnection:
    """Connect and return once the replica has recorded the socket's presence: it is entered in the
    round trip that reads where the room stands, before the welcome is sent, so the welcome proves it."""
    ws, _ = await connect(base_ws, ROOM, user=user)
    return ws


async def chat_connections(herald: Herald) -> float:
    return await ametric(herald.http, "herald_connections", 'endpoint="chat"')


async def closed_and_cleaned_up(ws: ClientConnection, herald: Herald, remaining: int) -> None:
    """Close ``ws``; return once its replica finished with it (presence exit included)."""
    await ws.close()

    async def done() -> bool:
        return await chat_connections(herald) == remaining

    await eventually(done, 5, "the replica to finish the closed socket")


async def test_join_and_leave_reach_every_other_member_on_every_replica(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    a, b = herald_factory(redis_server.url), herald_factory(redis_server.url)
    alice = await join(a.ws, "alice")
    bob = await join(b.ws, "bob")
    frame = await frame_where(alice, membership)
    assert frame == {"type": "join", "room": ROOM, "user": "bob", "ts": pytest.approx(time.time(), abs=5)}
    carol = await join(a.ws, "carol")
    for member in (alice, bob):
        frame = await frame_where(member, membership)
        assert (frame["type"], frame["room"], frame["user"]) == ("join", ROOM, "carol")
    # Nobody is told of their own arrival: the first membership frame carol sees is bob's leave.
    assert await presence(carol) == ["alice", "bob", "carol"]
    await closed_and_cleaned_up(bob, b, remaining=0)
    for member in (alice, carol):
        frame = await frame_where(member, membership)
        assert (frame["type"], frame["user"]) == ("leave", "bob")
    assert await presence(alice) == ["alice", "carol"]
    # Presence lives in Redis under the room's hash tag, shared with its stream and pub/sub channel.
    keys = [
        key if isinstance(key, str) else key.decode() for key in redis_server.client().keys(f"{key_prefix}:*presence*")
    ]
    assert keys and all(f"{{chat:{ROOM}}}" in key for key in keys)
    await alice.close()
    await carol.close()


async def test_two_tabs_of_one_user_are_one_entry_until_the_last_closes(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    a, b = herald_factory(redis_server.url), herald_factory(redis_server.url)
    observer = await join(a.ws, "observer")
    tab1 = await join(a.ws, "dana")
    tab2 = await join(b.ws, "dana")
    frame = await frame_where(observer, membership)
    assert (frame["type"], frame["user"]) == ("join", "dana")
    assert await presence(observer) == ["dana", "observer"]

    await closed_and_cleaned_up(tab1, a, remaining=1)
    # Published after tab 1's exit finished: a leave, had there been one, would arrive first.
    await send(observer, {"type": "message", "text": "barrier"})
    assert (await next_membership_or_barrier(observer, "barrier"))["type"] == "message"
    assert await presence(observer) == ["dana", "observer"]

    await closed_and_cleaned_up(tab2, b, remaining=0)
    frame = await frame_where(observer, membership)
    assert (frame["type"], frame["user"]) == ("leave", "dana")
    assert await presence(observer) == ["observer"]
    await observer.close()


async def test_users_of_a_killed_replica_expire_and_a_leave_goes_out_unprompted(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    ttl_s = 1.0
    a = herald_factory(redis_server.url, HERALD_PRESENCE_TTL_S=str(ttl_s))
    b = herald_factory(redis_server.url, HERALD_PRESENCE_TTL_S=str(ttl_s))
    alice = await join(a.ws, "alice")
    bob = await join(b.ws, "bob")
    bob_tab2 = await join(b.ws, "bob")
    frame = await frame_where(alice, membership)
    assert (frame["type"], frame["user"]) == ("join", "bob")
    # Refreshed while bob's replica lives: once both his entries were pushed two lifetimes past the
    # expiry they were created with (so that one has long passed), he is still present.
    entries = ChannelKeys.of(key_prefix, chat_channel(ROOM)).presence
    async with Redis.from_url(redis_server.url) as client:

        async def bobs_expiries() -> list[float]:
            scored = await client.zrange(entries, 0, -1, withscores=True)
            return [score for member, score in scored if member.startswith(b"bob\0")]

        created_with = max(await bobs_expiries())

        async def refreshed_twice() -> bool:
            expiries = await bobs_expiries()
            return len(expiries) == 2 and min(expiries) >= created_with + 2 * ttl_s * 1000

        await eventually(refreshed_twice, 6 * ttl_s, "bob's replica to refresh his presence twice")
    assert await presence(alice) == ["alice", "bob"]

    assert b.process is not None
    b.process.send_signal(signal.SIGKILL)  # no cleanup at all
    b.process.wait(5)
    killed_at = time.monotonic()
    # Nobody touches the room: alice's replica's own refresh purges bob and announces it.
    frame = await frame_where(alice, membership, within=ttl_s * 4 / 3 + 3)
    waited = time.monotonic() - killed_at
    assert (frame["type"], frame["user"]) == ("leave", "bob")
    assert waited < ttl_s * 4 / 3 + 3
    assert await presence(alice) == ["alice"]
    # Exactly one leave for bob, though he had two tabs and a dead replica.
    await send(alice, {"type": "message", "text": "barrier"})
    assert (await next_membership_or_barrier(alice, "barrier"))["type"] == "message"
    for ws in (alice, bob, bob_tab2):
        await ws.close()
