"""What the cluster tests share: a recording transport owner, bounded async waits, channels per master."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio.cluster import RedisCluster

from broker.cluster_connect import create_cluster_redis
from broker.keys import ChannelKeys, chat_channel
from broker.urls import ClusterUrl, parse_redis_url
from tests.helpers.topologies import ClusterTopology

WAIT_S = 30.0


async def until(condition: Callable[[], bool], within: float = WAIT_S, what: str = "condition") -> float:
    """Poll ``condition`` (no sleeps as synchronisation: a bounded poll); the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@dataclass
class Recorder:
    """The transport's owner, as the broker will be: it records what the callbacks say."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lost: list[list[str]] = field(default_factory=list)
    restored: list[list[str]] = field(default_factory=list)

    def on_message(self, name: str, payload: bytes) -> None:
        self.messages.append((name, payload))

    def on_lost(self, names: list[str]) -> None:
        self.lost.append(names)

    def on_restored(self, names: list[str]) -> None:
        self.restored.append(names)

    def got(self, name: str) -> list[bytes]:
        return [payload for channel, payload in self.messages if channel == name]

    def ever_lost(self) -> set[str]:
        return {name for names in self.lost for name in names}

    def ever_restored(self) -> set[str]:
        return {name for names in self.restored for name in names}


def cluster_client(topology: ClusterTopology) -> RedisCluster:
    """As Herald makes it from ``HERALD_REDIS_URL``: short timeouts, no retries of its own."""
    parsed = parse_redis_url(topology.url())
    assert isinstance(parsed, ClusterUrl)
    return create_cluster_redis(parsed)


def channels_per_master(topology: ClusterTopology, prefix: str, per_master: int) -> dict[int, list[str]]:
    """Pub/sub names (as the broker names them) grouped by the master that owns their slot."""
    found: dict[int, list[str]] = {port: [] for port in topology.masters()}
    while any(len(names) < per_master for names in found.values()):
        name = ChannelKeys.of(prefix, chat_channel(f"r{uuid.uuid4().hex[:8]}")).pubsub
        owner = topology.master_of(name)
        if len(found[owner]) < per_master:
            found[owner].append(name)
    return found


def shardnumsub(topology: ClusterTopology, port: int, name: str) -> int:
    """``PUBSUB SHARDNUMSUB name`` on one node: its local subscribers of ``name``."""
    [(_name, count)] = topology.client(port).execute_command("PUBSUB SHARDNUMSUB", name)
    return int(count)
