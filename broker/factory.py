"""``open_broker(url, options)``: the ``Broker`` implementation that fits the URL's topology."""

from __future__ import annotations

from broker.broker import RedisBroker
from broker.connect import redact
from broker.facade import Broker, BrokerOptions
from broker.sentinel import create_sentinel_redis
from broker.urls import SentinelUrl, parse_redis_url


def open_broker(url: str, options: BrokerOptions) -> Broker:
    """``memory://`` (embedded), ``redis://``/``rediss://`` (one server) and ``redis+sentinel://`` (the
    master the sentinels name, followed through failovers). ``InvalidRedisUrl`` for anything else;
    ``redis+cluster://`` is parsed but not served yet (its pub/sub and publish parts are in
    ``broker.cluster_*``, not wired)."""
    topology = parse_redis_url(url)
    if isinstance(topology, SentinelUrl):
        # Sentinel changes only where the client connects: every connection, the pub/sub link's
        # included, asks the sentinels for the master, so a reconnect after a failover finds the new one.
        client = create_sentinel_redis(topology, options.pool_size)
        return RedisBroker(client, options, description=f"sentinel master {topology.master} via {redact(url)}")
    return RedisBroker.from_url(url, options)
