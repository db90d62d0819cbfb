"""The broker's contract (``broker/facade.py``), on the embedded Redis and on a real ``redis-server``.

Every test on ``broker`` / ``broker_factory`` runs twice here: ``memory://`` (fakeredis) and a private
``redis-server`` on a free loopback port, isolated by a unique key prefix; and twice more in
``tests/cluster/test_broker_contract_topologies.py``, on a Sentinel set and on a Redis Cluster
(``CONTRACT`` lists them). Brokers come from ``open_broker``, as ``herald serve`` makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from broker import (
    SINCE_START,
    Event,
    PresenceEntry,
    Published,
    Subscription,
    parse_offset,
)
from broker.broker import RedisBroker
from tests.conftest import MS
from tests.helpers.brokers import brokers_on as any_brokers_on
from tests.helpers.servers import RedisServer

WAIT_S = 5.0

# RedisBroker, not the Broker protocol: some tests look at Redis itself through its client
Broker = RedisBroker
BrokerFactory = Callable[..., Awaitable[Broker]]


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@contextlib.asynccontextmanager
async def brokers_on(url: str, prefix: str) -> AsyncIterator[BrokerFactory]:
    """``tests.helpers.brokers.brokers_on``, each broker a ``RedisBroker`` that is ready once started."""
    async with any_brokers_on(url, prefix) as make:

        async def ready(**options: Any) -> Broker:
            broker = await make(**options)
            assert isinstance(broker, RedisBroker)
            assert broker.ready
            return broker

        yield ready


@pytest.fixture
async def broker_factory(redis_url: str, key_prefix: str) -> AsyncIterator[BrokerFactory]:
    async with brokers_on(redis_url, key_prefix) as make:
        yield make


@pytest.fixture
async def replicas(redis_server: RedisServer, key_prefix: str) -> AsyncIterator[BrokerFactory]:
    """Brokers sharing the real redis-server, as replicas do (not parametrized)."""
    async with brokers_on(redis_server.url, key_prefix) as make:
        yield make


@pytest.fixture
async def broker(broker_factory: BrokerFactory) -> Broker:
    return await broker_factory()


class Collector:
    """A sink that records what it is handed (replay first, then live)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._arrived = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    @property
    def offsets(self) -> list[str]:
        return [event.offset for event in self.events if event.offset is not None]

    async def _until(self, done: Callable[[], bool]) -> None:
        async def watch() -> None:
            while not done():
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(watch(), WAIT_S)

    async def wait_for(self, count: int) -> None:
        await self._until(lambda: len(self.events) >= count)

    async def wait_for_offset(self, offset: str) -> None:
        await self._until(lambda: offset in self.offsets)


async def join(broker: Broker, channel: str, since: str | None = None) -> tuple[Subscription, Collector]:
    """Subscribe as the chat endpoint does: replay first, then live."""
    got = Collector()
    subscription = await broker.subscribe(channel, got, since)
    got.events.extend(await replayed(subscription))
    return subscription, got


async def replayed(subscription: Subscription) -> list[Event]:
    """Everything ``replay()`` yields; the subscription is live afterwards."""
    return [event async for events in subscription.replay() for event in events]


async def publish_many(broker: Broker, channel: str, count: int) -> list[str]:
    return [await post(broker, channel, f'{{"n":{n}}}') for n in range(count)]


async def post(broker: Broker, channel: str, data: str = "{}") -> str:
    return (await broker.publish(channel, data)).offset


async def barrier(broker: Broker, channel: str, *collectors: Collector) -> str:
    """Publish a marker and wait until every collector has it. A channel's events arrive in order, so
    anything still in flight before it (a late duplicate, say) has arrived too: then assert on the rest."""
    marker = await post(broker, channel, '{"barrier":true}')
    for got in collectors:
        await got.wait_for_offset(marker)
        assert got.offsets[-1] == marker
    return marker


