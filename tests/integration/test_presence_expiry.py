"""Presence expiry at the broker level, in-process against a real redis-server (the Lua script runs there).

The replicas' clock is the test's: an entry expires because the clock says so, not because the test waited.
"""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from broker.presence import Presence
from tests.helpers.servers import RedisServer

pytestmark = pytest.mark.redis


async def test_whichever_presence_operation_purges_expired_users_reports_them(
    redis_server: RedisServer, key_prefix: str
) -> None:
    """Broker level: a replica that died leaves entries nobody refreshes; the next enter, exit or
    list on that room removes them and reports them as departed (the app sends their ``leave``)."""
    client = Redis.from_url(redis_server.url)
    now = [time.time()]  # both replicas' clock: expiry is a matter of this value, not of waiting

    def clock() -> float:
        return now[0]

    dead = Presence(client, key_prefix, "dead-replica", ttl_s=0.2, clock=clock)  # never started: never refreshed
    live = Presence(client, key_prefix, "live-replica", ttl_s=30, clock=clock)
    reported: list[tuple[str, list[str]]] = []

    async def on_departed(channel: str, users: list[str]) -> None:
        reported.append((channel, users))

    live.start(on_departed)
    try:
        for channel in ("chat:purge-by-list", "chat:purge-by-enter", "chat:purge-by-exit"):
            await live.enter(channel, "stayer", "1")
            await dead.enter(channel, "ghost", "1")
            await dead.enter(channel, "ghost", "2")  # two tabs: one departure
            now[0] += 1.0  # past the dead replica's entries, well within the live one's
            if channel.endswith("list"):
                assert await live.users(channel) == ["stayer"]
                assert reported == [(channel, ["ghost"])]
            elif channel.endswith("enter"):
                assert (await live.enter(channel, "newcomer", "2")).departed == ["ghost"]
            else:
                change = await live.exit(channel, "stayer", "1")
                assert (change.changed, change.departed) == (True, ["ghost"])
            assert "ghost" not in await live.users(channel)
        assert len(reported) == 1  # only the list reported through the callback; enter/exit return theirs
    finally:
        await live.stop()
        await client.aclose()
