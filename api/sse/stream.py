"""One ``text/event-stream`` response, written by its own request task and nothing else.

The hot path is ``push`` (called by the broker's synchronous fan-out): it appends the event's
bytes, built once per event per replica (``Event.memo``), to a bounded deque and, when the
request task is idle, wakes it by expiring the ``asyncio.timeout`` it waits under. No task,
queue or encoding per subscriber. A client that lets more than ``HERALD_SEND_QUEUE`` events
pile up is dropped (the stream ends, as 1013 closes a socket).

While idle the request task waits on ASGI ``receive()``, so a client that goes away is noticed
at once (uvicorn answers ``http.disconnect``), not at the next write: uvicorn drops writes to a
vanished client silently.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable

from starlette.types import Receive, Send

from api.errors import CloseCode
from api.metrics import Counts

log = logging.getLogger(__name__)

_ids = itertools.count(1)

HEARTBEAT = b": heartbeat\n\n"

#: what a stream's client is told before it ends (chat: an ``event: close``; graphql-sse: nothing)
Farewell = Callable[[CloseCode, str], bytes]


def sse_event(event: str, data: str, event_id: str | None = None) -> str:
    """One event in the ``text/event-stream`` format; ``data`` may span lines."""
    head = f"event: {event}\n" if event_id is None else f"event: {event}\nid: {event_id}\n"
    if "\n" in data or "\r" in data:
        data = "\ndata: ".join(data.splitlines())
    return f"{head}data: {data}\n\n"


class EventStream:
    __slots__ = (
        "_counts",
        "_farewell",
        "_farewell_for",
        "_gone",
        "_heartbeat_s",
        "_limit",
        "_pending",
        "_receive",
        "_send",
        "_waiting",
        "_woken",
        "_writing",
        "close_timeout_s",
        "closed",
        "endpoint",
        "id",
        "user",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        *,
        endpoint: str,
        limit: int,
        heartbeat_s: float,
        close_timeout_s: float,
        counts: Counts,
        farewell: Farewell | None,
    ) -> None:
        self.id = f"sse-{next(_ids)}"
        self.endpoint = endpoint
        self.user = ""
        self.closed = False
        #: how long the last bytes may wait for a client that stopped reading
        self.close_timeout_s = close_timeout_s
        self._receive, self._send = receive, send
        self._limit, self._heartbeat_s, self._counts = limit, heartbeat_s, counts
        self._farewell_for = farewell
        self._farewell = b""
        self._pending: deque[bytes] = deque()
        self._waiting: asyncio.Timeout | None = None
        self._writing: asyncio.Timeout | None = None
        self._woken = False
        #: the client disconnected: nothing more is written
        self._gone = False

    # -- the hot path ------------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Queue ``data`` (shared bytes) for the request task; never awaits."""
        if self.closed:
            return
        if len(self._pending) >= self._limit:
            self._counts.slow_consumers += 1
            self.end(CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflowed")
            return
        self._pending.append(data)
        self._counts.delivered += 1
        self._wake()

    def _wake(self) -> None:
        waiting = self._waiting
        if waiting is not None and not self._woken and not waiting.expired():
            self._woken = True
            waiting.reschedule(0)  # in the past: expires on the next loop turn

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self, headers: list[tuple[bytes, bytes]], retry_ms: int) -> None:
        """Start the response: the headers, then the ``retry:`` hint."""
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._write(b"retry: %d\n\n" % retry_ms)

    async def send_now(self, frame: str) -> None:
        """Write ``frame`` before anything pushed (the welcome and a replay), once the client takes it."""
        await self._write(frame.encode())

    async def close(self, code: CloseCode, reason: str) -> None:
        """The ``Outlet`` interface of ``api.chat_feed``: end the stream."""
        self.end(code, reason)

    def end(self, code: CloseCode, reason: str, *, flush: bool = False) -> None:
        """End the stream (synchronous, idempotent): the client is told why, then the response ends.

        ``flush``: what was pushed still goes out first (a drain); otherwise it is dropped (a slow
        consumer is not buffered further).
        """
        if self.closed:
            return
        self.closed = True
        if not flush:
            self._pending.clear()
        if self._farewell_for is not None:
            self._farewell = self._farewell_for(code, reason)
        if self._writing is not None and not self._writing.expired() and not flush:
            self._writing.reschedule(0)  # stop waiting for a client that does not read
        self._wake()

    async def serve(self) -> None:
        """Write what is pushed, and heartbeats, until the stream ends or the client leaves."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self._heartbeat_s
        try:
            while not self.closed:
                if self._pending:
                    chunk = b"".join(self._pending)
                    self._pending.clear()
                    await self._write(chunk, interruptible=True)
                elif await self._idle(next_beat):
                    self._gone = True
                    return
                if loop.time() >= next_beat and not self.closed:
                    next_beat = loop.time() + self._heartbeat_s
                    await self._write(HEARTBEAT, interruptible=True)
        except TimeoutError:
            pass  # a write interrupted by end(): the client stopped reading

    async def finish(self) -> None:
        """The farewell, what a drain flushes, and the response's end, unless the client is gone."""
        if self._gone:
            return
        body = b"".join(self._pending) + self._farewell
        self._pending.clear()
        try:
            async with asyncio.timeout(self.close_timeout_s):
                await self._send({"type": "http.response.body", "body": body, "more_body": False})
        except TimeoutError:
            log.info("sse stream %s (%s) gave up on its end: the client is not reading", self.id, self.user)
        except OSError:
            pass

    # -- internals ---------------------------------------------------------------------

    async def _write(self, body: bytes, *, interruptible: bool = False) -> None:
        message = {"type": "http.response.body", "body": body, "more_body": True}
        if not interruptible:
            await self._send(message)
            return
        try:
            async with asyncio.timeout(None) as self._writing:
                await self._send(message)
        finally:
            self._writing = None

    async def _idle(self, until: float) -> bool:
        """Wait for a push, ``until`` (the next heartbeat) or the client's disconnect; True on disconnect."""
        self._woken = False
        try:
            async with asyncio.timeout_at(until) as self._waiting:
                if self._pending or self.closed:
                    return False
                while True:
                    message = await self._receive()
                    if message["type"] == "http.disconnect":
                        return True
        except TimeoutError:
            return False
        finally:
            self._waiting = None
