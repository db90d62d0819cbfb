"""The parts of a ``RedisBroker`` that depend on the Redis topology, chosen once by ``open_broker``.

Everything else (listener, catch-up, hub, history, presence, books) runs
unchanged on one server, on a Sentinel-managed master and on a cluster, because
a channel's keys and its pub/sub channel share one hash tag (SPEC §3). What
differs is how an event is announced and heard:

==================  =============================  ===========================================
part                one server / Sentinel          Redis Cluster
==================  =============================  ===========================================
publish script      ``Publisher`` (pipelined)      ``ClusterScript`` on the slot's master
announce command    PUBLISH                        SPUBLISH (SSUBSCRIBE hears only that)
ephemeral frame     PUBLISH                        SPUBLISH on the slot's master
pub/sub link        ``PubSubLink`` (one conn.)     ``ClusterPubSub`` (one conn. per master)
page reads          one MULTI per batch            one MULTI per hash slot (no CROSSSLOT)
ping (``/ready``)   PING                           PING every master of the slot map
==================  =============================  ===========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from broker.cluster_connect import read_share
from broker.cluster_publish import ClusterScript, SlotCommands
from broker.cluster_pubsub import ClusterPubSub
from broker.connect import close_client, dedicated
from broker.errors import REDIS_FAILURES
from broker.facade import BrokerOptions
from broker.history import PageQuery
from broker.listener import Listener
from broker.publisher import Publisher, Then
from broker.pubsub import PubSubLink
from broker.reads import PageReader, multi_exec
from broker.transport import PubSubTransport

#: a client of either kind; what both offer (scripts, pipelines, plain keyed commands) is all the rest uses
Client = redis.Redis | RedisCluster

#: a cluster-wide PING that takes longer than this counts as "not ready"
PING_TIMEOUT_S = 2.0


class ScriptRunner(Protocol):
    async def run(self, keys: list[str], args: list[Any]) -> Any:
        """The publish script's result; ``Unavailable`` / ``OutcomeUnknown`` / ``NotConfirmed``."""

    def submit(self, keys: list[str], args: list[Any], then: Then) -> None:
        """``run``, started now; its outcome goes to ``then(result, error)`` (no coroutine, no task to await)."""


@dataclass(frozen=True, slots=True)
class Parts:
    #: runs ``lua/publish.lua``
    publisher: ScriptRunner
    #: runs ``lua/presence.lua`` (batched like the publisher: a connect storm shares round trips)
    presence: ScriptRunner
    #: the script's pub/sub command (its ARGV[4])
    announce: str
    #: (pub/sub name, payload) -> announced, not stored
    ephemeral: Callable[[str, str], Awaitable[object]]
    #: the pub/sub transport, made for the broker's listener
    link: Callable[[Listener], PubSubTransport]
    reads: PageReader
    #: True when every node a publish may need answers
    ping: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[None]]


def _script(name: str = "publish") -> str:
    return resources.files("broker").joinpath(f"lua/{name}.lua").read_text()


def pubsub_client_name(replica_id: str) -> str:
    """``herald-pubsub-<replica id>``, spaces and quotes replaced (CLIENT SETNAME refuses them)."""
    return "herald-pubsub-" + re.sub(r"[^A-Za-z0-9_.:-]", "_", replica_id)


def _control(options: BrokerOptions) -> str:
    return f"{options.prefix}:replica:{options.replica_id}"


def standalone_parts(client: redis.Redis, options: BrokerOptions) -> Parts:
    """One server, or the master a Sentinel names (its clients follow failovers on reconnect)."""

    def link(listener: Listener) -> PubSubTransport:
        return PubSubLink(
            client,
            probe_client=dedicated(client),
            control=_control(options),
            probe_s=options.probe_s,
            on_message=listener.on_message,
            on_lost=listener.on_lost,
            on_restored=listener.on_restored,
        )

    async def ping() -> bool:
        return bool(await client.ping())

    return Parts(
        publisher=Publisher(client, _script(), options.min_replicas_ack, options.ack_timeout_ms),
        presence=Publisher(client, _script("presence")),
        announce="PUBLISH",
        ephemeral=client.publish,
        link=link,
        reads=PageReader(multi_exec(client)),
        ping=ping,
        close=lambda: close_client(client),
    )


def cluster_parts(client: RedisCluster, options: BrokerOptions) -> Parts:
    """Redis Cluster 7: sharded pub/sub, every command on its slot's master (docs/topologies.md)."""
    script = ClusterScript(client, _script(), options.min_replicas_ack, options.ack_timeout_ms)
    slots = SlotCommands(client)

    def link(listener: Listener) -> PubSubTransport:
        return ClusterPubSub(
            client,
            control=_control(options),
            probe_s=options.probe_s,
            on_message=listener.on_message,
            on_lost=listener.on_lost,
            on_restored=listener.on_restored,
            client_name=pubsub_client_name(options.replica_id),
        )

    async def ping() -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
        except (*REDIS_FAILURES, TimeoutError):
            # A master is gone: the slot map may be stale (a replica promoted since); the next ping sees.
            with contextlib.suppress(*REDIS_FAILURES, TimeoutError):
                async with asyncio.timeout(PING_TIMEOUT_S):
                    await client.nodes_manager.initialize()
            return False

    return Parts(
        publisher=script,
        presence=ClusterScript(client, _script("presence")),
        announce="SPUBLISH",
        ephemeral=slots.spublish,
        link=link,
        reads=PageReader(slots.transact, group=slot_of, groups_in_flight=read_share(options.pool_size)),
        ping=ping,
        close=client.aclose,
    )


def slot_of(query: PageQuery) -> int:
    """A read's hash slot: Redis Cluster runs a MULTI only when all its keys share one."""
    return key_slot(query.keys.stream.encode())
