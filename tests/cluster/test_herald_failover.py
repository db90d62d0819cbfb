"""SPEC §9's promise, end to end: with ``HERALD_REDIS_MIN_REPLICAS_ACK=1`` a ``kill -9`` of the master under a
numbered stream loses no acknowledged event, on Redis Cluster and on Sentinel, and the failover window is
refused (503), never accepted and dropped; ``/ready`` says 503 meanwhile.

Two replicas per master here: with ``WAIT 1`` and a single replica, the promoted replica has none of its
own until the killed node returns, so every publish would be "not confirmed" until then (by design).
Each topology serves one test and is not healed after it (the module's end stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from broker.keys import ChannelKeys, chat_channel
from tests.cluster.conftest import start_topology
from tests.cluster.helpers import until
from tests.cluster.serving import (
    WAIT_S,
    Figures,
    numbered_stream_through,
    numbers_until,
    pubsub_connections,
    two_replicas,
)
from tests.helpers.chat import connect
from tests.helpers.servers import Herald
from tests.helpers.topologies import ClusterTopology, SentinelTopology

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

SETTINGS = {
    "HERALD_REDIS_MIN_REPLICAS_ACK": "1",
    "HERALD_REDIS_ACK_TIMEOUT_MS": "500",
    "HERALD_PUBSUB_PROBE_S": "1",
    "HERALD_HEARTBEAT_S": "3600",
}


@pytest.fixture(scope="module")
def wide_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    topology = start_topology(lambda: ClusterTopology(tmp_path_factory.mktemp("cluster"), replicas=2))
    yield topology
    topology.stop()


@pytest.fixture(scope="module")
def wide_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = start_topology(lambda: SentinelTopology(tmp_path_factory.mktemp("sentinel"), replicas=2))
    yield topology
    topology.stop()


@contextlib.asynccontextmanager
async def watching_ready(herald: Herald) -> AsyncIterator[list[int]]:
    """``/ready`` statuses seen every 50 ms while the block runs."""
    seen: list[int] = []

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    seen.append((await client.get(f"{herald.http}/ready")).status_code)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(poll())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def check(figures: Figures, ready: list[int], what: str, request: pytest.FixtureRequest) -> None:
    print("\n" + figures.line(what))
    request.node.user_properties.append(("kill_to_acknowledged_s", round(figures.flowing_again_s, 2)))
    assert figures.lost == [], f"acknowledged but never delivered: {figures.lost}"
    assert figures.duplicated == 0
    assert figures.received == sorted(figures.received), "out of order"
    assert 503 in ready  # /ready told the truth in the window...
    await until(lambda: ready[-1] == 200, WAIT_S, "ready again")  # ...and tells it afterwards


async def test_kill_9_of_a_cluster_master_mid_stream_loses_no_acknowledged_event(
    wide_cluster: ClusterTopology, herald_factory: Callable[..., Herald], request: pytest.FixtureRequest
) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}"
    a, b = await two_replicas(herald_factory, wide_cluster.url(), "r1", "r2", HERALD_KEY_PREFIX=prefix, **SETTINGS)
    room = f"k{uuid.uuid4().hex[:8]}"
    victim = wide_cluster.master_of(ChannelKeys.of(prefix, chat_channel(room)).stream)
    # listeners that stay on both replicas through the failover (and keep the room subscribed after it)
    stay = [(await connect(herald.ws, room))[0] for herald in (a, b)]
    try:
        async with watching_ready(b) as ready:
            figures = await numbered_stream_through(room, lambda: wide_cluster.kill(victim), b, [a, b])
            await check(figures, ready, "herald serve on a cluster (2 replicas per master, WAIT 1), kill -9", request)
        for ws in stay:  # never reconnected: every acknowledged number, once, in order
            got = await numbers_until(ws, figures.acknowledged[-1])
            assert set(figures.acknowledged) <= set(got) and got == sorted(set(got))
        # the room re-subscribed on the promoted replica: one pub/sub connection per replica there
        owner = wide_cluster.master_of(ChannelKeys.of(prefix, chat_channel(room)).stream)
        assert owner != victim
        connections = pubsub_connections(wide_cluster, owner)
        print(f"pub/sub connections on the promoted master: {connections}")
        assert connections == {"herald-pubsub-r1": 1, "herald-pubsub-r2": 1}
    finally:
        for ws in stay:
            await ws.close()


async def test_kill_9_of_the_sentinel_master_mid_stream_loses_no_acknowledged_event(
    wide_sentinels: SentinelTopology, herald_factory: Callable[..., Herald], request: pytest.FixtureRequest
) -> None:
    a, b = await two_replicas(herald_factory, wide_sentinels.url, **SETTINGS)
    room = f"k{uuid.uuid4().hex[:8]}"
    async with watching_ready(b) as ready:
        figures = await numbered_stream_through(
            room, lambda: wide_sentinels.kill(wide_sentinels.master_port()), b, [a, b]
        )
        await check(figures, ready, "herald serve on sentinel (2 replicas, WAIT 1), kill -9 of the master", request)
