"""What a chat subscriber's start costs Redis, watched with MONITOR on a private redis-server.

After the SUBSCRIBE (sent over the pub/sub link, once per room and replica) a chat subscriber's start is
one round trip: one script call that enters presence, publishes the join when it is the user's first
socket, and reads where the room stands (its newest offset, or the first page after ``since``). The
WebSocket and the SSE chat paths alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from broker import chat_channel
from broker.keys import ChannelKeys
from tests.helpers.chat import connect, eventually, post_message
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import RedisServer
from tests.helpers.sse import opened, sse

pytestmark = [pytest.mark.redis]

#: nothing periodic (the link's probe, the presence refresh) while a test watches
QUIET = {"HERALD_PUBSUB_PROBE_S": "3600", "HERALD_PRESENCE_TTL_S": "3600"}
#: what the pub/sub link sends: before the subscriber's start, and not a round trip of its own
PUBSUB = {"SUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "SUNSUBSCRIBE"}


class Watch:
    """The round trips clients other than the test's own sent while watched (a MULTI...EXEC is one;
    commands that scripts ran are not round trips and are left out)."""

    def __init__(self, probe: aioredis.Redis) -> None:
        #: the test's own client: its commands are left out
        self.probe = probe
        self.trips: list[list[str]] = []


@contextlib.asynccontextmanager
async def watching(server: RedisServer) -> AsyncIterator[Watch]:
    monitoring = aioredis.Redis.from_url(server.url)
    probe = aioredis.Redis.from_url(server.url)
    own = (await probe.client_info())["addr"]
    mark = f"end-of-watch-{uuid.uuid4().hex}"
    watch = Watch(probe)
    try:
        async with monitoring.monitor() as monitor:
            yield watch
            await probe.echo(mark)
            open_multi: dict[str, list[str]] = {}
            async with asyncio.timeout(10):
                while True:
                    seen = await monitor.next_command()
                    address = f"{seen['client_address']}:{seen['client_port']}"
                    name = seen["command"].split(" ", 1)[0].upper()
                    if address == own:
                        if seen["command"] == f"ECHO {mark}":
                            break
                        continue
                    if seen["client_type"] == "lua" or name in PUBSUB:
                        continue
                    if address in open_multi:
                        open_multi[address].append(name)
                        if name == "EXEC":
                            watch.trips.append(open_multi.pop(address))
                    elif name == "MULTI":
                        open_multi[address] = [name]
                    else:
                        watch.trips.append([name])
    finally:
        await monitoring.aclose()
        await probe.aclose()


async def present(watch: Watch, prefix: str, room: str, user: str) -> None:
    """Return once ``user`` has a presence entry in ``room``."""
    key = ChannelKeys.of(prefix, chat_channel(room)).presence

    async def entered() -> bool:
        members = await watch.probe.zrange(key, 0, -1)
        return any(member.startswith(user.encode() + b"\0") for member in members)

    await eventually(entered, 5, f"{user}'s presence entry")


@pytest.fixture
async def replica(
    own_redis: RedisServer, replica_factory: Callable[..., InProcessReplica], key_prefix: str
) -> InProcessReplica:
    herald = replica_factory(own_redis.url, **QUIET)
    # warm up: the script is loaded and the connections it and the reads use are open
    ws, _ = await connect(herald.ws, "warm-up", user="warm")
    await ws.close()
    async with sse(herald.http, "/sse/chat/warm-up", user="warm") as reader:
        await opened(reader)
    key = ChannelKeys.of(key_prefix, chat_channel("warm-up")).presence
    async with aioredis.Redis.from_url(own_redis.url) as client:

        async def left() -> bool:
            return not await client.exists(key)

        await eventually(left, 5, "the warm-up sockets' presence exits")
    return herald


async def test_a_websocket_subscriber_without_since_starts_in_one_round_trip(
    replica: InProcessReplica, own_redis: RedisServer, key_prefix: str, room: str
) -> None:
    async with watching(own_redis) as watch:
        ws, welcome = await connect(replica.ws, room, user="ann")
        await present(watch, key_prefix, room, "ann")
    assert welcome["offset"] is None
    assert watch.trips == [["EVALSHA"]]
    await ws.close()


async def test_a_websocket_subscriber_with_since_starts_in_one_round_trip(
    replica: InProcessReplica, own_redis: RedisServer, key_prefix: str, room: str
) -> None:
    offsets = [await post_message(replica.http, room, text) for text in ("one", "two", "three")]
    async with watching(own_redis) as watch:
        ws, welcome = await connect(replica.ws, room, user="ann", since=offsets[0])
        await present(watch, key_prefix, room, "ann")
    assert (welcome["offset"], welcome["recovered"]) == (offsets[-1], True)
    assert watch.trips == [["EVALSHA"]]
    await ws.close()


async def test_an_sse_subscriber_without_since_starts_in_one_round_trip(
    replica: InProcessReplica, own_redis: RedisServer, key_prefix: str, room: str
) -> None:
    offset = await post_message(replica.http, room, "before")
    async with contextlib.AsyncExitStack() as stream:  # closed after the watch, so its exit is not seen
        async with watching(own_redis) as watch:
            reader = await stream.enter_async_context(sse(replica.http, f"/sse/chat/{room}", user="ann"))
            welcome = await opened(reader)
            await present(watch, key_prefix, room, "ann")
    assert (welcome.data["offset"], welcome.id) == (offset, offset)
    assert watch.trips == [["EVALSHA"]]
