"""The broker over a Sentinel-managed master (``open_broker`` with ``redis+sentinel://``).

A numbered stream published through a kill -9 of the master is received by a
live subscriber exactly once and in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker import chat_channel
from tests.cluster.helpers import until
from tests.cluster.test_broker_on_cluster import (
    BrokerFactory,
    assert_exactly_once_in_order,
    burst_of_joins,
    live_subscriber,
    numbered_stream,
)
from tests.helpers.brokers import brokers_on
from tests.helpers.topologies import SentinelTopology

pytestmark = pytest.mark.redis


@pytest.fixture
async def sentinel_broker(sentinels: SentinelTopology, key_prefix: str) -> AsyncIterator[BrokerFactory]:
    async with brokers_on(sentinels.url, key_prefix) as make:
        yield make


async def test_a_numbered_stream_survives_a_kill_9_of_the_sentinel_master(
    sentinel_broker: BrokerFactory, sentinels: SentinelTopology, request: pytest.FixtureRequest
) -> None:
    publisher, listener = await sentinel_broker(), await sentinel_broker(probe_s=1.0)
    channel = chat_channel("failover")
    received, subscription = await live_subscriber(listener, channel)
    victim = sentinels.master_port()

    acked, refusals, seconds = await numbered_stream(publisher, channel, lambda: sentinels.kill(victim))

    await until(lambda: set(acked) <= set(received), what="every acknowledged number delivered")
    assert_exactly_once_in_order(received, acked)
    assert refusals["unavailable"] + refusals["unknown"] > 0
    assert listener.ready
    request.node.user_properties.append(("sentinel_broker_kill_to_publish_s", round(seconds, 2)))
    print(
        f"broker on sentinel, kill -9: acknowledged {len(acked)}, delivered {len(received)}, {refusals}, "
        f"publishes flowing again after {seconds:.2f} s"
    )
    await subscription.close()


async def test_a_burst_larger_than_the_pool_waits_for_connections_as_on_one_server(
    sentinel_broker: BrokerFactory,
) -> None:
    """A reconnection storm (every client of a restarted replica at once) queues for the pool's
    connections, as ``redis://`` does; redis-py's own Sentinel pool refuses past ``pool_size``."""
    assert await burst_of_joins(await sentinel_broker(pool_size=4), 60) == []
