"""``redis+cluster://`` / ``rediss+cluster://`` -> a redis-py asyncio ``RedisCluster`` (SPEC §9).

The seeds are only where discovery starts; the slot map lists the rest. Like
``broker.connect.create_redis``: no retries of its own (a re-sent publish could
publish twice; ``broker.cluster_publish`` decides what may be re-sent) and
short timeouts, so a dead or stopped node costs seconds: the slot-map refresh
asks the nodes one after another.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import SlotNotCoveredError

from broker.urls import ClusterUrl

CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 2.0


def read_share(pool_size: int) -> int:
    """Page-read MULTIs in flight at once (``broker.reads``): a quarter of each node's pool."""
    return max(1, pool_size // 4)


class BoundedRedisCluster(RedisCluster):
    """A ``RedisCluster`` whose commands wait their turn once ``in_flight`` are out, so that no node's
    pool runs dry: redis-py's cluster nodes raise ``MaxConnectionsError`` past ``max_connections``
    instead of waiting, which turned a burst of joins (a restarted replica's clients all coming back)
    into 1013s where ``redis://``'s blocking pool queues them. (Pipelines, the page reads, bound
    themselves; the publish script has its own sender per node.)"""

    def __init__(self, *args: Any, in_flight: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(in_flight)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._turns:
            return await super().execute_command(*args, **kwargs)


def create_cluster_redis(
    topology: ClusterUrl, pool_size: int = 64, socket_timeout_s: float = SOCKET_TIMEOUT_S
) -> RedisCluster:
    """Call ``await client.initialize()`` (or ``ClusterPubSub.start``) before use."""
    options: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": socket_timeout_s,
        "max_connections": pool_size,
        "username": topology.username,
        "password": topology.password,
        # Replicas never serve Herald: reads must see what the script just wrote.
        "read_from_replicas": False,
    }
    if topology.tls:
        options["ssl"] = True
    # What the page reads and the publish senders (one per node, one SCRIPT LOAD) may hold is left over.
    in_flight = max(1, pool_size - read_share(pool_size) - 2)
    return BoundedRedisCluster(
        startup_nodes=[ClusterNode(a.host, a.port) for a in topology.seeds], in_flight=in_flight, **options
    )


def master_of_slot(cluster: RedisCluster, slot: int) -> ClusterNode:
    """The slot's master in the client's slot map; ``SlotNotCoveredError`` when it has none (redis-py 8.1
    raises a bare ``KeyError`` while the map is still empty: no seed answered yet)."""
    try:
        return cluster.nodes_manager.get_node_from_slot(slot)
    except KeyError as exc:
        raise SlotNotCoveredError(f"slot {slot}: no slot map yet") from exc
