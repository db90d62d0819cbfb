"""Sharded pub/sub on a real 3-master Redis Cluster (SPEC §9, §8 liveness).

One connection per owning master, batched SSUBSCRIBE, messages flow; a master
killed, a slot migrated, a node stopped or stuck: the transport reports the
names lost, re-subscribes them on their owner, reports them restored, and
messages flow again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from broker.cluster_pubsub import CONFIRM_TIMEOUT_S, ClusterPubSub
from broker.errors import Unavailable
from tests.cluster.helpers import Recorder, channels_per_master, cluster_client, shardnumsub, until
from tests.helpers.topologies import ClusterTopology

pytestmark = pytest.mark.redis

Factory = Callable[..., Awaitable[tuple[ClusterPubSub, Recorder]]]


@pytest.fixture
async def publisher(cluster: ClusterTopology) -> AsyncIterator[RedisCluster]:
    client = cluster_client(cluster)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
async def transports(cluster: ClusterTopology, key_prefix: str) -> AsyncIterator[Factory]:
    made: list[tuple[ClusterPubSub, RedisCluster]] = []

    async def make(probe_s: float = 1.0, **options: Any) -> tuple[ClusterPubSub, Recorder]:
        recorder = Recorder()
        client = cluster_client(cluster)
        transport = ClusterPubSub(
            client,
            control=f"{key_prefix}:replica:{len(made) + 1}",
            probe_s=probe_s,
            on_message=recorder.on_message,
            on_lost=recorder.on_lost,
            on_restored=recorder.on_restored,
            **options,
        )
        made.append((transport, client))
        await transport.start()
        return transport, recorder

    yield make
    for transport, client in made:
        await transport.stop()
        await client.aclose()


async def spublish(client: RedisCluster, name: str, payload: str) -> int:
    """SPUBLISH on the slot's master, as the publish script will (redis-py routes by the channel)."""
    node = client.nodes_manager.get_node_from_slot(client.keyslot(name))
    return int(await client.execute_command("SPUBLISH", name, payload, target_nodes=node))


async def flowing(client: RedisCluster, recorder: Recorder, name: str, within: float = 30.0) -> float:
    """Publish to ``name`` until one arrives; seconds it took. Publish errors (failover) are retried."""
    start = time.monotonic()
    attempt = 0
    while time.monotonic() - start < within:
        attempt += 1
        payload = f"ping-{attempt}"
        try:
            await spublish(client, name, payload)
        except Exception:
            await asyncio.sleep(0.1)
            continue
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            if payload.encode() in recorder.got(name):
                return time.monotonic() - start
            await asyncio.sleep(0.01)
    raise AssertionError(f"nothing flows on {name} within {within} s")


async def test_one_connection_per_owning_master_and_messages_flow(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=3)
    names = [name for names in spread.values() for name in names]
    for port in spread:
        cluster.client(port).config_resetstat()
    transport, recorder = await transports()

    # Nine subscribe calls in one loop turn: batched into one write per node.
    await asyncio.gather(*(transport.subscribe([name]) for name in names))

    assert transport.ready
    assert sorted(transport.links().values()) == [3, 3, 3]
    for port, owned in spread.items():
        client = cluster.client(port)
        subscribers = [c for c in client.client_list() if int(c["ssub"]) > 0]
        assert len(subscribers) == 1, subscribers  # one pub/sub connection on this master
        assert int(subscribers[0]["ssub"]) == 3 + 1  # its three channels and the probe channel
        assert [shardnumsub(cluster, port, name) for name in owned] == [1, 1, 1]
        calls = client.info("commandstats")["cmdstat_ssubscribe"]["calls"]
        assert calls <= 1 + 3  # the probe, then one SSUBSCRIBE per slot (never one per subscribe call)

    for name in names:
        assert await spublish(publisher, name, f"hello {name}") == 1
    await until(lambda: all(recorder.got(n) == [f"hello {n}".encode()] for n in names), what="all delivered")
    assert recorder.lost == [] and recorder.restored == []


async def test_unsubscribe_drops_an_idle_connection(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=2)
    transport, recorder = await transports()
    port, (a, b) = next(iter(spread.items()))
    await transport.subscribe([a, b])
    assert len(transport.links()) == 1

    await transport.unsubscribe([a])
    await until(lambda: shardnumsub(cluster, port, a) == 0, what="a gone")
    await spublish(publisher, a, "late")
    await spublish(publisher, b, "still")
    await until(lambda: recorder.got(b) == [b"still"], what="b delivered")
    assert recorder.got(a) == []

    await transport.unsubscribe([b])
    assert transport.links() == {}
    await until(lambda: not any(int(c["ssub"]) for c in cluster.client(port).client_list()), what="connection closed")


