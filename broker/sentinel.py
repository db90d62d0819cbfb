"""Redis behind Sentinel (``redis+sentinel://``, SPEC §9): clients that follow every failover.

redis-py's asyncio Sentinel does the following: every *new* connection of a
``master_for`` pool asks the sentinels for the current master; a pooled
connection to a master that died fails once and reconnects to the promoted
one; a connection to a master that was demoted gets READONLY, which redis-py
turns into a ConnectionError and a reconnect. So the broker's usual error path
(a Redis error -> ``Unavailable``; the listener reconnects, re-subscribes and
replays) follows a failover without knowing about it. What is added here: the
same no-retry policy as ``broker.connect`` (a retried publish could publish
twice) and a cheap "is there a master?" question for ``/ready``.

Credentials in the URL are the data nodes'; the sentinels are asked without
them (a sentinel with ``requirepass`` would need its own: not supported yet).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from broker.urls import SentinelUrl

#: sentinels answer fast or not at all; a dead one must not hold up the question for long
SENTINEL_TIMEOUT_S = 1.0
#: how long a command waits for a free pooled connection before it is refused (as ``broker.connect``'s)
POOL_TIMEOUT_S = 5.0


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (master discovery, failover) that waits for a free connection when all
    are busy, as ``BlockingConnectionPool`` does, instead of raising: a burst of subscribes (a restarted
    replica's clients all coming back) queues briefly, as on ``redis://``, rather than being refused."""


def create_sentinel(topology: SentinelUrl) -> Sentinel:
    return Sentinel(  # type: ignore[no-untyped-call]
        [(address.host, address.port) for address in topology.sentinels],
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S},
    )


def create_sentinel_redis(topology: SentinelUrl, pool_size: int = 64, sentinel: Sentinel | None = None) -> redis.Redis:
    """A command client on the current master; ``client.pubsub()`` is a pub/sub connection to it too.

    Like ``broker.connect.create_redis``: no retries of its own, short connect
    timeout, and a pool that waits up to ``POOL_TIMEOUT_S`` for a free connection.
    """
    options: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 0),
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "db": topology.db,
        "username": topology.username,
        "password": topology.password,
        "max_connections": pool_size,
    }
    manager = sentinel or create_sentinel(topology)
    client: redis.Redis = manager.master_for(
        topology.master, connection_pool_class=BlockingSentinelConnectionPool, timeout=POOL_TIMEOUT_S, **options
    )
    return client


async def master_address(sentinel: Sentinel, master: str) -> tuple[str, int] | None:
    """Where the sentinels say the master is now; ``None`` while there is none (mid-failover, no quorum)."""
    try:
        host, port = await sentinel.discover_master(master)
    except (MasterNotFoundError, RedisError, OSError):
        return None
    return str(host), int(port)
