"""Cluster publish: one script call on the slot's master, optionally with ``WAIT`` on the same connection.

Why not ``RedisCluster.evalsha``: its retry loop re-sends a command after a
connection error, which for a publish script means publishing twice; and a
``WAIT`` must travel on the *same* connection as the script (it counts the
replicas that have that connection's writes), which a cluster pipeline cannot
route since WAIT has no key. So redis-py gives the slot map and the node
connection pools; the loop is here, with one rule: a command is re-sent only
when Redis cannot have run it —

* the connection could not be made (node down mid-failover): refresh, retry;
* MOVED (slot moved) / ASK (slot migrating, key already gone): run on the
  named node (ASKING first for ASK); NOSCRIPT: load the script, run again;
* TRYAGAIN / CLUSTERDOWN: back off briefly, retry.

All within ``place_timeout_s``; then :class:`~broker.errors.Unavailable` (nothing
published). An error *after* the command was sent is ``broker.errors.OutcomeUnknown``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.errors import OutcomeUnknown, Unavailable

PLACE_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 0.05
_NETWORK = (RedisConnectionError, RedisTimeoutError, OSError)


class NotConfirmed(Unavailable):
    """The script ran, but fewer replicas than asked confirmed it in time (it may still be delivered)."""

    def __init__(self, result: Any, acked: int, wanted: int) -> None:
        super().__init__(f"published but not confirmed by {wanted} replica(s) ({acked} did)")
        self.result = result


class _NotSent(Exception):
    pass


class ClusterScript:
    """``await script(keys, args)``: EVALSHA on the master of the keys' slot (all keys share one slot)."""

    def __init__(
        self,
        cluster: RedisCluster,
        source: str,
        min_replicas_ack: int = 0,
        ack_timeout_ms: int = 500,
        place_timeout_s: float = PLACE_TIMEOUT_S,
    ) -> None:
        self._cluster = cluster
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._min_replicas_ack = min_replicas_ack
        self._ack_timeout_ms = ack_timeout_ms
        self._place_timeout_s = place_timeout_s

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        slots = {key_slot(key.encode()) for key in keys}
        if len(slots) != 1:
            raise ValueError(f"keys must share one hash slot, got {len(slots)}")
        slot = slots.pop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._place_timeout_s
        asking: ClusterNode | None = None
        last: BaseException | None = None
        while loop.time() < deadline:
            try:
                node = asking or self._cluster.nodes_manager.get_node_from_slot(slot)
            except SlotNotCoveredError as exc:
                last = exc
                await self._refresh()
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            commands: list[tuple[Any, ...]] = [("ASKING",)] if asking else []
            commands.append(("EVALSHA", self._sha, len(keys), *keys, *args))
            if self._min_replicas_ack:
                commands.append(("WAIT", self._min_replicas_ack, self._ack_timeout_ms))
            try:
                replies = await self._on(node, commands)
            except _NotSent as exc:
                last = exc.__cause__
                asking = None
                await self._refresh()
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            result = replies[1 if asking else 0]
            asking = None
            if isinstance(result, NoScriptError):
                await self._on(node, [("SCRIPT", "LOAD", self._source)])
                continue
            if isinstance(result, MovedError):
                await self._cluster.nodes_manager.move_slot(result)
                continue
            if isinstance(result, AskError):
                asking = self._node(result.host, result.port)
                continue
            if isinstance(result, TryAgainError | ClusterDownError):
                last = result
                await self._refresh()
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if isinstance(result, BaseException):
                raise result
            if self._min_replicas_ack:
                acked = int(replies[-1]) if not isinstance(replies[-1], BaseException) else 0
                if acked < self._min_replicas_ack:
                    raise NotConfirmed(result, acked, self._min_replicas_ack)
            return result
        raise Unavailable(f"no master took the publish within {self._place_timeout_s} s") from last

    async def _on(self, node: ClusterNode, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on one of ``node``'s connections; every reply, errors as values."""
        try:
            conn = node.acquire_connection()
        except RedisError as exc:  # pool exhausted: nothing sent
            raise _NotSent from exc
        try:
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                if await conn.can_read():  # a pooled connection the server already closed (EOF)
                    await conn.disconnect()
                    await conn.connect()  # type: ignore[no-untyped-call]
            except _NETWORK as exc:
                await conn.disconnect()
                raise _NotSent from exc
            try:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
            except _NETWORK as exc:
                await conn.disconnect()
                raise OutcomeUnknown("the publish was sent but Redis did not answer: outcome unknown") from exc
        finally:
            node.release(conn)

    def _node(self, host: str, port: int) -> ClusterNode:
        manager = self._cluster.nodes_manager
        return manager.get_node(host=host, port=port) or ClusterNode(host, port, **manager.connection_kwargs)

    async def _refresh(self) -> None:
        try:
            await asyncio.wait_for(self._cluster.nodes_manager.initialize(), self._place_timeout_s)
        except (RedisError, OSError, TimeoutError):
            pass  # the next attempt (or the deadline) decides
