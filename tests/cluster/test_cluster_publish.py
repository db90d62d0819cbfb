"""Cluster publish on a real 3-master cluster: one script call on the slot's master, SPUBLISH inside.

A stand-in script (the real publish.lua takes the pub/sub command as an
argument later): append to the channel's stream, SPUBLISH "<id>\\n<data>",
return the id. Slot moves, lost scripts and a killed master are ridden out;
a publish that cannot be placed is refused, and with WAIT 1 no acknowledged
publish is lost to a kill -9.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from broker.cluster_publish import ClusterScript, SlotCommands
from broker.cluster_pubsub import ClusterPubSub
from broker.errors import NotConfirmed, OutcomeUnknown, Unavailable
from broker.keys import ChannelKeys
from tests.cluster.helpers import Recorder, channels_per_master, cluster_client, until
from tests.helpers.topologies import ClusterTopology

pytestmark = pytest.mark.redis

SCRIPT = """
local id = redis.call('XADD', KEYS[1], '*', 'd', ARGV[2])
redis.call('SPUBLISH', ARGV[1], id .. '\\n' .. ARGV[2])
return id
"""


def keys_of(pubsub_name: str) -> ChannelKeys:
    """The channel's keys from its pub/sub name ("p:{chat:r}:events")."""
    prefix, _, rest = pubsub_name.partition(":{")
    return ChannelKeys.of(prefix, rest.partition("}")[0])


async def publish(script: ClusterScript, channel: ChannelKeys, data: str) -> bytes:
    result: bytes = await script([channel.stream], [channel.pubsub, data])
    return result


@pytest.fixture
async def client(cluster: ClusterTopology) -> AsyncIterator[RedisCluster]:
    client = cluster_client(cluster)
    await client.initialize()
    yield client
    await client.aclose()


def stream_len(cluster: ClusterTopology, channel: ChannelKeys) -> int:
    return int(cluster.client(cluster.master_of(channel.stream)).xlen(channel.stream))


async def test_publishes_run_on_each_slots_master_and_reach_subscribers(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, per_master=2)
    channels = [keys_of(name) for names in spread.values() for name in names]
    recorder = Recorder()
    listener_client = cluster_client(cluster)
    transport = ClusterPubSub(
        listener_client,
        control=f"{key_prefix}:replica:r1",
        probe_s=1.0,
        on_message=recorder.on_message,
        on_lost=recorder.on_lost,
        on_restored=recorder.on_restored,
    )
    await transport.start()
    try:
        await transport.subscribe([c.pubsub for c in channels])
        script = ClusterScript(client, SCRIPT)
        ids = {c.pubsub: [await publish(script, c, f"m{i}") for i in range(3)] for c in channels}
        await until(lambda: all(len(recorder.got(c.pubsub)) == 3 for c in channels), what="all delivered")
        for c in channels:
            assert recorder.got(c.pubsub) == [ids[c.pubsub][i] + f"\nm{i}".encode() for i in range(3)]
            assert stream_len(cluster, c) == 3  # on the slot's master itself, not via a redirect copy
        # Each master ran the script for its own channels: 2 channels x 3 publishes.
        for port in spread:
            stats = cluster.client(port).info("commandstats")
            assert stats["cmdstat_evalsha"]["calls"] >= 6
    finally:
        await transport.stop()
        await listener_client.aclose()


async def test_spublish_reaches_the_channels_master_even_with_a_stale_slot_map(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, 1)
    (_source, [name]), (target, _) = list(spread.items())[:2]
    recorder = Recorder()
    listener_client = cluster_client(cluster)
    transport = ClusterPubSub(
        listener_client,
        control=f"{key_prefix}:replica:r1",
        probe_s=1.0,
        on_message=recorder.on_message,
        on_lost=recorder.on_lost,
        on_restored=recorder.on_restored,
    )
    await transport.start()
    try:
        await transport.subscribe([name])
        commands = SlotCommands(client)
        assert await commands.spublish(name, "one") == 1
        cluster.migrate_slot_of(name, target)  # ``client`` still maps the slot to its old master
        await until(lambda: name in recorder.ever_restored(), what="subscriber followed the slot")
        assert await commands.spublish(name, "two") == 1
        await until(lambda: recorder.got(name) == [b"one", b"two"], what="both delivered")
    finally:
        await transport.stop()
        await listener_client.aclose()


