"""``open_broker(url, options)``: the ``Broker`` implementation that fits the URL's topology."""

from __future__ import annotations

from broker.broker import RedisBroker
from broker.cluster_connect import create_cluster_redis
from broker.connect import redact
from broker.facade import Broker, BrokerOptions
from broker.sentinel import create_sentinel_redis
from broker.urls import ClusterUrl, SentinelUrl, parse_redis_url
from broker.wiring import cluster_parts, standalone_parts


def open_broker(url: str, options: BrokerOptions) -> Broker:
    """``memory://`` (embedded), ``redis://``/``rediss://`` (one server), ``redis+sentinel://`` (the
    master the sentinels name, followed through failovers) and ``redis+cluster://``/``rediss+cluster://``
    (sharded pub/sub, every publish on its slot's master). ``InvalidRedisUrl`` for anything else."""
    topology = parse_redis_url(url)
    if isinstance(topology, SentinelUrl):
        # Sentinel changes only where the client connects: every connection, the pub/sub link's
        # included, asks the sentinels for the master, so a reconnect after a failover finds the new one.
        client = create_sentinel_redis(topology, options.pool_size)
        description = f"sentinel master {topology.master} via {redact(url)}"
        return RedisBroker(client, options, standalone_parts(client, options), description=description)
    if isinstance(topology, ClusterUrl):
        # The slot map is loaded by the pub/sub transport's start (and refreshed by it and the publisher).
        cluster = create_cluster_redis(topology, options.pool_size)
        description = f"redis cluster via {redact(url)} (sharded pub/sub)"
        return RedisBroker(cluster, options, cluster_parts(cluster, options), description=description)
    return RedisBroker.from_url(url, options)
