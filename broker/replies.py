"""Every reply a redis-py connection already holds, in one wake-up: the pub/sub links' reader.

redis-py reads one reply per call, and each call pays its whole per-read machinery (a timeout scope, state
checks, a message dict, for ``PubSub.get_message`` a health check and a decode of the type): measured at
~33 µs per pub/sub message on this project's 2-core VM, against ~1 µs for taking the same reply out of the
hiredis reader. Under load a single TCP read holds dozens of messages, so ``BatchReader.read()`` waits for
the socket once and returns everything parsed from it; the caller hands the lot to its listener, and the
sockets those events go to are written once per loop turn (``api.ws.coalesce``).

The fast path uses the hiredis reader inside redis-py's ``_AsyncHiredisParser`` (redis-py 5-8). A
connection without it (the embedded ``memory://`` server, a pure-Python parser) gets one
``read_response()`` per call: the same replies, one at a time.
"""

from __future__ import annotations

import math
from asyncio import StreamReader
from typing import Any

from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

#: most replies one read returns; the rest wait for the next call (the loop gets a turn in between)
MAX_BATCH = 1024


class BatchReader:
    """Reads a connection's replies in batches. Error replies (``ResponseError``) come back as values."""

    __slots__ = ("_conn", "_parser")

    def __init__(self, conn: AbstractConnection) -> None:
        self._conn = conn
        parser = getattr(conn, "_parser", None)
        # (the embedded server's connections carry a parser too, but feed it no socket)
        real = isinstance(parser, _AsyncHiredisParser) and isinstance(getattr(parser, "_stream", None), StreamReader)
        self._parser = parser if real else None

    @property
    def batched(self) -> bool:
        """Whether this connection gets the batched path (else one reply per read)."""
        return self._parser is not None

    def stale(self) -> bool:
        """Something arrived while no reply was expected, or the server closed the connection: it cannot
        carry a command whose reply must be the next one read (redis-py's pool makes the same check)."""
        parser = self._parser
        if parser is None:
            return False
        stream = parser._stream
        return (
            not parser._connected
            or parser._reader is None
            or bool(parser._reader.has_data())
            or (stream.at_eof() or bool(stream._buffer))
        )

    async def read(self) -> list[Any]:
        """At least one reply: waits for the socket only when nothing is buffered. ``ConnectionError``
        (redis-py's) when the connection closed."""
        parser = self._parser
        if parser is None:
            return [await self._conn.read_response(timeout=math.inf)]
        reader = parser._reader
        if reader is None or not parser._connected:
            raise RedisConnectionError("the connection is closed")
        gets = reader.gets
        reply = gets()
        while reply is NOT_ENOUGH_DATA:
            await parser.read_from_socket()
            reply = gets()
        replies: list[Any] = []
        while reply is not NOT_ENOUGH_DATA:
            if isinstance(reply, RedisConnectionError):
                raise reply
            replies.append(reply)
            if len(replies) >= MAX_BATCH:
                break
            reply = gets()
        return replies
