"""One accepted WebSocket: its writer, its receive side, its close, its token's expiry.

``push``/``push_event`` are the hot path (called by the hub's synchronous fan-out for every event and every
local subscriber): they are the writer's own methods (``api.ws.writers``), bound once, so a push costs no
extra call and never awaits; a client that lets more than ``HERALD_SEND_QUEUE`` frames pile up is dropped
with 1013 instead of being buffered without bound.

Until ``start_writer()`` nothing pushed is written, so the welcome and a ``since`` replay (sent with
``send_now``) always come first.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.errors import CloseCode
from api.identity import on_expiry
from api.metrics import Counts
from api.ws.writers import Encoder, Writer, writer_for
from broker import Event

log = logging.getLogger(__name__)

_ids = itertools.count(1)

#: how long a close frame may wait for a peer that stopped reading before the connection is given up
CLOSE_TIMEOUT_S = 2.0


class Connection:
    __slots__ = (
        "_abandoned",
        "_counts",
        "_expiry",
        "_handler",
        "_receiving",
        "closed",
        "endpoint",
        "id",
        "push",
        "push_event",
        "user",
        "websocket",
        "writer",
    )

    #: send ``encoder(event)``; the text (and, on the prepared-frame writer, the frame) is built once per event
    push_event: Callable[[Event, Encoder], None]
    #: send one frame after everything pushed before it
    push: Callable[[str], None]

    def __init__(self, websocket: WebSocket, *, endpoint: str, user: str, queue_size: int, counts: Counts) -> None:
        self.websocket = websocket
        self.endpoint = endpoint
        self.user = user
        self.id = f"{next(_ids)}"
        self._counts = counts
        self.closed = False
        self.writer: Writer = writer_for(
            websocket, limit=queue_size, counts=counts, overflow=self._overflow, name=f"herald-writer-{self.id}"
        )
        self.push_event = self.writer.push_event
        self.push = self.writer.push
        self._expiry: asyncio.TimerHandle | None = None
        # the task serving this socket, interrupted in receive() when the peer is given up
        self._handler = asyncio.current_task()
        self._receiving = False
        self._abandoned = False

    def _overflow(self) -> None:
        self._counts.slow_consumers += 1
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflowed")

    async def put(self, frame: str) -> None:
        """Send ``frame`` after everything queued, once the client has taken what came before: a GraphQL
        ``since`` replay may be longer than the buffer and must neither overflow it, nor overtake frames
        already queued, nor pile up in memory for a client that does not read."""
        await self.writer.put(frame)

    def expire_at(self, expires_at: float | None, code: CloseCode) -> None:
        """Close with ``code`` when the token expires (epoch seconds; None: never)."""
        self._expiry = on_expiry(expires_at, self.close_soon, code)

    # -- receiving ---------------------------------------------------------------------

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

    # -- lifecycle ---------------------------------------------------------------------

    async def send_now(self, frame: str) -> None:
        """Send directly, ahead of anything pushed (welcome and replay, before ``start_writer``)."""
        await self.writer.send_now(frame)

    def start_writer(self) -> None:
        """From now on pushed frames go out (in order, after everything sent with ``send_now``)."""
        self.writer.start()

    def close_soon(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.writer.discard()
            task = asyncio.get_running_loop().create_task(self._close(code, reason))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def close(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.writer.discard()
            await self._close(code, reason)

    async def _close(self, code: CloseCode, reason: str) -> None:
        await self.stop_writer()
        if self.writer.close_behind(code, reason):
            return  # a peer that stopped reading: backlog, then the close frame; TCP cut if it never reads
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
        """Stop serving a peer that does not read: cut its TCP connection, and the handler cleans up."""
        log.info("connection %s (%s) gave up on close %d: the peer is not reading", self.id, self.user, code)
        self._abandoned = True
        self.writer.abort()
        if self._receiving and self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()

    async def stop_writer(self) -> None:
        """Stop sending what is pushed (a close, or what must precede it, is sent with ``send_now``)."""
        await self.writer.stop()

    async def end(self) -> None:
        """The handler is done with the socket: no expiry timer, no writer left behind."""
        if self._expiry is not None:
            self._expiry.cancel()
        await self.writer.stop()


_closing: set[asyncio.Task[None]] = set()