async def test_a_burst_is_pipelined_per_node_in_arrival_order(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    """Far more concurrent publishes than the pool has connections, on flushed scripts: all land, in order."""
    spread = channels_per_master(cluster, key_prefix, 10)
    channels = [keys_of(name) for names in spread.values() for name in names]
    for port in spread:
        cluster.client(port).script_flush()
    script = ClusterScript(client, SCRIPT)

    calls = [(channels[i % len(channels)], str(i)) for i in range(3000)]
    ids = await asyncio.gather(*(publish(script, channel, data) for channel, data in calls))

    for channel in channels:
        mine = [id_ for (c, _), id_ in zip(calls, ids, strict=True) if c is channel]
        assert mine == sorted(mine, key=lambda i: tuple(map(int, i.split(b"-"))))  # arrival order kept
        assert stream_len(cluster, channel) == len(mine) == 100  # each ran exactly once


async def test_a_flushed_script_is_loaded_again(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    channel = keys_of(channels_per_master(cluster, key_prefix, 1)[cluster.masters()[0]][0])
    script = ClusterScript(client, SCRIPT)
    await publish(script, channel, "a")
    cluster.client(cluster.master_of(channel.stream)).script_flush()
    await publish(script, channel, "b")
    assert stream_len(cluster, channel) == 2


async def test_a_moved_slot_is_followed_with_a_stale_slot_map(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, 1)
    (_source, [name]), (target, _) = list(spread.items())[:2]
    channel = keys_of(name)
    script = ClusterScript(client, SCRIPT)
    await publish(script, channel, "before")

    cluster.migrate_slot_of(channel.stream, target)  # this client's slot map still says "source"
    await publish(script, channel, "after")

    assert cluster.master_of(channel.stream) == target
    assert cluster.client(target).xlen(channel.stream) == 2


async def test_a_publish_mid_migration_is_asked_over_to_the_importing_node(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str
) -> None:
    spread = channels_per_master(cluster, key_prefix, 1)
    (source, [name]), (target, _) = list(spread.items())[:2]
    channel = keys_of(name)
    script = ClusterScript(client, SCRIPT)
    await publish(script, channel, "before")
    slot = client.keyslot(channel.stream)
    src, dst = cluster.client(source), cluster.client(target)
    dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", cluster.node_id(source))
    src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", cluster.node_id(target))
    src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", channel.stream)
    try:
        await publish(script, channel, "during")  # source answers ASK: the key has left
        pipe = dst.pipeline(transaction=False)
        pipe.execute_command("ASKING").xlen(channel.stream)
        assert pipe.execute()[1] == 2  # it ran on the importing node
    finally:
        for port in [target, *(p for p in cluster.masters() if p != target)]:
            cluster.client(port).execute_command("CLUSTER SETSLOT", slot, "NODE", cluster.node_id(target))
        cluster.wait_healthy()


async def test_wait_confirms_or_refuses(cluster: ClusterTopology, client: RedisCluster, key_prefix: str) -> None:
    channel = keys_of(channels_per_master(cluster, key_prefix, 1)[cluster.masters()[0]][0])
    assert await publish(ClusterScript(client, SCRIPT, min_replicas_ack=1), channel, "acked")
    with pytest.raises(NotConfirmed):
        await publish(ClusterScript(client, SCRIPT, min_replicas_ack=2, ack_timeout_ms=50), channel, "short")
    assert stream_len(cluster, channel) == 2  # the unconfirmed one is stored all the same


async def test_kill_9_loses_no_acknowledged_publish_and_refuses_the_rest(
    cluster: ClusterTopology, client: RedisCluster, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    """WAIT 1 under a kill -9: acknowledged ones survive; meanwhile publishes are refused or unconfirmed.

    The promoted replica has no replica of its own until the killed node comes back (as its
    replica), so until then publishes run but cannot be confirmed: 503 "not confirmed".
    """
    spread = channels_per_master(cluster, key_prefix, 1)
    victim, [name] = next(iter(spread.items()))
    channel = keys_of(name)
    script = ClusterScript(client, SCRIPT, min_replicas_ack=1, ack_timeout_ms=200, place_timeout_s=0.5)
    acked: list[str] = []
    outcomes = {"refused": 0, "unknown": 0, "unconfirmed": 0}
    killed_at = placed_at = restarted_at = acked_again_at = 0.0
    start = time.monotonic()
    for i in range(1_000_000):
        now = time.monotonic()
        assert now - start < 60, f"stuck: {outcomes}, {len(acked)} acknowledged"
        if not killed_at and len(acked) >= 20:
            cluster.kill(victim)
            killed_at = now
        if placed_at and not restarted_at:
            cluster.restart(victim)  # it rejoins as the new master's replica: WAIT 1 can succeed again
            restarted_at = time.monotonic()
        try:
            await publish(script, channel, str(i))
            acked.append(str(i))
            placed_at = placed_at or (killed_at and time.monotonic())
            if restarted_at and not acked_again_at:
                acked_again_at = time.monotonic()
        except NotConfirmed:
            outcomes["unconfirmed"] += 1
            placed_at = placed_at or (killed_at and time.monotonic())
        except OutcomeUnknown:
            outcomes["unknown"] += 1
        except Unavailable:
            outcomes["refused"] += 1
        if acked_again_at and len(acked) >= 40:
            break
        await asyncio.sleep(0.005)
    placed_s, acked_s = placed_at - killed_at, acked_again_at - restarted_at
    request.node.user_properties += [("cluster_kill_to_placed_s", round(placed_s, 2))]
    print(
        f"cluster publish: kill -9 -> publishes placed again in {placed_s:.2f} s, acknowledged "
        f"{acked_s:.2f} s after the restart; acknowledged {len(acked)}, {outcomes}"
    )
    assert outcomes["refused"] > 0  # the failover window was refused, not silently absorbed
    stored = cluster.client(cluster.master_of(channel.stream)).xrange(channel.stream)
    data = [fields[b"d"].decode() for _id, fields in stored]
    assert set(acked) <= set(data)  # acknowledged and lost: none
    assert len(data) == len(set(data))  # no publish ran twice
