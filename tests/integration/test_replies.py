"""broker.replies (every buffered reply per wake-up) and broker.script_wire (the publisher's own connection)
against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis
from redis.exceptions import NoScriptError

from broker.replies import BatchReader
from broker.script_wire import ScriptWire
from tests.helpers.chat import eventually
from tests.helpers.servers import RedisServer

pytestmark = pytest.mark.redis


async def test_batch_reads_return_every_reply_once_in_order(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    conn = await client.connection_pool.get_connection()
    try:
        reader = BatchReader(conn)
        assert reader.batched
        await conn.send_packed_command(conn.pack_commands([("ECHO", f"r{i}") for i in range(500)]))
        replies: list[bytes] = []
        while len(replies) < 500:
            replies += await reader.read()
        assert replies == [f"r{i}".encode() for i in range(500)]
        assert not reader.stale()
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()


async def test_the_embedded_server_is_read_one_reply_at_a_time() -> None:
    import fakeredis

    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    conn = await client.connection_pool.get_connection()
    try:
        assert not BatchReader(conn).batched
    finally:
        await client.connection_pool.release(conn)
        await client.aclose()


async def test_the_script_wire_returns_error_replies_as_values(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    wire = ScriptWire(client)
    try:
        replies = await wire.call([("EVALSHA", "0" * 40, 0), ("ECHO", "after"), ("EVAL", "return 7", 0)])
        assert isinstance(replies[0], NoScriptError)
        assert replies[1:] == [b"after", 7]
    finally:
        await client.aclose()


async def test_the_script_wire_notices_a_restarted_redis_before_writing(own_redis: RedisServer) -> None:
    """Its connection, idle across a Redis restart, is closed by the server: the next call must not be
    answered "outcome unknown" for a script that could not have run."""
    client = redis.Redis.from_url(own_redis.url)
    wire = ScriptWire(client)
    try:
        assert await wire.call([("ECHO", "before")]) == [b"before"]
        own_redis.stop()
        own_redis.start()

        # the event loop sees the server's FIN on the idle connection (as it does between publishes)
        async def noticed() -> bool:
            return wire._reader is None or wire._reader.stale()

        await eventually(noticed, 5, "the server's close of the idle connection")
        assert await wire.call([("ECHO", "after")]) == [b"after"]
    finally:
        await client.aclose()


async def test_the_script_wire_times_out_a_reply_that_never_comes_and_starts_over(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    wire = ScriptWire(client, timeout_s=0.2)
    try:
        with pytest.raises(TimeoutError):
            await wire.call([("BLPOP", "never-pushed", 0)])  # blocks for ever on the server
        assert await wire.call([("ECHO", "again")]) == [b"again"]  # a fresh connection, in order
    finally:
        await client.aclose()


async def test_cancelling_a_script_wire_call_cancels_it_and_is_no_timeout(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    wire = ScriptWire(client, timeout_s=5.0)
    try:
        call = asyncio.ensure_future(wire.call([("BLPOP", "never-pushed", 0)]))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await wire.call([("ECHO", "again")]) == [b"again"]
    finally:
        await client.aclose()
