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
``SlotCommands.spublish`` places an ephemeral frame the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MaxConnectionsError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from broker.cluster_connect import master_of_slot
from broker.errors import REDIS_FAILURES, NotConfirmed, OutcomeUnknown, Unavailable
from broker.publisher import Then

PLACE_TIMEOUT_S = 2.0
#: most publishes one pipeline carries; a longer queue is sent as several
BATCH_LIMIT = 256
RETRY_PAUSE_S = 0.05
_NETWORK = (RedisConnectionError, RedisTimeoutError, OSError)


class _NotSent(Exception):
    pass


class SlotCommands:
    """Commands run on the master of one slot, re-sent only when Redis cannot have run them."""

    def __init__(self, cluster: RedisCluster, place_timeout_s: float = PLACE_TIMEOUT_S) -> None:
        self._cluster = cluster
        self._place_timeout_s = place_timeout_s

    async def spublish(self, channel: str, payload: str | bytes) -> int:
        """SPUBLISH on the channel's master (ephemeral frames): subscribers reached there."""
        result, _acked = await self._place(key_slot(channel.encode()), ("SPUBLISH", channel, payload))
        return int(result)

    async def transact(self, slot: int, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` in one MULTI/EXEC on ``slot``'s master (reads: re-sent whenever they did not run);
        their replies parsed as redis-py parses them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._place_timeout_s
        last: BaseException | None = None
        while loop.time() < deadline:
            try:
                node = master_of_slot(self._cluster, slot)
                replies = await self._on(node, [("MULTI",), *commands, ("EXEC",)])
            except (SlotNotCoveredError, _NotSent, OutcomeUnknown) as exc:
                last = exc
                await self._pause()
                continue
            errors = [reply for reply in replies if isinstance(reply, BaseException)]
            if not errors:
                callbacks = node.response_callbacks
                return [
                    callbacks[command[0]](raw) if command[0] in callbacks else raw
                    for command, raw in zip(commands, replies[-1], strict=True)
                ]
            last = errors[0]
            if isinstance(last, MovedError):
                await self._cluster.nodes_manager.move_slot(last)
            elif isinstance(last, AskError | TryAgainError | ClusterDownError):  # mid-migration: soon settled
                await self._pause()
            else:
                raise last
        raise Unavailable(f"no master answered the read within {self._place_timeout_s} s") from last

    async def _place(
        self, slot: int, command: tuple[Any, ...], source: str | None = None, wait: tuple[int, int] | None = None
    ) -> tuple[Any, int]:
        """``command``'s reply on ``slot``'s master, and what ``WAIT *wait`` (pipelined after it) answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._place_timeout_s
        asking: ClusterNode | None = None
        last: BaseException | None = None
        while loop.time() < deadline:
            try:
                node = asking or master_of_slot(self._cluster, slot)
            except SlotNotCoveredError as exc:
                last = exc
                await self._pause()
                continue
            commands: list[tuple[Any, ...]] = [("ASKING",)] if asking else []
            commands.append(command)
            if wait:
                commands.append(("WAIT", *wait))
            try:
                replies = await self._on(node, commands)
            except _NotSent as exc:
                last, asking = exc.__cause__, None
                if isinstance(last, MaxConnectionsError):  # busy, not broken: no slot-map refresh
                    await asyncio.sleep(RETRY_PAUSE_S)
                else:
                    await self._pause()
                continue
            result = replies[1 if asking else 0]
            asking = None
            if isinstance(result, NoScriptError) and source is not None:
                await self._on(node, [("SCRIPT", "LOAD", source)])
            elif isinstance(result, MovedError):
                await self._cluster.nodes_manager.move_slot(result)
            elif isinstance(result, AskError):
                asking = self._node(result.host, result.port)
            elif isinstance(result, TryAgainError | ClusterDownError):
                last = result
                await self._pause()
            elif isinstance(result, BaseException):
                raise result
            else:
                acked = replies[-1] if wait else 0
                return result, 0 if isinstance(acked, BaseException) else int(acked)
        raise Unavailable(f"no master took the publish within {self._place_timeout_s} s") from last

    async def _pause(self) -> None:
        """Refresh the slot map, then a short pause before the next attempt."""
        try:
            await asyncio.wait_for(self._cluster.nodes_manager.initialize(), self._place_timeout_s)
        except (*REDIS_FAILURES, TimeoutError):
            pass  # the next attempt (or the deadline) decides
        await asyncio.sleep(RETRY_PAUSE_S)

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


@dataclass(slots=True, eq=False)
class _Call:
    slot: int
    command: tuple[Any, ...]
    future: asyncio.Future[tuple[Any, int]]
    reloaded: bool = False


#: replies that mean "not run here, place it again" (one by one, through ``_place``)
_REPLACE = (NoScriptError, MovedError, AskError, TryAgainError, ClusterDownError)


class ClusterScript(SlotCommands):
    """``await script(keys, args)``: EVALSHA on the master of the keys' slot (all keys share one slot).

    Like ``broker.publisher.Publisher``: the calls waiting for one node at the same moment go out
    as one pipeline on one connection (exactly one EVALSHA each, in arrival order, one WAIT after
    them all), so a burst neither pays a round trip per publish nor exhausts the node's pool. A
    call whose reply says "not here" (MOVED, ASK, NOSCRIPT...) is placed again on its own.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        source: str,
        min_replicas_ack: int = 0,
        ack_timeout_ms: int = 500,
        place_timeout_s: float = PLACE_TIMEOUT_S,
    ) -> None:
        super().__init__(cluster, place_timeout_s)
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._min_replicas_ack = min_replicas_ack
        self._wait = (min_replicas_ack, ack_timeout_ms) if min_replicas_ack else None
        self._queues: dict[str, list[_Call]] = {}
        self._senders: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        slots = {key_slot(key.encode()) for key in keys}
        if len(slots) != 1:
            raise ValueError(f"keys must share one hash slot, got {len(slots)}")
        call = _Call(slots.pop(), ("EVALSHA", self._sha, len(keys), *keys, *args), asyncio.Future())
        try:
            node = master_of_slot(self._cluster, call.slot)
        except SlotNotCoveredError:
            self._again(call)
        else:
            self._queues.setdefault(node.name, []).append(call)
            if node.name not in self._senders:  # one sender per node: batches never overtake each other
                self._senders.add(node.name)
                self._spawn(self._send_all(node))
        try:
            result, acked = await call.future
        except (*REDIS_FAILURES, _NotSent) as exc:  # an error reply (the script refused), or nothing sent
            raise Unavailable(f"redis refused the publish: {exc}") from exc
        if self._wait and acked < self._min_replicas_ack:
            raise NotConfirmed(result, acked, self._min_replicas_ack)
        return result

    async def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``Publisher.run``'s signature."""
        return await self(keys, args)

    def submit(self, keys: Sequence[str], args: Sequence[Any], then: Then) -> None:
        """``Publisher.submit``'s signature (here a task per call: placement needs its awaits)."""
        task = asyncio.ensure_future(self(keys, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(partial(_tell, then))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_all(self, node: ClusterNode) -> None:
        """One sender per node: batches go out one after another on one connection at a time."""
        batch: list[_Call] = []
        try:
            while batch := self._queues.get(node.name, []):
                self._queues[node.name] = batch[BATCH_LIMIT:]
                batch = batch[:BATCH_LIMIT]
                await self._send(node, batch)
        except BaseException as exc:
            # Whatever stopped this sender must not leave callers waiting forever, nor a queue with no
            # sender (the next call would only append to it).
            for call in batch + self._queues.get(node.name, []):
                _settle(call.future, exc=OutcomeUnknown(f"the publisher stopped mid-publish ({exc!r})"))
            raise
        finally:
            self._queues.pop(node.name, None)
            self._senders.discard(node.name)

    async def _send(self, node: ClusterNode, batch: list[_Call]) -> None:
        commands = [call.command for call in batch] + ([("WAIT", *self._wait)] if self._wait else [])
        try:
            replies = await self._on(node, commands)
        except _NotSent:
            for call in batch:
                self._again(call)
            return
        except OutcomeUnknown as exc:
            for call in batch:
                _settle(call.future, exc=exc)
            return
        acked = replies[-1] if self._wait else 0
        acked = 0 if isinstance(acked, BaseException) else int(acked)
        unloaded = [call for call, reply in zip(batch, replies, strict=False) if isinstance(reply, NoScriptError)]
        if unloaded and not any(call.reloaded for call in unloaded):
            # Redis restarted or flushed its scripts: nothing of those ran. Load once, send them again first.
            with contextlib.suppress(_NotSent, OutcomeUnknown):
                await self._on(node, [("SCRIPT", "LOAD", self._source)])
            for call in unloaded:
                call.reloaded = True
            self._queues[node.name] = unloaded + self._queues.get(node.name, [])
        for call, reply in zip(batch, replies, strict=False):
            if isinstance(reply, NoScriptError) and call.reloaded and call in unloaded:
                continue  # queued again just above
            if isinstance(reply, _REPLACE):
                self._again(call)
            elif isinstance(reply, BaseException):
                _settle(call.future, exc=reply)
            else:
                _settle(call.future, (reply, acked))

    def _again(self, call: _Call) -> None:
        async def place() -> None:
            try:
                _settle(call.future, await self._place(call.slot, call.command, self._source, self._wait))
            except Exception as exc:
                _settle(call.future, exc=exc)

        self._spawn(place())


def _settle(future: asyncio.Future[tuple[Any, int]], result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _tell(then: Then, task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        then(None, OutcomeUnknown("the publisher stopped mid-publish: the outcome is unknown"))
    else:
        error = task.exception()
        then(None if error is not None else task.result(), error)
