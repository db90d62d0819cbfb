"""A chat room: one WebSocket, kept open across disconnects and resumed with ``since``.

One task per room owns the socket: it connects, hands the welcome to the tracker,
re-sends every unanswered request, then reads until the socket closes and asks the
core how long to wait. The application reads frames from a bounded buffer; a room
left unread for ``max_buffer`` frames stops reading and resumes (with ``since``) once
the application caught up, so memory stays bounded and nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from herald_client.core import (
    Disconnect,
    Frame,
    Reconnector,
    RoomTracker,
    classify_close,
    classify_handshake,
)
from herald_client.errors import HeraldClientError
from herald_client.room_requests import Requests

if TYPE_CHECKING:
    from herald_client.client import HeraldClient

#: frames the application reads; everything else is the client's business
APP_FRAMES = frozenset({"message", "join", "leave"})
#: answers to a request, in request order (the server handles one frame of a socket at a time)
ANSWERS = frozenset({"error", "presence", "pong"})


class Room:
    """Use as ``async with herald.room(name) as room``; see HeraldClient.room."""

    def __init__(
        self,
        client: HeraldClient,
        name: str,
        since: str | None,
        on_state: Callable[[str], None] | None,
        max_buffer: int,
    ) -> None:
        self.name = name
        #: replica id of the current (or last) connection, from its welcome
        self.replica: str | None = None
        #: successful connections so far (1 + reconnects)
        self.connects = 0
        #: "connecting", "open" or "closed" (each change is passed to ``on_state``)
        self.state = ""
        self._client = client
        self._policy = client.policy
        self._tracker = RoomTracker(name, since)
        self._reconnector = Reconnector(client.policy, client.rng)
        self._offset = since
        self._on_state = on_state
        self._max_buffer = max_buffer
        self._frames: deque[Frame] = deque()
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        self._opened = asyncio.Event()
        self._requests = Requests(client.policy, client.rng)
        self._error: BaseException | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def offset(self) -> str | None:
        """The offset of the last message read (or the position joined at): pass it as ``since`` to resume."""
        return self._offset

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Room:
        self._task = asyncio.create_task(self._run(), name=f"herald-room-{self.name}")
        try:
            await self._opened.wait()  # the caller bounds this wait (asyncio.timeout) if it wants to
        except BaseException:
            await self.close()
            raise
        if self._error is not None:
            await self.close()
            raise self._error
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket and stop reconnecting; pending requests fail."""
        if self._closed:
            return
        self._closed = True
        self._client.forget(self)
        self._requests.fail(HeraldClientError(f"room {self.name} closed"))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._readable.set()
        self._state("closed")

    # -- application side --------------------------------------------------------

    def __aiter__(self) -> Room:
        return self

    async def __anext__(self) -> Frame:
        while not self._frames:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        frame = self._frames.popleft()
        if frame.get("type") == "message" and isinstance(frame.get("id"), str):
            self._offset = frame["id"]
        if len(self._frames) <= self._max_buffer // 2:
            self._drained.set()
        return frame

    async def send(self, text: str, key: str | None = None) -> str:
        """Publish ``text``; returns its offset once the server acknowledged it.

        The idempotency ``key`` (a fresh one by default) goes with every attempt, so a send
        retried across a reconnect or after ``unavailable`` is published at most once.
        """
        key = key or uuid.uuid4().hex
        answer = await self._call({"type": "message", "text": text, "key": key}, key)
        return str(answer["id"])

    async def presence(self) -> list[str]:
        """The users with an open socket in this room, cluster-wide."""
        answer = await self._call({"type": "presence"}, None)
        return [str(user) for user in answer.get("users", [])]

    # -- requests ------------------------------------------------------------------

    async def _call(self, frame: Frame, key: str | None) -> Frame:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise HeraldClientError(f"room {self.name} is closed")
        return await self._requests.call(frame, key)

    # -- the connection task ---------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                self._state("connecting")
                kind, detail, code = await self._connect_once()
                if kind is None:  # the application fell behind: resume once it caught up
                    self._state("connecting")
                    while len(self._frames) > self._max_buffer // 2:
                        self._drained.clear()
                        await self._drained.wait()
                    continue
                delay = self._reconnector.next_delay(kind, detail, code)  # raises when there must be no retry
                self._state("connecting")
                await asyncio.sleep(delay)
        except HeraldClientError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must reach the application, not die in a task
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._requests.fail(error)
        self._opened.set()
        self._readable.set()
        self._state("closed")

    async def _connect_once(self) -> tuple[Disconnect | None, str, int | None]:
        """One connection, from handshake to close: what ended it (None: the reader paused)."""
        url = self._client.chat_url(self.name, self._tracker.resume)
        try:
            ws = await connect(url, additional_headers=self._client.headers(), **self._client.ws_options)
        except InvalidStatus as exc:
            status = exc.response.status_code
            return classify_handshake(status), f"handshake refused with HTTP {status}", None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return Disconnect.RETRY, f"cannot connect: {exc}", None
        paused = False
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), self._client.open_timeout_s))
            for frame in self._tracker.welcome(welcome):
                self._push(frame)
            if self._offset is None:
                self._offset = self._tracker.resume
            self.replica = welcome.get("replica")
            self.connects += 1
            self._reconnector.connected()
            await self._requests.attach(ws)
            self._opened.set()
            self._state("open")
            async for raw in ws:
                if not self._receive(raw):
                    paused = True
                    break
        except (ConnectionClosed, TimeoutError, ValueError):
            pass
        finally:
            self._requests.detach()
            await ws.close(1000, "client falling behind" if paused else "bye")
        if paused:
            return None, "", None
        code = ws.close_code
        return classify_close(code), f"close {code} {ws.close_reason or ''}".strip(), code

    def _receive(self, raw: str | bytes) -> bool:
        """Handle one server frame; False when the buffer is full (the frame is left for the resume)."""
        frame = json.loads(raw)
        kind = frame.get("type")
        if kind in APP_FRAMES:
            if len(self._frames) >= self._max_buffer:
                return False
            if self._tracker.accept(frame):
                self._push(frame)
        elif kind == "ack" or kind in ANSWERS:
            self._requests.answer(frame)
        return True

    def _push(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._readable.set()

    def _state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self._on_state is not None:
            self._on_state(state)