async def test_a_killed_master_is_reported_lost_then_restored_on_its_replica(
    cluster: ClusterTopology,
    transports: Factory,
    publisher: RedisCluster,
    key_prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=2)
    names = [name for names in spread.values() for name in names]
    transport, recorder = await transports(probe_s=1.0)
    await transport.subscribe(names)
    victim, on_victim = next(iter(spread.items()))

    killed = time.monotonic()
    cluster.kill(victim)
    await until(lambda: set(on_victim) <= recorder.ever_lost(), what="reported lost")
    assert recorder.ever_lost() == set(on_victim)  # the other masters' channels were never lost
    assert not transport.ready
    await until(lambda: set(on_victim) <= recorder.ever_restored(), what="restored")
    restored_s = time.monotonic() - killed
    for name in on_victim:
        await flowing(publisher, recorder, name)
    flowing_s = time.monotonic() - killed
    request.node.user_properties += [("kill_to_restored_s", round(restored_s, 2)), ("kill_to_flowing_s", flowing_s)]
    print(f"cluster: kill -9 -> re-subscribed {restored_s:.2f} s, messages flowing {flowing_s:.2f} s")

    assert transport.ready
    assert len(transport.links()) == 3
    for name in names:
        await spublish(publisher, name, "after")
    await until(lambda: all(b"after" in recorder.got(n) for n in names), what="every channel flows")


async def test_subscribing_on_a_dead_master_is_refused_then_works_after_failover(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=1)
    victim, [name] = next(iter(spread.items()))
    transport, recorder = await transports()
    cluster.kill(victim)

    start = time.monotonic()
    with pytest.raises(Unavailable):
        await transport.subscribe([name])
    assert time.monotonic() - start < CONFIRM_TIMEOUT_S
    assert transport.links() == {} and recorder.lost == []

    cluster.wait_failover(victim)
    for _ in range(100):  # what the broker's caller sees: refused until the cluster has a new master
        try:
            await transport.subscribe([name])
            break
        except Unavailable:
            await asyncio.sleep(0.1)
    assert transport.ready
    await flowing(publisher, recorder, name)


async def test_a_migrated_slot_is_resubscribed_on_its_new_owner_without_loss(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=1)
    (source, [moving]), (target, [staying]) = list(spread.items())[:2]
    transport, recorder = await transports()
    await transport.subscribe([moving, staying])

    cluster.migrate_slot_of(moving, target)

    await until(lambda: moving in recorder.ever_restored(), what="restored after the migration")
    assert recorder.ever_lost() == {moving}
    assert transport.ready
    assert shardnumsub(cluster, target, moving) == 1
    assert shardnumsub(cluster, source, moving) == 0
    # Both names now live on one master: still one connection there.
    assert len(transport.links()) == 1

    await publisher.nodes_manager.initialize()
    for i in range(20):
        await spublish(publisher, moving, str(i))
    await until(lambda: len(recorder.got(moving)) == 20, what="all 20 after the migration")
    assert recorder.got(moving) == [str(i).encode() for i in range(20)]
    assert len(recorder.lost) == 1


async def test_a_stopped_master_does_not_stall_the_others(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=1)
    transport, recorder = await transports(probe_s=0.5)
    names = [name for names in spread.values() for name in names]
    await transport.subscribe(names)
    stopped, [frozen] = next(iter(spread.items()))
    others = [name for port, owned in spread.items() if port != stopped for name in owned]

    cluster.pause(stopped)
    try:
        for i in range(5):
            for name in others:
                await spublish(publisher, name, str(i))
            await until(lambda i=i: all(str(i).encode() in recorder.got(n) for n in others), 2.0, "others flow")
        await until(lambda: frozen in recorder.ever_lost(), 10.0, "the stopped link noticed by its probe")
        assert set(recorder.ever_lost()) == {frozen}
    finally:
        cluster.resume(stopped)
    await until(lambda: frozen in recorder.ever_restored(), what="restored once the cluster settled")
    await publisher.nodes_manager.initialize()
    await flowing(publisher, recorder, frozen)


async def test_a_stuck_link_is_detected_by_the_probe(
    cluster: ClusterTopology, transports: Factory, publisher: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=1)
    transport, recorder = await transports(probe_s=0.3)
    stuck_port, [stuck] = next(iter(spread.items()))
    await transport.subscribe([stuck])
    reconnects = transport.reconnects

    # The node keeps its connections open but serves nobody: no error, no EOF, just silence.
    cluster.client(stuck_port).execute_command("CLIENT PAUSE", 3000, "ALL")
    await until(lambda: stuck in recorder.ever_lost(), 5.0, "probe noticed the silence")
    assert not transport.ready
    await until(lambda: stuck in recorder.ever_restored(), what="restored after the pause")
    assert transport.reconnects > reconnects
    assert transport.ready
    await flowing(publisher, recorder, stuck)
