"""Page reads that arrive together share one round trip: one MULTI/EXEC for all of them.

A subscribe storm (thousands of subscribers at once, each reading where its
channel stands) would otherwise hold every pooled connection and leave the
rest of the replica waiting for one, which looks like a Redis outage when
Redis is only busy. Like the publisher, the reads waiting at the same moment
go out together, over a few connections at most; a lone read waits one
event-loop turn longer.

On Redis Cluster a MULTI must stay in one hash slot: given ``group`` (a read's
slot), a batch goes out as one MULTI per slot, concurrently, each on its slot's
master (``SlotCommands.transact``; redis-py's cluster transaction pipeline runs
every queued command in a thread with an event loop of its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis

from broker.errors import REDIS_FAILURES, Unavailable
from broker.history import HistoryPage, PageQuery

#: most reads one MULTI/EXEC carries
BATCH_LIMIT = 256
#: batches in flight at once (each holds one pooled connection)
CONCURRENT_BATCHES = 4

_Call = tuple[PageQuery, "asyncio.Future[HistoryPage]"]
#: (hash slot, commands) -> their parsed replies, run atomically in one MULTI/EXEC
Transact = Callable[[int, list[tuple[Any, ...]]], Awaitable[list[Any]]]


def multi_exec(client: redis.Redis) -> Transact:
    """One server: a MULTI/EXEC pipeline (the slot does not matter)."""

    async def run(_slot: int, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

    return run


class PageReader:
    def __init__(
        self,
        transact: Transact,
        group: Callable[[PageQuery], int] | None = None,
        groups_in_flight: int = CONCURRENT_BATCHES,
    ) -> None:
        """``groups_in_flight``: MULTIs out at once when batches split by ``group`` (a cluster node's
        pool raises when exhausted instead of waiting)."""
        self._transact = transact
        self._group = group
        self._turns = asyncio.Semaphore(groups_in_flight)
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def read(self, query: PageQuery) -> HistoryPage:
        """The page ``query`` asks for; ``Unavailable`` when Redis cannot answer."""
        future: asyncio.Future[HistoryPage] = asyncio.get_running_loop().create_future()
        self._waiting.append((query, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="herald-reads")
        return await future

    async def _send_all(self) -> None:
        # A few batches in flight at once: reads need no order among themselves, and a storm of them
        # should cost a few round trips of latency, not one per batch, without taking over the pool.
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while self._waiting or in_flight:
                while self._waiting and len(in_flight) < CONCURRENT_BATCHES:
                    batch, self._waiting = self._waiting[:BATCH_LIMIT], self._waiting[BATCH_LIMIT:]
                    in_flight.add(asyncio.create_task(self._send(batch)))
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in in_flight:
                task.cancel()
            self._sender = None

    async def _send(self, batch: list[_Call]) -> None:
        if self._group is None:
            await self._send_one(0, batch)
            return
        groups: dict[int, list[_Call]] = {}
        for call in batch:
            groups.setdefault(self._group(call[0]), []).append(call)
        await asyncio.gather(*(self._send_turn(slot, calls) for slot, calls in groups.items()))

    async def _send_turn(self, slot: int, batch: list[_Call]) -> None:
        async with self._turns:
            await self._send_one(slot, batch)

    async def _send_one(self, slot: int, batch: list[_Call]) -> None:
        commands = [query.commands() for query, _ in batch]
        counts = [len(each) for each in commands]
        try:
            replies = await self._transact(slot, [command for each in commands for command in each])
        except Unavailable as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except REDIS_FAILURES as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable(f"redis is unavailable ({exc})"))
            return
        except BaseException:
            for _, future in batch:
                if not future.done():
                    future.set_exception(Unavailable("the reader stopped"))
            raise
        start = 0
        for (query, future), count in zip(batch, counts, strict=True):
            if not future.done():
                try:
                    future.set_result(query.parse(replies[start : start + count]))
                except Exception as exc:  # an answer this read cannot use: its caller hears it, the rest go on
                    future.set_exception(Unavailable(f"unexpected answer from redis ({exc!r})"))
            start += count
