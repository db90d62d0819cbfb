"""Sentinel mode on a real 1 master + 1 replica + 3 sentinels set: the clients follow a kill -9 failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from broker.connect import close_client
from broker.sentinel import create_sentinel, create_sentinel_redis, master_address
from broker.urls import SentinelUrl, parse_redis_url
from tests.helpers.topologies import SENTINEL_MASTER, SentinelTopology

pytestmark = pytest.mark.redis


def topology_of(sentinels: SentinelTopology) -> SentinelUrl:
    topology = parse_redis_url(sentinels.url)
    assert isinstance(topology, SentinelUrl)
    return topology


@pytest.fixture
async def client(sentinels: SentinelTopology) -> AsyncIterator[aioredis.Redis]:
    client = create_sentinel_redis(topology_of(sentinels))
    yield client
    await close_client(client)


async def test_the_client_talks_to_the_master_the_sentinels_name(
    sentinels: SentinelTopology, client: aioredis.Redis
) -> None:
    assert await client.set("k", "v")
    info = await client.info("replication")
    assert info["role"] == "master"
    assert sentinels.client_of(sentinels.master_port()).get("k") == b"v"
    sentinel = create_sentinel(topology_of(sentinels))
    try:
        assert await master_address(sentinel, SENTINEL_MASTER) == ("127.0.0.1", sentinels.master_port())
        assert await master_address(sentinel, "no-such-master") is None
    finally:
        for connection in sentinel.sentinels:
            await connection.aclose()


async def test_commands_follow_a_killed_master_to_the_promoted_replica(
    sentinels: SentinelTopology, client: aioredis.Redis, request: pytest.FixtureRequest
) -> None:
    await client.set("before", "1")
    assert await client.execute_command("WAIT", 1, 1000) == 1  # the replica holds it: the failover keeps it
    victim = sentinels.master_port()

    killed = time.monotonic()
    sentinels.kill(victim)
    errors = 0
    while True:
        try:
            await client.set("after", "2")
            break
        except RedisError:
            errors += 1
            assert time.monotonic() - killed < 30, "no master within 30 s"
            await asyncio.sleep(0.05)
    seconds = time.monotonic() - killed
    request.node.user_properties.append(("sentinel_kill_to_commands_s", round(seconds, 2)))
    print(f"sentinel: kill -9 -> commands succeed again in {seconds:.2f} s ({errors} refused meanwhile)")

    assert errors > 0  # the window existed and was refused, not silently absorbed
    assert sentinels.master_port() != victim
    assert (await client.info("replication"))["role"] == "master"
    assert await client.get("before") == b"1"


async def test_a_pubsub_connection_follows_the_failover_on_resubscribe(
    sentinels: SentinelTopology, client: aioredis.Redis, request: pytest.FixtureRequest
) -> None:
    pubsub = client.pubsub()
    await pubsub.subscribe("news")
    # bounded, not short: returns as soon as the confirmation arrives (a loaded machine can take seconds)
    assert (await pubsub.get_message(timeout=10))["type"] == "subscribe"  # type: ignore[index]
    victim = sentinels.master_port()

    killed = time.monotonic()
    sentinels.kill(victim)
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(10):
            while True:
                await pubsub.get_message(timeout=1)
    await pubsub.aclose()

    # What the listener does on a connection error: a new pub/sub connection, which asks the sentinels.
    received: list[bytes] = []
    while True:
        assert time.monotonic() - killed < 30, "no pub/sub on a new master within 30 s"
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe("news")
            await client.publish("news", "back")
            async with asyncio.timeout(2):
                while not received:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        received.append(message["data"])
            break
        except (RedisError, TimeoutError):
            await asyncio.sleep(0.05)
        finally:
            await pubsub.aclose()
    seconds = time.monotonic() - killed
    request.node.user_properties.append(("sentinel_kill_to_pubsub_s", round(seconds, 2)))
    print(f"sentinel: kill -9 -> pub/sub flows again in {seconds:.2f} s")
    assert received == [b"back"]


async def test_no_master_is_refused_not_hung(sentinels: SentinelTopology) -> None:
    topology = parse_redis_url(sentinels.url.replace(SENTINEL_MASTER, "nobody"))
    assert isinstance(topology, SentinelUrl)
    client = create_sentinel_redis(topology)
    try:
        start = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert time.monotonic() - start < 10
    finally:
        await close_client(client)