async def numsub(url: str, broker: Broker, channel: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        [(_, count)] = await client.pubsub_numsub(broker.keys(channel).pubsub)
        return int(count)
    finally:
        await client.aclose()


async def commandstats(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


# -- offsets and publishing ------------------------------------------------------------


async def test_offsets_of_a_channel_strictly_increase_in_publish_order(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 50)
    positions = [parse_offset(offset) for offset in offsets]
    assert positions == sorted(set(positions))


async def test_channels_have_independent_streams(broker: Broker) -> None:
    a = await publish_many(broker, "chat:a", 3)
    await publish_many(broker, "chat:b", 2)
    assert [e.offset for e in await broker.history("chat:a")] == a


async def test_published_data_comes_back_byte_for_byte(broker: Broker) -> None:
    data = '{"text":"héllo \\n wörld 🌍","n":1}'
    offset = await post(broker, "chat:a", data)
    [event] = await broker.history("chat:a")
    assert (event.offset, event.data, event.channel) == (offset, data, "chat:a")


def publish_then(broker: Broker, channel: str, data: str, key: str | None = None) -> asyncio.Future[Published]:
    """``broker.publish_then``, its outcome on a future for the test to await."""
    outcome: asyncio.Future[Published] = asyncio.get_running_loop().create_future()

    def then(published: Published | None, error: BaseException | None) -> None:
        assert not outcome.done(), "told twice"
        if error is not None:
            outcome.set_exception(error)
        else:
            assert published is not None
            outcome.set_result(published)

    broker.publish_then(channel, data, then, key=key)
    return outcome


async def test_publish_then_lands_like_publish_in_call_order(broker: Broker) -> None:
    # started from plain code, as a chat socket's frame handler does: no task, no await in between
    outcomes = [publish_then(broker, "chat:then", f'{{"n":{n}}}') for n in range(20)]
    published = await asyncio.wait_for(asyncio.gather(*outcomes), WAIT_S)
    assert not any(p.repeated for p in published)
    history = await broker.history("chat:then", SINCE_START)
    assert [(e.offset, e.data) for e in history] == [(p.offset, f'{{"n":{n}}}') for n, p in enumerate(published)]


async def test_publish_then_with_a_repeated_key_publishes_once(broker: Broker) -> None:
    first = await asyncio.wait_for(publish_then(broker, "chat:then", '{"n":1}', key="k1"), WAIT_S)
    again = await asyncio.wait_for(publish_then(broker, "chat:then", '{"n":2}', key="k1"), WAIT_S)
    assert (again.offset, again.repeated, first.repeated) == (first.offset, True, False)
    assert [e.data for e in await broker.history("chat:then", SINCE_START)] == ['{"n":1}']


# -- history -----------------------------------------------------------------------------


async def test_history_without_since_is_the_last_limit_events_oldest_first(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 10)
    assert [e.offset for e in await broker.history("chat:a", limit=4)] == offsets[-4:]
    assert [e.offset for e in await broker.history("chat:a")] == offsets


async def test_history_with_since_is_the_first_limit_events_after_it(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 10)
    assert [e.offset for e in await broker.history("chat:a", since=offsets[2], limit=3)] == offsets[3:6]
    assert [e.offset for e in await broker.history("chat:a", since=offsets[2])] == offsets[3:]


async def test_history_since_the_newest_offset_is_empty(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 3)
    assert await broker.history("chat:a", since=offsets[-1]) == []


async def test_history_since_zero_is_everything_retained(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 3)
    assert [e.offset for e in await broker.history("chat:a", since=SINCE_START)] == offsets


async def test_history_of_an_unknown_channel_is_empty(broker: Broker) -> None:
    assert await broker.history("chat:nobody") == []
    assert await broker.history("chat:nobody", since="0") == []


async def test_history_since_the_largest_possible_offset_is_empty(broker: Broker) -> None:
    await publish_many(broker, "chat:a", 1)
    largest = f"{2**64 - 1}-{2**64 - 1}"
    assert await broker.history("chat:a", since=largest) == []


async def test_history_compares_offsets_parsed_so_1_10_comes_after_1_9(broker: Broker) -> None:
    stream = broker.keys("chat:a").stream
    for seq in range(1, 13):
        await broker.client.xadd(stream, {"d": f'{{"n":{seq}}}'}, id=f"1-{seq}")
    after = await broker.history("chat:a", since="1-9")
    assert [e.offset for e in after] == ["1-10", "1-11", "1-12"]
    assert [e.offset for e in await broker.history("chat:a", since="1-2", limit=2)] == ["1-3", "1-4"]


# -- trimming and recovery ---------------------------------------------------------------------


async def test_a_channel_keeps_exactly_history_size_events(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    offsets = await publish_many(broker, "chat:a", 8)
    assert [e.offset for e in await broker.history("chat:a", limit=100)] == offsets[-5:]
    assert await broker.client.xlen(broker.keys("chat:a").stream) == 5


async def test_since_older_than_the_retained_history_is_not_recovered(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    offsets = await publish_many(broker, "chat:a", 8)  # offsets[0:3] trimmed
    subscription, got = await join(broker, "chat:a", since=offsets[1])
    assert subscription.recovered is False
    assert got.offsets == offsets[3:]
    await subscription.close()


async def test_since_the_newest_trimmed_offset_is_still_recovered(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    offsets = await publish_many(broker, "chat:a", 8)
    subscription, got = await join(broker, "chat:a", since=offsets[2])
    assert subscription.recovered is True
    assert got.offsets == offsets[3:]
    await subscription.close()


async def test_since_zero_is_recovered_until_anything_is_trimmed(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    offsets = await publish_many(broker, "chat:a", 5)
    subscription, got = await join(broker, "chat:a", since=SINCE_START)
    assert (subscription.recovered, got.offsets) == (True, offsets)
    await subscription.close()
    offsets.append(await post(broker, "chat:a"))
    subscription, got = await join(broker, "chat:a", since=SINCE_START)
    assert (subscription.recovered, got.offsets) == (False, offsets[1:])
    await subscription.close()


async def test_since_past_the_newest_event_is_not_recovered_and_hides_nothing_to_come(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 2)
    ms, seq = parse_offset(offsets[-1])
    subscription, got = await join(broker, "chat:a", since=f"{ms + 60_000}-{seq}")
    assert (subscription.recovered, got.offsets) == (False, offsets)
    later = await post(broker, "chat:a", "{}")
    await got.wait_for_offset(later)
    await subscription.close()


async def test_a_channel_whose_history_redis_lost_is_not_recovered(broker: Broker) -> None:
    seen = await publish_many(broker, "chat:a", 3)
    keys = broker.keys("chat:a")
    await broker.client.delete(keys.stream, keys.meta)  # as after a restart without persistence
    # A restart takes far longer than a millisecond; within the same one, the reborn stream
    # could reissue the very id the client last saw, which no history check can tell apart.
    await asyncio.sleep(5 * MS)
    subscription, got = await join(broker, "chat:a", since=seen[-1])
    assert (subscription.recovered, subscription.offset) == (False, None)
    await subscription.close()
    reborn = await post(broker, "chat:a", "{}")
    subscription, got = await join(broker, "chat:a", since=seen[-1])
    assert (subscription.recovered, got.offsets) == (False, [reborn])  # whatever its id, it is new to the client
    await subscription.close()


async def test_since_zero_on_an_empty_channel_is_recovered(broker: Broker) -> None:
    subscription, got = await join(broker, "chat:a", since=SINCE_START)
    assert (subscription.recovered, subscription.offset, got.events) == (True, None, [])
    await subscription.close()


async def test_a_subscription_reports_the_newest_retained_offset(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    empty, got = await join(broker, "chat:a")
    assert (empty.offset, empty.recovered, got.events) == (None, None, [])
    offsets = await publish_many(broker, "chat:a", 7)
    for since in (None, SINCE_START, offsets[0], offsets[-1]):
        subscription, _ = await join(broker, "chat:a", since)
        assert subscription.offset == offsets[-1]
        await subscription.close()
    await empty.close()


async def test_a_subscription_without_since_gets_only_events_after_its_offset(broker: Broker) -> None:
    await publish_many(broker, "chat:a", 3)
    subscription, got = await join(broker, "chat:a")
    assert got.events == []
    later = await publish_many(broker, "chat:a", 3)
    await got.wait_for(3)
    assert got.offsets == later
    await subscription.close()


async def test_a_subscription_since_an_offset_gets_the_missed_events_then_live_ones(broker: Broker) -> None:
    offsets = await publish_many(broker, "chat:a", 6)
    subscription, got = await join(broker, "chat:a", since=offsets[2])
    assert subscription.recovered is True
    later = await publish_many(broker, "chat:a", 3)
    await got.wait_for(6)
    assert got.offsets == offsets[3:] + later
    await subscription.close()


async def test_replay_since_1_9_starts_at_1_10(broker: Broker) -> None:
    stream = broker.keys("chat:a").stream
    for seq in range(1, 13):
        await broker.client.xadd(stream, {"d": "{}"}, id=f"1-{seq}")
    subscription, got = await join(broker, "chat:a", since="1-9")
    assert got.offsets == ["1-10", "1-11", "1-12"]
    live = await post(broker, "chat:a", "{}")
    await got.wait_for_offset(live)
    assert got.offsets == ["1-10", "1-11", "1-12", live]
    await subscription.close()


# -- live delivery ---------------------------------------------------------------------------


async def test_every_local_sink_gets_the_same_event_object_once(broker: Broker) -> None:
    first, a = await join(broker, "chat:a")
    second, b = await join(broker, "chat:a")
    other, c = await join(broker, "chat:b")
    offset = await post(broker, "chat:a", '{"x":1}')
    marker = await barrier(broker, "chat:a", a, b)
    assert a.offsets == b.offsets == [offset, marker]
    assert a.events[0] is b.events[0], "decoded once per replica, not once per sink"
    assert c.events == []
    for subscription in (first, second, other):
        await subscription.close()


async def test_a_closed_subscription_gets_nothing_more(broker: Broker) -> None:
    subscription, got = await join(broker, "chat:a")
    stays, witness = await join(broker, "chat:a")
    await subscription.close()
    await subscription.close()  # idempotent
    offset = await post(broker, "chat:a", "{}")
    await witness.wait_for_offset(offset)
    assert got.events == []
    await stays.close()


async def test_ephemeral_events_reach_listeners_without_an_offset_and_are_never_stored(broker: Broker) -> None:
    subscription, got = await join(broker, "chat:a")
    await broker.publish_ephemeral("chat:a", '{"type":"join","user":"ann"}')
    await got.wait_for(1)
    [event] = got.events
    assert (event.offset, event.position, event.data) == (None, None, '{"type":"join","user":"ann"}')
    assert await broker.history("chat:a") == []
    later, replayed = await join(broker, "chat:a", since=SINCE_START)
    assert replayed.events == []
    for sub in (subscription, later):
        await sub.close()


# -- a subscriber's start with presence (one round trip) --------------------------------------------


def entry(user: str, connection: str) -> PresenceEntry:
    return PresenceEntry(user, connection, announce=f'{{"type":"join","user":"{user}"}}')


async def test_a_subscriber_entering_presence_reads_what_a_plain_one_reads(broker_factory: BrokerFactory) -> None:
    broker = await broker_factory(history_size=5)
    offsets = await publish_many(broker, "chat:p", 8)  # offsets[0:3] trimmed
    ms, seq = parse_offset(offsets[-1])
    for n, since in enumerate((None, SINCE_START, offsets[1], offsets[2], offsets[5], offsets[-1], f"{ms + 1}-{seq}")):
        plain, got_plain = await join(broker, "chat:p", since)
        present = await broker.subscribe("chat:p", Collector(), since, presence=entry("ann", f"c{n}"))
        assert present.presence is not None and present.presence.changed is (n == 0), since
        assert (present.offset, present.recovered) == (plain.offset, plain.recovered), since
        stored = [event.offset for event in await replayed(present) if event.offset is not None]
        assert stored == got_plain.offsets, since
        await plain.close()
        await present.close()
    assert await broker.presence.users("chat:p") == ["ann"]


async def test_the_join_reaches_every_listener_once_the_joiner_included(broker: Broker) -> None:
    """Announced after the subscriber's own SUBSCRIBE, in the call that reads where it starts: it hears
    everything from its own entry on (the app drops its own join)."""
    observer, seen = await join(broker, "chat:j")
    got = Collector()
    subscription = await broker.subscribe("chat:j", got, presence=entry("bob", "c1"))
    got.events.extend(await replayed(subscription))
    again = await broker.subscribe("chat:j", Collector(), presence=entry("bob", "c2"))  # bob's second tab: no join
    assert subscription.presence is not None and subscription.presence.changed
    assert again.presence is not None and not again.presence.changed
    await barrier(broker, "chat:j", seen, got)
    for collector in (seen, got):
        assert [event.data for event in collector.events if event.offset is None] == ['{"type":"join","user":"bob"}']
    for each in (observer, subscription, again):
        await each.close()
    for connection in ("c1", "c2"):
        await broker.presence.exit("chat:j", "bob", connection)
    assert await broker.presence.users("chat:j") == []


async def test_an_event_published_on_one_replica_reaches_sinks_on_another(replicas: BrokerFactory) -> None:
    a = await replicas(replica_id="a")
    b = await replicas(replica_id="b")
    sub_a, on_a = await join(a, "chat:x")
    sub_b, on_b = await join(b, "chat:x")
    offsets = await publish_many(a, "chat:x", 5) + await publish_many(b, "chat:x", 5)
    await on_a.wait_for(10)
    await on_b.wait_for(10)
    assert on_a.offsets == on_b.offsets == offsets
    for sub in (sub_a, sub_b):
        await sub.close()


async def test_a_replay_whose_live_buffer_overflows_rereads_the_stream_and_loses_nothing(
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory(buffer_limit=2)
    got = Collector()
    subscription = await broker.subscribe("chat:a", got, SINCE_START)  # buffering until its replay is read
    witness, seen = await join(broker, "chat:a")
    offsets = await publish_many(broker, "chat:a", 30)
    await seen.wait_for_offset(offsets[-1])  # the hub handed every event to both sinks: the buffer overflowed
    got.events.extend(await replayed(subscription))
    assert got.offsets == offsets
    more = await publish_many(broker, "chat:a", 2)
    await got.wait_for_offset(more[-1])
    assert got.offsets == offsets + more
    for sub in (subscription, witness):
        await sub.close()


# -- the handoff under load ----------------------------------------------------------------------


async def test_subscribers_joining_during_a_publish_storm_see_a_gapless_duplicate_free_sequence(
    broker: Broker,
) -> None:
    rng = random.Random(7)
    channel = "chat:storm"
    published: list[str] = []
    replays: dict[int, int] = {}

    async def publish_storm() -> None:
        for n in range(300):
            published.append(await post(broker, channel, f'{{"n":{n}}}'))
            if n % 3 == 0:
                await asyncio.sleep(MS)  # spread the storm over the subscribers' arrival window

    async def subscriber(index: int) -> tuple[Subscription, Collector, str | None]:
        await asyncio.sleep(rng.uniform(0, 0.15))
        choice = rng.random()
        since: str | None
        if index == 0 or choice < 0.2:
            since = None
        elif choice < 0.4 or not published:
            since = SINCE_START
        else:
            since = rng.choice(published)
        subscription, got = await join(broker, channel, since)
        replays[index] = len(got.offsets)
        return subscription, got, since

    storm = asyncio.create_task(publish_storm())
    joined = await asyncio.wait_for(asyncio.gather(*(subscriber(i) for i in range(20))), WAIT_S)
    await asyncio.wait_for(storm, WAIT_S)
    for subscription, got, since in joined:
        start = subscription.offset if since is None else since
        expected = [o for o in published if start is None or parse_offset(o) > parse_offset(start)]
        if expected:
            with contextlib.suppress(TimeoutError):  # the assert below shows what is missing
                await got.wait_for_offset(expected[-1])
        assert got.offsets == expected, f"since={since}"
        assert subscription.recovered is (None if since is None else True)
    await barrier(broker, channel, *(got for _, got, _ in joined))
    for subscription, got, since in joined:
        assert len(got.offsets) == len(set(got.offsets)), f"no late duplicate (since={since})"
        await subscription.close()
    # the storm really overlapped the joins: some subscribers had history to replay and live events to follow
    assert any(replays[index] and len(got.offsets) > replays[index] for index, (_, got, _) in enumerate(joined))


async def test_a_subscriber_joining_as_another_publishes_its_first_event_misses_nothing(broker: Broker) -> None:
    # The first events of a fresh channel, raced against a second subscriber's history read.
    for n in range(150):
        channel = f"chat:race{n}"
        first, got = await join(broker, channel)
        offset, (second, _) = await asyncio.gather(post(broker, channel), join(broker, channel))
        await got.wait_for_offset(offset)
        for subscription in (first, second):
            await subscription.close()


# -- one SUBSCRIBE per channel per replica ---------------------------------------------------


async def subscribers_in_redis(broker: Broker, channel: str) -> int:
    """PUBSUB NUMSUB (SHARDNUMSUB on the channel's cluster master), asked through the broker's own client."""
    name = broker.keys(channel).pubsub
    if isinstance(broker.client, RedisCluster):
        owner = broker.client.get_node_from_key(name)
        [(_, count)] = await broker.client.execute_command("PUBSUB SHARDNUMSUB", name, target_nodes=owner)
    else:
        [(_, count)] = await broker.client.pubsub_numsub(name)
    return int(count)


async def test_a_hundred_concurrent_first_subscribers_share_one_subscribe(broker: Broker) -> None:
    channel = "chat:crowd"
    joined = await asyncio.wait_for(asyncio.gather(*(join(broker, channel) for _ in range(100))), WAIT_S)
    assert broker.hub.count(channel) == 100
    assert await subscribers_in_redis(broker, channel) == 1
    offset = await post(broker, channel, "{}")
    marker = await barrier(broker, channel, *(got for _, got in joined))
    assert all(got.offsets == [offset, marker] for _, got in joined)
    await asyncio.wait_for(asyncio.gather(*(sub.close() for sub, _ in joined)), WAIT_S)
    assert broker.stats().channels == 0
    assert await subscribers_in_redis(broker, channel) == 0


async def test_a_hundred_concurrent_first_subscribers_send_one_subscribe_command(
    replicas: BrokerFactory, redis_server: RedisServer
) -> None:
    broker = await replicas()
    stats = aioredis.Redis.from_url(redis_server.url)
    try:
        before = await commandstats(stats)
        joined = await asyncio.wait_for(asyncio.gather(*(join(broker, "chat:crowd") for _ in range(100))), WAIT_S)
        after = await commandstats(stats)
    finally:
        await stats.aclose()
    assert after["subscribe"] - before.get("subscribe", 0) == 1
    for subscription, _ in joined:
        await subscription.close()


async def test_subscribers_coming_and_going_concurrently_leave_a_working_channel(broker: Broker) -> None:
    channel = "chat:churn"
    rng = random.Random(11)

    async def visit() -> None:
        for _ in range(3):
            subscription, _ = await join(broker, channel)
            await asyncio.sleep(rng.uniform(0, 5 * MS))
            await subscription.close()

    await asyncio.wait_for(asyncio.gather(*(visit() for _ in range(50))), WAIT_S)
    assert broker.stats().channels == 0
    assert await subscribers_in_redis(broker, channel) == 0
    subscription, got = await join(broker, channel)
    assert await subscribers_in_redis(broker, channel) == 1
    offset = await post(broker, channel, "{}")
    await got.wait_for_offset(offset)
    await subscription.close()


async def test_a_publish_is_one_evalsha_however_many_listen(replicas: BrokerFactory, redis_server: RedisServer) -> None:
    publisher = await replicas(replica_id="p")
    listeners = [await replicas(replica_id=f"l{n}") for n in range(3)]
    subscriptions = [await join(b, "chat:cost") for b in listeners for _ in range(10)]
    warm_up = await post(publisher, "chat:cost", "{}")  # loads the script (NOSCRIPT -> SCRIPT LOAD) once
    stats = aioredis.Redis.from_url(redis_server.url)
    try:
        before = await commandstats(stats)
        offsets = await publish_many(publisher, "chat:cost", 20)
        after = await commandstats(stats)
    finally:
        await stats.aclose()
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert delta.pop("info") == 1
    # the script's own XADD, XLEN and PUBLISH are counted too; nothing else ran
    assert {name: calls for name, calls in delta.items() if calls} == {
        "evalsha": 20,
        "xadd": 20,
        "xlen": 20,
        "hsetnx": 20,
        "expire": 40,
        "publish": 20,
    }
    for _, got in subscriptions:
        await got.wait_for_offset(offsets[-1])
        assert got.offsets == [warm_up, *offsets]


async def test_publishes_after_redis_forgot_the_script_are_run_again_once(
    replicas: BrokerFactory, redis_server: RedisServer
) -> None:
    broker = await replicas()
    subscription, got = await join(broker, "chat:flushed")
    await post(broker, "chat:flushed")  # the script is loaded
    redis_server.client().script_flush()  # as a Redis restart would
    offsets = await asyncio.gather(*(post(broker, "chat:flushed", f'{{"n":{n}}}') for n in range(5)))
    await got.wait_for_offset(offsets[-1])
    assert got.offsets[1:] == list(offsets)  # each ran exactly once, in arrival order
    await subscription.close()


async def test_more_concurrent_publishes_than_one_pipeline_carries_all_land_in_arrival_order(broker: Broker) -> None:
    from broker.publisher import BATCH_LIMIT

    count = 2 * BATCH_LIMIT + 10
    offsets = await asyncio.gather(*(post(broker, "chat:burst", f'{{"n":{n}}}') for n in range(count)))
    assert sorted(offsets, key=parse_offset) == list(offsets)
    history = await broker.history("chat:burst", SINCE_START, count)
    assert [event.data for event in history] == [f'{{"n":{n}}}' for n in range(count)]
