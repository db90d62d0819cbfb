"""One accepted WebSocket: a bounded send queue drained by one writer task.

``push`` is the hot path (called by the hub's synchronous fan-out for every
event and every local subscriber): it never awaits, never encodes, and on a
full queue drops the client with 1013 instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.errors import CloseCode
from api.metrics import Counts

log = logging.getLogger(__name__)

_ids = itertools.count(1)

#: how long a close frame may wait for a peer that stopped reading before the connection is given up
CLOSE_TIMEOUT_S = 2.0


class Connection:
    __slots__ = (
        "_abandoned",
        "_counts",
        "_handler",
        "_queue",
        "_receiving",
        "_writer",
        "closed",
        "endpoint",
        "id",
        "user",
        "websocket",
    )

    def __init__(self, websocket: WebSocket, *, endpoint: str, user: str, queue_size: int, counts: Counts) -> None:
        self.websocket = websocket
        self.endpoint = endpoint
        self.user = user
        self.id = f"{next(_ids)}"
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self._counts = counts
        self._writer: asyncio.Task[None] | None = None
        self.closed = False
        # the task serving this socket, interrupted in receive() when the peer is given up
        self._handler = asyncio.current_task()
        self._receiving = False
        self._abandoned = False

    def push(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(frame)
            self._counts.delivered += 1
        except asyncio.QueueFull:
            self._counts.slow_consumers += 1
            self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflowed")

    async def put(self, frame: str) -> None:
        """Queue ``frame``, waiting while the queue is full: a GraphQL ``since`` replay may be longer than the
        queue and must neither overflow it nor overtake frames already queued."""
        if not self.closed:
            await self._queue.put(frame)
            self._counts.delivered += 1

    async def receive(self) -> Message:
        """The next ASGI message; a disconnect once the peer was given up (it stopped reading)."""
        self._receiving = True
        try:
            return await self.websocket.receive()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._abandoned or task is None:
                raise
            task.uncancel()
            return {"type": "websocket.disconnect", "code": CloseCode.TRY_AGAIN_LATER}
        finally:
            self._receiving = False

    async def send_now(self, frame: str) -> None:
        """Send directly, bypassing the queue (welcome and replay, before the writer starts)."""
        await self.websocket.send_text(frame)

    def start_writer(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"herald-writer-{self.id}")

    async def _write(self) -> None:
        queue, send = self._queue, self.websocket.send_text
        try:
            while True:
                await send(await queue.get())
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            # The peer vanished mid-send; the receive loop sees the disconnect and cleans up.
            log.debug("writer %s stopped: %s", self.id, exc)

    def close_soon(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            while not self._queue.empty():  # never sent now: free them at once
                self._queue.get_nowait()
            task = asyncio.get_running_loop().create_task(self._close(code, reason))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

    async def close(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._close(code, reason)

    async def _close(self, code: CloseCode, reason: str) -> None:
        await self.stop_writer()
        if self.websocket.application_state == WebSocketState.CONNECTED:
            try:
                # uvicorn sends the close frame only once the transport drains below its high-water
                # mark, which a peer that stopped reading never lets happen.
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.websocket.close(code, reason)
            except TimeoutError:
                self._abandon(code)
            except (OSError, RuntimeError, WebSocketDisconnect):
                pass

    def _abandon(self, code: CloseCode) -> None:
        """Stop serving a peer that does not read: the handler leaves ``receive`` and cleans up."""
        log.info("connection %s (%s) gave up on close %d: the peer is not reading", self.id, self.user, code)
        self._abandoned = True
        if self._receiving and self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()

    async def stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


_pending: set[asyncio.Task[None]] = set()
