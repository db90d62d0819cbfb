"""The pub/sub link against a real ``redis-server``: batching, and surviving its own read task failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from broker import BrokerOptions, Event
from broker.broker import RedisBroker
from tests.helpers.chat import eventually
from tests.helpers.servers import RedisServer

pytestmark = [pytest.mark.redis]

WAIT_S = 10.0


@pytest.fixture
async def broker(redis_server: RedisServer, key_prefix: str) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker.from_url(redis_server.url, BrokerOptions(replica_id="link", prefix=key_prefix, probe_s=0.5))
    await broker.start()
    yield broker
    await broker.close()


async def until(check: Callable[[], bool], what: str) -> None:
    async def holds() -> bool:
        return check()

    await eventually(holds, WAIT_S, what, interval=0.01)


async def test_a_read_task_that_fails_for_any_reason_reconnects_and_replays_the_gap(broker: RedisBroker) -> None:
    got: list[Event] = []
    subscription = await broker.subscribe("chat:a", got.append)
    async for _ in subscription.replay():
        pass
    channels = broker.listener._channels
    catchup = channels["chat:a"]

    class BrokenOnce:
        """The channel's catch-up, with a bug on the read path the first time round."""

        failed = False

        def __call__(self, event: Event) -> None:
            if not self.failed:
                self.failed = True
                raise KeyError("a bug on the read path")
            catchup(event)

        def __getattr__(self, name: str) -> object:
            return getattr(catchup, name)

    channels["chat:a"] = BrokenOnce()  # type: ignore[assignment]  # the reader task dies on its next message
    first = (await broker.publish("chat:a", '{"n":1}')).offset
    await until(lambda: broker.stats().reconnects == 1, "a reconnect")
    second = (await broker.publish("chat:a", '{"n":2}')).offset
    await until(lambda: len(got) == 2, "both events")
    assert [event.offset for event in got] == [first, second]  # the first came back through the replay
    assert broker.ready
    await subscription.close()


async def test_subscribes_arriving_together_are_one_subscribe_command(
    broker: RedisBroker, redis_server: RedisServer
) -> None:
    stats = aioredis.Redis.from_url(redis_server.url)
    try:
        before = (await stats.info("commandstats")).get("cmdstat_subscribe", {}).get("calls", 0)
        subscriptions = await asyncio.gather(*(broker.subscribe(f"chat:{n}", lambda e: None) for n in range(500)))
        after = (await stats.info("commandstats"))["cmdstat_subscribe"]["calls"]
    finally:
        await stats.aclose()
    assert after - before == 1
    assert broker.stats().channels == 500
    await asyncio.gather(*(subscription.close() for subscription in subscriptions))
