"""One accepted WebSocket and its bounded outgoing buffer.

``push``/``push_event`` are the hot path (called by the hub's synchronous
fan-out for every event and every local subscriber): they never await, and a
client that lets more than ``HERALD_SEND_QUEUE`` frames pile up is dropped
with 1013 instead of being buffered without bound.

Two ways out, same behaviour:

* **direct** (Herald's uvicorn protocol, ``api.ws.fastpath``): an event's
  frame is built once per replica and written straight to each transport;
  frames wait in a bounded deque only while the transport is paused (its
  buffer is over the high-water mark) and drain when it resumes. No task, no
  queue, no ASGI call per recipient.
* **queued** (any other ASGI server, and Starlette's TestClient): a bounded
  ``asyncio.Queue`` drained by one writer task through ``send_text``.

Until ``start_writer()`` nothing pushed is written, so the welcome and a
``since`` replay (sent with ``send_now``) always come first.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from api.errors import CloseCode
from api.metrics import Counts
from api.ws.fastpath import EXTENSION, FrameWriter, text_frame
from broker import Event

log = logging.getLogger(__name__)

_ids = itertools.count(1)

#: how long a close frame may wait for a peer that stopped reading before the connection is given up
CLOSE_TIMEOUT_S = 2.0

Encoder = Callable[[Event], str]
_wire_encoders: dict[Encoder, Callable[[Event], bytes]] = {}


def wire(encoder: Encoder) -> Callable[[Event], bytes]:
    """``encoder`` followed by WebSocket framing, as one stable function (a key for ``Event.memo``)."""
    framed = _wire_encoders.get(encoder)
    if framed is None:

        def framed(event: Event) -> bytes:
            return text_frame(event.memo(encoder).encode())

        _wire_encoders[encoder] = framed
    return framed


class Connection:
    __slots__ = (
        "_abandoned",
        "_counts",
        "_direct",
        "_drained",
        "_handler",
        "_limit",
        "_live",
        "_pending",
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
        self._counts = counts
        self._limit = queue_size
        self.closed = False
        self._live = False
        extension = websocket.scope.get("extensions", {}).get(EXTENSION)
        self._direct: FrameWriter | None = extension["writer"] if extension else None
        self._pending: deque[bytes] = deque()
        self._drained: asyncio.Event | None = None
        self._queue: asyncio.Queue[str] | None = None if self._direct else asyncio.Queue(queue_size)
        self._writer: asyncio.Task[None] | None = None
        if self._direct is not None:
            self._direct.on_resume = self._drain
        # the task serving this socket, interrupted in receive() when the peer is given up
        self._handler = asyncio.current_task()
        self._receiving = False
        self._abandoned = False

    # -- the hot path ------------------------------------------------------------------

    def push_event(self, event: Event, encoder: Encoder) -> None:
        """Send ``encoder(event)``; the text (and, when direct, the frame) is built once per event."""
        if self._direct is not None:
            self._push_frame(event.memo(wire(encoder)))
        else:
            self.push(event.memo(encoder))

    def push(self, frame: str) -> None:
        if self._direct is not None:
            self._push_frame(text_frame(frame.encode()))
            return
        if self.closed:
            return
        assert self._queue is not None
        try:
            self._queue.put_nowait(frame)
            self._counts.delivered += 1
        except asyncio.QueueFull:
            self._overflow()

    def _push_frame(self, frame: bytes) -> None:
        writer, pending = self._direct, self._pending
        if self.closed or writer is None:
            return
        if self._live and not pending and not writer.paused:
            writer.write(frame)
        elif len(pending) < self._limit:
            pending.append(frame)
        else:
            self._overflow()
            return
        self._counts.delivered += 1

    def _drain(self) -> None:
        """Write what waited while the transport was paused (or before ``start_writer``)."""
        writer, pending = self._direct, self._pending
        if writer is None or not self._live:
            return
        while pending and not writer.paused and not self.closed:
            writer.write(pending.popleft())
        if not pending and self._drained is not None:
            self._drained.set()

    def _overflow(self) -> None:
        self._counts.slow_consumers += 1
        self.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflowed")

    async def put(self, frame: str) -> None:
        """Send ``frame`` after everything queued, once the client has taken what came before: a GraphQL
        ``since`` replay may be longer than the buffer and must neither overflow it, nor overtake frames
        already queued, nor pile up in memory for a client that does not read."""
        if self._direct is None:
            if not self.closed:
                assert self._queue is not None
                await self._queue.put(frame)
                self._counts.delivered += 1
            return
        while (self._pending or self._direct.paused) and not self.closed:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        self.push(frame)

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
        await self.websocket.send_text(frame)

    def start_writer(self) -> None:
        """From now on pushed frames go out (in order, after everything sent with ``send_now``)."""
        self._live = True
        if self._direct is not None:
            self._drain()
        else:
            self._writer = asyncio.create_task(self._write(), name=f"herald-writer-{self.id}")

    async def _write(self) -> None:
        assert self._queue is not None
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
            self._discard_buffered()
            task = asyncio.get_running_loop().create_task(self._close(code, reason))
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    async def close(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            await self._close(code, reason)

    def _discard_buffered(self) -> None:
        """Frames that will never be sent now: free them at once."""
        self._pending.clear()
        if self._drained is not None:
            self._drained.set()
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()

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
        """Stop serving a peer that does not read: cut its TCP connection, and the handler cleans up."""
        log.info("connection %s (%s) gave up on close %d: the peer is not reading", self.id, self.user, code)
        self._abandoned = True
        if self._direct is not None:
            self._direct.abort()
        if self._receiving and self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()

    async def stop_writer(self) -> None:
        self._live = False
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer


_closing: set[asyncio.Task[None]] = set()
