"""URL -> Redis client: ``redis://``/``rediss://`` is a real server, ``memory://`` an embedded one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

MEMORY_SCHEME = "memory"


def is_memory(url: str) -> bool:
    return urlsplit(url).scheme == MEMORY_SCHEME


def redact(url: str) -> str:
    """The URL with its password replaced, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def text(reply: Any) -> str:
    """One item of a Redis reply as ``str``: the clients made here do not decode replies, so it is ``bytes``."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def create_redis(url: str, pool_size: int = 64, pool_timeout_s: float = 5.0) -> redis.Redis:
    """A client that never retries on its own, over a pool that waits for a free connection.

    A retried EVALSHA could publish an event twice, and a silently reconnected
    pub/sub connection would hide the gap the broker must replay, so errors
    surface and the broker decides what to do. redis-py's default pool raises
    once ``max_connections`` are busy; a burst of publishes should queue
    briefly instead (``pool_timeout_s``), then fail as unavailable.
    """
    options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 2, "socket_timeout": 5}
    if is_memory(url):
        import fakeredis

        # One FakeServer per broker: an embedded Redis private to this process.
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), **options)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=pool_timeout_s, **options)
    return redis.Redis.from_pool(pool)


def dedicated(client: redis.Redis) -> redis.Redis:
    """A client of the same server over one connection of its own, outside ``client``'s pool.

    For the pub/sub probe: it must measure Redis, not queue behind a burst that holds every pooled
    connection (a subscribe storm's history reads), or a busy replica would call Redis dead.
    """
    pool = client.connection_pool
    own = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs)
    return redis.Redis.from_pool(own)


async def close_client(client: redis.Redis) -> None:
    """Close ``client``, and for a Sentinel-managed one the connections to the sentinels it asked."""
    await client.aclose()
    # (a RedisCluster client has no single pool; a plain one has no sentinels)
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
