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
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from herald_client.core import (
    Disconnect,
    Frame,
    Reconnector,
    RoomTracker,
    classify_close,
    classify_handshake,
)
from herald_client.errors import HeraldClientError, OutcomeUnknown, RequestRefused, Unavailable

if TYPE_CHECKING:
    from herald_client.client import HeraldClient

#: frames the application reads; everything else is the client's business
APP_FRAMES = frozenset({"message", "join", "leave"})
#: answers to a request, in request order (the server handles one frame of a socket at a time)
ANSWERS = frozenset({"error", "presence", "pong"})
#: an ``unavailable`` detail that means "maybe published" (SPEC §8)
_UNKNOWN_HINTS = ("unknown", "may or may not")


@dataclass(eq=False)
class _Request:
    frame: str
    key: str | None
    future: asyncio.Future[Frame]
    #: handed to a socket at least once
    written: bool = field(default=False)


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
        self._pending: deque[_Request] = deque()
        self._inflight: deque[_Request] = deque()
        self._write_lock = asyncio.Lock()
        self._ws: ClientConnection | None = None
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
        self._fail_requests(HeraldClientError(f"room {self.name} closed"))
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
        answer = await self._request({"type": "message", "text": text, "key": key}, key)
        return str(answer["id"])

    async def presence(self) -> list[str]:
        """The users with an open socket in this room, cluster-wide."""
        answer = await self._request({"type": "presence"}, None)
        return [str(user) for user in answer.get("users", [])]

    # -- requests ------------------------------------------------------------------

    async def _request(self, frame: Frame, key: str | None) -> Frame:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise HeraldClientError(f"room {self.name} is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.request_timeout_s
        text = json.dumps(frame)
        unknown = False
        answer: Frame = {}
        for attempt in range(self._policy.request_attempts):
            request = _Request(text, key, loop.create_future())
            self._pending.append(request)
            try:
                await self._write(request)
                async with asyncio.timeout_at(deadline):
                    answer = await request.future
            except TimeoutError:
                if request.written or unknown:
                    raise OutcomeUnknown(
                        f"no answer within {self._policy.request_timeout_s} s: the outcome is unknown"
                    ) from None
                raise Unavailable(f"not connected within {self._policy.request_timeout_s} s; not sent") from None
            finally:
                self._forget(request)
            if answer.get("type") != "error":
                return answer
            code, detail = str(answer.get("code")), str(answer.get("detail"))
            if code == "unavailable":
                unknown = unknown or any(hint in detail for hint in _UNKNOWN_HINTS)
            elif code != "rate_limited":
                raise RequestRefused(code, detail)
            if attempt + 1 < self._policy.request_attempts:
                pause = self._client.rng.uniform(0, self._policy.base_s * 2**attempt)
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        code, detail = str(answer.get("code")), str(answer.get("detail"))
        if unknown:
            raise OutcomeUnknown(f"{detail} (after {self._policy.request_attempts} attempts)")
        if code == "unavailable":
            raise Unavailable(f"{detail} (after {self._policy.request_attempts} attempts)")
        raise RequestRefused(code, detail)

    async def _write(self, request: _Request) -> None:
        """Send now if connected; otherwise the next connection sends it (``_resend``)."""
        ws = self._ws
        if ws is None:
            return
        async with self._write_lock:
            if self._ws is not ws or request in self._inflight or request.future.done():
                return
            self._inflight.append(request)
            request.written = True
            with contextlib.suppress(ConnectionClosed):
                await ws.send(request.frame)

    async def _resend(self, ws: ClientConnection) -> None:
        async with self._write_lock:
            self._inflight.clear()
            for request in list(self._pending):
                if request.future.done():
                    continue
                self._inflight.append(request)
                request.written = True
                await ws.send(request.frame)

    def _forget(self, request: _Request) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(request)
        with contextlib.suppress(ValueError):
            self._inflight.remove(request)

    def _answer(self, frame: Frame) -> None:
        request: _Request | None = None
        if frame.get("type") == "ack":
            request = next((r for r in self._inflight if r.key == frame.get("key")), None)
        elif self._inflight:
            request = self._inflight[0]
        if request is not None:
            self._forget(request)
            if not request.future.done():
                request.future.set_result(frame)

    def _fail_requests(self, error: BaseException) -> None:
        for request in list(self._pending):
            if not request.future.done():
                request.future.set_exception(error)
        self._pending.clear()
        self._inflight.clear()

    # -- the connection task ---------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                self._state("connecting")
                kind, detail, code = await self._connect_once()
                self._state("connecting")
                if kind is None:  # the application fell behind: resume once it caught up
                    while len(self._frames) > self._max_buffer // 2:
                        self._drained.clear()
                        await self._drained.wait()
                    continue
                await asyncio.sleep(self._reconnector.next_delay(kind, detail, code))
        except HeraldClientError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must reach the application, not die in a task
            self._fail(exc)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._fail_requests(error)
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
            self._ws = ws
            await self._resend(ws)
            self._opened.set()
            self._state("open")
            async for raw in ws:
                if not self._receive(raw):
                    paused = True
                    break
        except (ConnectionClosed, TimeoutError, ValueError):
            pass
        finally:
            self._ws = None
            self._inflight.clear()
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
            self._answer(frame)
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
