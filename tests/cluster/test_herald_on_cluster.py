"""Two ``herald serve`` replicas on ``redis+cluster://``: chat, GraphQL and presence across replicas,
rooms over every master, one sharded subscription per replica per channel, one pub/sub connection
per replica per master; a numbered stream through a slot migration. (kill -9: test_herald_failover.py)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
import pytest

from broker.keys import ChannelKeys, chat_channel
from tests.cluster.helpers import shardnumsub
from tests.cluster.serving import (
    numbered_stream_through,
    presence_and_graphql_cross_replicas,
    pubsub_connections,
    two_replicas,
)
from tests.helpers.chat import astatus, connect, eventually, frame_where, say
from tests.helpers.metrics import per_node, scrape, value
from tests.helpers.servers import Herald
from tests.helpers.topologies import ClusterTopology

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

WAIT_S = 30.0


def rooms_on_every_master(cluster: ClusterTopology, prefix: str, per_master: int) -> dict[int, list[str]]:
    """Room names grouped by the master that owns their channel's slot."""
    found: dict[int, list[str]] = {port: [] for port in cluster.masters()}
    while any(len(rooms) < per_master for rooms in found.values()):
        room = f"r{uuid.uuid4().hex[:8]}"
        owner = cluster.master_of(ChannelKeys.of(prefix, chat_channel(room)).pubsub)
        if len(found[owner]) < per_master:
            found[owner].append(room)
    return found


async def test_replicas_on_a_cluster_chat_across_masters_with_one_link_per_master(
    cluster: ClusterTopology, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    a, b = await two_replicas(herald_factory, cluster.url(), "ra", "rb", HERALD_HEARTBEAT_S="3600")
    assert "redis cluster" in a.log()
    assert await astatus(f"{a.http}/ready") == 200 and await astatus(f"{b.http}/ready") == 200
    spread = rooms_on_every_master(cluster, key_prefix, per_master=2)
    rooms = [room for group in spread.values() for room in group]
    on_a = {room: (await connect(a.ws, room))[0] for room in rooms}
    on_b = {room: (await connect(b.ws, room))[0] for room in rooms}

    async with httpx.AsyncClient(timeout=10) as client:
        for room in rooms:
            posted = await client.post(f"{b.http}/api/chat/{room}/messages", json={"text": f"rest {room}"})
            assert posted.status_code == 202, posted.text
            await say(on_a[room], f"ws {room}")
    for room in rooms:
        for ws in (on_a[room], on_b[room]):
            texts = [(await frame_where(ws, lambda f: f["type"] == "message"))["text"] for _ in range(2)]
            assert texts == [f"rest {room}", f"ws {room}"]

    for port, group in spread.items():
        for room in group:
            # one sharded subscription per replica, on the master that owns the room
            assert shardnumsub(cluster, port, ChannelKeys.of(key_prefix, chat_channel(room)).pubsub) == 2
        # one pub/sub connection per replica on each master
        assert pubsub_connections(cluster, port) == {"herald-pubsub-ra": 1, "herald-pubsub-rb": 1}
    print(f"\npub/sub connections per master (CLIENT LIST), {len(rooms)} rooms on 3 masters: ", end="")
    print({port: pubsub_connections(cluster, port) for port in spread})
    # ... and what each replica's /metrics says about it
    for herald in (a, b):
        samples = scrape(herald)
        assert value(samples, "herald_redis_nodes") == 3
        assert value(samples, "herald_redis_topology_changes_total") == 0
        nodes = {f"127.0.0.1:{port}" for port in spread}
        assert per_node(samples, "herald_redis_pubsub_connections") == dict.fromkeys(nodes, 1)
        assert per_node(samples, "herald_redis_pubsub_channels") == dict.fromkeys(nodes, 2)
    for ws in [*on_a.values(), *on_b.values()]:
        await ws.close()


async def test_presence_and_graphql_subscriptions_cross_replicas_on_a_cluster(
    cluster: ClusterTopology, herald_factory: Callable[..., Herald]
) -> None:
    a, b = await two_replicas(herald_factory, cluster.url(), HERALD_HEARTBEAT_S="3600")
    await presence_and_graphql_cross_replicas(a, b)


async def test_a_numbered_stream_through_a_slot_migration_arrives_exactly_once_in_order(
    cluster: ClusterTopology, herald_factory: Callable[..., Herald], key_prefix: str
) -> None:
    a, b = await two_replicas(herald_factory, cluster.url(), HERALD_HEARTBEAT_S="3600", HERALD_PUBSUB_PROBE_S="1")
    room = f"m{uuid.uuid4().hex[:8]}"
    stream = ChannelKeys.of(key_prefix, chat_channel(room)).stream
    target = next(port for port in cluster.masters() if port != cluster.master_of(stream))

    figures = await numbered_stream_through(room, lambda: cluster.migrate_slot_of(stream, target), b, [a, b])

    print("\n" + figures.line("herald serve on a cluster, slot migration mid-stream"))
    assert figures.lost == [] and figures.duplicated == 0
    assert figures.received == sorted(figures.received), "out of order"
    assert cluster.master_of(stream) == target


async def test_a_replica_whose_cluster_is_unreachable_serves_503s_until_it_is_up(
    herald_factory: Callable[..., Herald], tmp_path_factory: pytest.TempPathFactory
) -> None:
    late = ClusterTopology(tmp_path_factory.mktemp("late"))  # its ports, not started yet
    seeds = ",".join(f"127.0.0.1:{port}" for port in late.nodes)
    herald = herald_factory(f"redis+cluster://{seeds}", HERALD_HEARTBEAT_S="3600")

    async def ready() -> bool:
        return await astatus(f"{herald.http}/ready") == 200

    async with httpx.AsyncClient(timeout=10) as client:
        assert not await ready()
        refused = await client.post(f"{herald.http}/api/chat/room/messages", json={"text": "hi"})
        assert refused.status_code == 503, refused.text
        await asyncio.to_thread(late.start)
        try:
            await eventually(ready, WAIT_S, "ready once the cluster is up")
            ws, _ = await connect(herald.ws, "room")
            posted = await client.post(f"{herald.http}/api/chat/room/messages", json={"text": "hi"})
            assert posted.status_code == 202, posted.text
            assert (await frame_where(ws, lambda f: f["type"] == "message"))["text"] == "hi"
            await ws.close()
        finally:
            late.stop()
