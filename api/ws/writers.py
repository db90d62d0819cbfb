"""How a ``Connection``'s pushed frames leave: one ``Writer`` per socket, picked once when it opens.

Both writers keep the same promises, and ``tests/unit/test_connection.py`` runs the same tests on each:

* ``push``/``push_event`` never await (they are called from the hub's synchronous fan-out), and count a
  frame in ``herald_messages_delivered`` when it is accepted;
* until ``start()`` nothing pushed goes out (the welcome and a ``since`` replay are sent first, directly);
* past ``limit`` frames waiting, ``overflow()`` is called instead of buffering more (the connection then
  closes 1013), and ``put`` waits for room instead;
* after ``discard()`` nothing more is accepted and what waited is freed.

``PreparedFrameWriter`` runs on Herald's uvicorn protocol (``api.ws.fastpath``): an event is framed once per
replica and the same bytes are written to every recipient's transport, synchronously; frames wait in a
bounded deque only while the transport is paused. ``QueuedWriter`` runs on any other ASGI server (and
Starlette's TestClient): a bounded ``asyncio.Queue`` drained by one task through ``send_text``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.errors import CloseCode
from api.metrics import Counts
from api.ws.frame_io import EXTENSION, FrameWriter, text_frame
from broker import Event

log = logging.getLogger(__name__)

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


class Writer(Protocol):
    def push_event(self, event: Event, encoder: Encoder) -> None:
        """Send ``encoder(event)``, computed (and framed) once per event whatever the number of recipients."""

    def push(self, frame: str) -> None:
        """Send ``frame`` after everything pushed before it."""

    async def put(self, frame: str) -> None:
        """As ``push``, but wait for room instead of overflowing (a replay longer than the buffer): the queued
        writer while ``limit`` frames wait, the prepared-frame writer until nothing waits at all."""

    async def send_now(self, frame: str) -> None:
        """Send ``frame`` ahead of anything pushed and not yet written (``Connection.send_now``): once the
        transport takes more; raises as Starlette's ``send_text`` does when the socket is gone or closing."""

    def start(self) -> None:
        """From now on pushed frames go out."""

    async def stop(self) -> None:
        """Stop sending (frames pushed later wait, or are dropped by ``discard``)."""

    def discard(self) -> None:
        """The socket is closing: accept nothing more and free what waits."""

    def abort(self) -> None:
        """Cut the TCP connection where the server lets us (a peer that never reads)."""

    def close_behind(self, code: CloseCode, reason: str) -> bool:
        """A peer that is not reading gets the close frame behind what it was already sent, without waiting
        for it to read; False when this writer cannot (the caller closes the ordinary way)."""


def writer_for(websocket: WebSocket, *, limit: int, counts: Counts, overflow: Callable[[], None], name: str) -> Writer:
    """The prepared-frame writer when the server offers Herald's extension, else the queued one."""
    extension = websocket.scope.get("extensions", {}).get(EXTENSION)
    if extension is not None:
        return PreparedFrameWriter(extension["writer"], limit=limit, counts=counts, overflow=overflow)
    return QueuedWriter(websocket, limit=limit, counts=counts, overflow=overflow, name=name)


class PreparedFrameWriter:
    __slots__ = ("_counts", "_drained", "_frames", "_limit", "_live", "_overflow", "_pending", "closed")

    def __init__(self, frames: FrameWriter, *, limit: int, counts: Counts, overflow: Callable[[], None]) -> None:
        self._frames = frames
        self._limit = limit
        self._counts = counts
        self._overflow = overflow
        # frames waiting while the transport is paused (or before ``start``): made on first need, dropped once
        # drained, so an idle socket holds no deque
        self._pending: deque[bytes] | None = None
        self._drained: asyncio.Event | None = None
        self._live = False
        self.closed = False
        frames.on_resume = self._drain

    def push_event(self, event: Event, encoder: Encoder) -> None:
        self._push_frame(event.memo(wire(encoder)))

    def push(self, frame: str) -> None:
        self._push_frame(text_frame(frame.encode()))

    def _push_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        frames, pending = self._frames, self._pending
        if self._live and not pending and not frames.paused:
            frames.write(frame)
        elif pending is None:
            self._pending = deque((frame,))
        elif len(pending) < self._limit:
            pending.append(frame)
        else:
            self._overflow()
            return
        self._counts.delivered += 1

    def _drain(self) -> None:
        """Write what waited while the transport was paused (or before ``start``)."""
        frames, pending = self._frames, self._pending
        if not self._live:
            return
        while pending and not frames.paused and not self.closed:
            frames.write(pending.popleft())
        if not pending:
            self._pending = None
            if self._drained is not None:
                self._drained.set()

    async def put(self, frame: str) -> None:
        # once everything before it went out and the transport takes more: a replay never piles up here
        while (self._pending or self._frames.paused) and not self.closed:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        self.push(frame)

    async def send_now(self, frame: str) -> None:
        await self._frames.send(text_frame(frame.encode()))

    def start(self) -> None:
        self._live = True
        self._drain()

    async def stop(self) -> None:
        self._live = False

    def discard(self) -> None:
        self.closed = True
        self._pending = None
        if self._drained is not None:
            self._drained.set()

    def abort(self) -> None:
        self._frames.abort()

    def close_behind(self, code: CloseCode, reason: str) -> bool:
        return self._frames.close_behind(code, reason)


class QueuedWriter:
    __slots__ = ("_counts", "_name", "_overflow", "_queue", "_send", "_task", "closed")

    def __init__(
        self, websocket: WebSocket, *, limit: int, counts: Counts, overflow: Callable[[], None], name: str
    ) -> None:
        self._send = websocket.send_text
        self._queue: asyncio.Queue[str] = asyncio.Queue(limit)
        self._counts = counts
        self._overflow = overflow
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def push_event(self, event: Event, encoder: Encoder) -> None:
        self.push(event.memo(encoder))

    def push(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._overflow()
            return
        self._counts.delivered += 1

    async def put(self, frame: str) -> None:
        if not self.closed:
            await self._queue.put(frame)
            self._counts.delivered += 1

    async def send_now(self, frame: str) -> None:
        await self._send(frame)

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name=self._name)

    async def _write(self) -> None:
        queue, send = self._queue, self._send
        try:
            while True:
                await send(await queue.get())
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            # The peer vanished mid-send; the receive loop sees the disconnect and cleans up.
            log.debug("%s stopped: %s", self._name, exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def discard(self) -> None:
        self.closed = True
        while not self._queue.empty():
            self._queue.get_nowait()

    def close_behind(self, code: CloseCode, reason: str) -> bool:
        return False  # plain ASGI cannot write past what the server holds

    def abort(self) -> None:
        """Plain ASGI offers no way to cut the connection; the handler is interrupted instead."""
