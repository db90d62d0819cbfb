"""Two ``herald serve`` replicas on ``redis+sentinel://``: chat across replicas, through a kill -9 of the master."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.serving import presence_and_graphql_cross_replicas, two_replicas
from tests.helpers.chat import astatus, connect, eventually, frame_where
from tests.helpers.metrics import per_node, scrape, value
from tests.helpers.servers import Herald
from tests.helpers.topologies import SentinelTopology

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

WAIT_S = 30.0


async def test_replicas_on_a_sentinel_master_chat_and_follow_a_failover(
    sentinels: SentinelTopology, herald_factory: Callable[..., Herald]
) -> None:
    a, b = await two_replicas(herald_factory, sentinels.url, HERALD_PUBSUB_PROBE_S="1", HERALD_HEARTBEAT_S="3600")
    assert "sentinel master" in a.log()
    room = f"r{uuid.uuid4().hex[:8]}"
    ws, _ = await connect(a.ws, room)
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"{b.http}/api/chat/{room}/messages"
        first = (await client.post(url, json={"text": "before"})).json()["id"]
        assert (await frame_where(ws, lambda f: f["type"] == "message"))["id"] == first

        old_master = sentinels.master_port()
        samples = scrape(a)
        assert value(samples, "herald_redis_nodes") == 1
        assert per_node(samples, "herald_redis_pubsub_connections") == {f"127.0.0.1:{old_master}": 1}
        assert value(samples, "herald_redis_topology_changes_total") == 0

        sentinels.kill(old_master)
        killed = time.monotonic()
        accepted: list[str] = []
        async with asyncio.timeout(WAIT_S):
            while len(accepted) < 5:  # refused (503) during the failover, never accepted and dropped
                response = await client.post(url, json={"text": f"after {len(accepted)}"})
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                else:
                    assert response.status_code == 503, response.text
                    await asyncio.sleep(0.1)
        print(f"\npublishes accepted again {time.monotonic() - killed:.1f} s after kill -9 of the master")
    got = [await frame_where(ws, lambda f: f["type"] == "message", within=WAIT_S) for _ in range(5)]
    assert [f["id"] for f in got] == accepted

    async def ready() -> bool:
        return await astatus(f"{a.http}/ready") == 200 and await astatus(f"{b.http}/ready") == 200

    await eventually(ready, WAIT_S, "both replicas ready on the new master")
    # What an operator sees: the pub/sub connection moved to the promoted master, one failover followed.
    samples = scrape(a)
    assert per_node(samples, "herald_redis_pubsub_connections") == {f"127.0.0.1:{sentinels.master_port()}": 1}
    assert per_node(samples, "herald_redis_pubsub_channels") == {f"127.0.0.1:{sentinels.master_port()}": 1}
    assert value(samples, "herald_redis_topology_changes_total") == 1
    assert value(samples, "herald_redis_nodes") == 1
    await ws.close()


async def test_presence_graphql_and_one_pubsub_connection_per_replica_on_a_sentinel_master(
    sentinels: SentinelTopology, herald_factory: Callable[..., Herald]
) -> None:
    a, b = await two_replicas(herald_factory, sentinels.url, HERALD_HEARTBEAT_S="3600")
    rooms = [f"r{uuid.uuid4().hex[:8]}" for _ in range(4)]
    sockets = [(await connect(herald.ws, room))[0] for herald in (a, b) for room in rooms]
    await presence_and_graphql_cross_replicas(a, b)
    clients = sentinels.client_of(sentinels.master_port()).client_list()
    subscribed = [c for c in clients if int(c["sub"]) > 0 and not c["name"].startswith("sentinel-")]
    assert len(subscribed) == 2  # one pub/sub connection per replica, however many rooms
    for ws in sockets:
        await ws.close()
