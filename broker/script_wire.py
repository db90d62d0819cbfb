"""The publisher's own connection: a batch of commands written as one buffer, their replies read in bulk.

A redis-py pipeline costs, per batch, a pool checkout and release, a command stack, a response callback
per command and a ``read_response()`` (with its timeout scope) per reply: the biggest item of a publish in
the W4 profile (README, "Benchmarks"). Here one connection taken from the client's pool (so it shares the
pool's settings, Sentinel's master look-up and its close) is kept for the publisher: ``call()`` packs the
commands (``broker.resp``: the bytes redis-py would send, without its per-argument machinery), hands them to
the connection's transport in one write (redis-py's ``send_packed_command`` wraps each write in
``asyncio.wait_for``, a task per batch on Python 3.11) and takes the replies out of the hiredis reader
(``broker.replies``) as they come. Exactly the same commands reach Redis: one EVALSHA per publish.

Errors: a reply error is returned as a value (like ``execute(raise_on_error=False)``); a connection that
fails, or does not answer within ``timeout_s``, is dropped (the next call takes a fresh one) and the error
raised for the caller to classify. A connection whose server closed it while idle (Redis restarted) is
noticed before anything is written to it. Connections that cannot be read in bulk (the embedded
``memory://`` server) go through a pipeline as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from broker.replies import BatchReader
from broker.resp import pack


class ScriptWire:
    def __init__(self, client: redis.Redis, timeout_s: float = 5.0) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._conn: AbstractConnection | None = None
        self._reader: BatchReader | None = None
        self._bulk: bool | None = None  # unknown until the first connection is seen
        self._loop: asyncio.AbstractEventLoop | None = None

    async def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Every command's reply, in order; error replies as values."""
        if self._bulk is False:
            return await self._pipeline(commands)
        conn, reader = await self._connection()
        if reader is None:
            return await self._pipeline(commands)
        try:
            with _Deadline(self._loop, self._timeout_s):
                writer = conn._writer
                if writer is None:
                    raise RedisConnectionError("the connection is closed")
                # the write never waits: a batch is bounded and its replies are read before the next one
                writer.write(pack(commands, conn.encoder))
                replies: list[Any] = []
                while len(replies) < len(commands):
                    replies += await reader.read()
        except BaseException:
            await self._drop()  # a reply may still be on its way: this connection's order is lost
            raise
        return replies

    async def _connection(self) -> tuple[AbstractConnection, BatchReader | None]:
        conn, reader = self._conn, self._reader
        if conn is not None and reader is not None and not reader.stale():
            return conn, reader
        if conn is not None:
            await self._drop()
        pool = self._client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        self._loop = asyncio.get_running_loop()  # the connection's: its streams belong to it
        reader = BatchReader(conn)
        self._bulk = reader.batched
        if not reader.batched:
            await pool.release(conn)
            return conn, None
        self._conn, self._reader = conn, reader
        return conn, reader

    async def _drop(self) -> None:
        conn, self._conn, self._reader = self._conn, None, None
        if conn is not None:
            await conn.disconnect()
            await self._client.connection_pool.release(conn)

    async def _pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


class _Deadline:
    """``asyncio.timeout(seconds)`` for the current task of a known loop: the same ``TimeoutError`` (and an
    outside ``cancel()`` still cancels), without asking asyncio for the running loop twice and the current
    task once per batch: on Python 3.11 each of those asks is a ``getpid()`` system call."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_seconds", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop | None, seconds: float) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._seconds = seconds
        self._expired = False

    def __enter__(self) -> None:
        task = asyncio.current_task(self._loop)
        if task is None:
            raise RuntimeError("a deadline needs a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._handle = self._loop.call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: object) -> None:
        self._handle.cancel()
        if self._expired and kind is asyncio.CancelledError and self._task.uncancel() <= self._cancelling:
            raise TimeoutError from error
