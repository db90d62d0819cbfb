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


def create_redis(url: str) -> redis.Redis:
    """A client that never retries on its own.

    A retried EVALSHA could publish an event twice, and a silently reconnected
    pub/sub connection would hide the gap the broker must replay, so errors
    surface and the broker decides what to do.
    """
    options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "socket_connect_timeout": 2, "socket_timeout": 5}
    if is_memory(url):
        import fakeredis

        # One FakeServer per broker: an embedded Redis private to this process.
        return fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), **options)
    return redis.Redis.from_url(url, **options)
