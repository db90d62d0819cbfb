"""A chat socket's client frames -> ``ChatProtocol`` -> actions, with no await per frame.

Fed synchronously, straight from Herald's uvicorn protocol (``api.ws.fastpath.FrameReader``), or by the
handler's ASGI receive loop on any other server. The rules are the machine's; this keeps two promises the
old one-frame-at-a-time loop kept by waiting:

* replies leave in the order of the frames that caused them (an ``ack`` or ``error`` for a publish still
  in flight holds back the ``pong`` of a later ``ping``), and a socket's publishes reach Redis in order
  (``broker.publisher`` sends them in arrival order);
* the work one socket has in flight is bounded: past ``MAX_IN_FLIGHT`` publishes and presence requests,
  reading from it stops (``pause``) until some complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from api.errors import ErrorCode
from api.models import dumps
from api.state import AppState
from api.ws.actions import Close, Send
from api.ws.chat_protocol import AskPresence, ChatAction, ChatProtocol, Publish, TokenBucket, ack_frame, error_frame
from api.ws.connection import Connection
from broker import OutcomeUnknown, Published, Unavailable

log = logging.getLogger(__name__)

#: publishes and presence requests one socket may have waiting for Redis before it is read no further
MAX_IN_FLIGHT = 64


class ChatFrames:
    __slots__ = (
        "_conn",
        "_in_flight",
        "_protocol",
        "_replies",
        "_room",
        "_room_made",
        "_state",
        "_user",
        "pause",
        "resume",
    )

    def __init__(self, conn: Connection, room: str, user: str, state: AppState) -> None:
        settings = state.settings
        self._conn = conn
        self._room = room
        self._user = user
        self._state = state
        self._protocol = ChatProtocol(
            max_bytes=settings.max_message_bytes, bucket=TokenBucket(settings.rate_limit, settings.rate_burst)
        )
        # replies waiting behind one still being worked out (a future and what makes its reply of it);
        # made on first need (an idle socket holds none)
        self._replies: deque[str | _Pending] | None = None
        self._in_flight = 0
        self._room_made: asyncio.Event | None = None
        #: stop / resume reading this socket (a no-op on the ASGI path, where the handler waits instead)
        self.pause: Callable[[], None] = _nothing
        self.resume: Callable[[], None] = _nothing

    @property
    def full(self) -> bool:
        return self._in_flight >= MAX_IN_FLIGHT

    async def room(self) -> None:
        """Wait until the socket may have more in flight (the ASGI path's backpressure)."""
        while self.full and not self._conn.closed:
            self._room_made = self._room_made or asyncio.Event()
            self._room_made.clear()
            await self._room_made.wait()

    def on_text(self, text: str) -> None:
        self._run(self._protocol.receive(text))

    def on_bytes(self, data: bytes) -> None:
        self._run(self._protocol.receive_bytes(data))

    def _run(self, actions: list[ChatAction]) -> None:
        conn = self._conn
        if conn.closed:
            return
        loop = asyncio.get_running_loop()
        for action in actions:
            if isinstance(action, Send):
                self._reply(action.text)
            elif isinstance(action, Publish):
                self._later(self._publish(action), partial(_publish_reply, action.key))
            elif isinstance(action, AskPresence):
                self._later(loop.create_task(self._presence()), _task_reply)
            elif isinstance(action, Close):
                conn.close_soon(action.code, action.reason)
                return
        protocol = self._protocol
        if protocol.rate_limited:
            self._state.metrics.counts.rate_limited += protocol.rate_limited
            protocol.rate_limited = 0

    def _reply(self, text: str) -> None:
        if self._replies:
            self._replies.append(text)  # behind a reply still being worked out
        else:
            self._conn.push(text)

    def _later(self, future: asyncio.Future[Any], reply: Callable[[asyncio.Future[Any]], str | None]) -> None:
        if self._replies is None:
            self._replies = deque()
        self._replies.append((future, reply))
        self._in_flight += 1
        future.add_done_callback(self._done)
        if self.full:
            self.pause()

    def _done(self, _: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        replies, push = self._replies, self._conn.push
        while replies:  # (not None: a future was queued there)
            head = replies[0]
            if isinstance(head, str):
                text: str | None = head
            elif head[0].done():
                future, reply = head
                text = None if future.cancelled() else reply(future)
            else:
                break
            replies.popleft()
            if text is not None:
                push(text)
        if not self.full:
            self.resume()
            if self._room_made is not None:
                self._room_made.set()

    def _publish(self, action: Publish) -> asyncio.Future[Published]:
        """The publish, started now: no task, the reply is made when its future completes."""
        try:
            return self._state.chat.publish_soon(self._room, self._user, action.text, action.key)
        except Exception as exc:  # (a bug) handled as a publish that failed: logged, no reply
            failed: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _presence(self) -> str:
        try:
            users = await self._state.presence.users(self._room)
        except Unavailable:
            return error_frame(ErrorCode.UNAVAILABLE, "redis is unavailable")
        return dumps({"type": "presence", "room": self._room, "users": users})


_Pending = tuple["asyncio.Future[Any]", Callable[["asyncio.Future[Any]"], str | None]]


def _publish_reply(key: str | None, outcome: asyncio.Future[Published]) -> str | None:
    """A publish's reply: an ``ack`` when it had a key, an ``error`` when Redis did not take it."""
    error = outcome.exception()
    if error is None:
        return ack_frame(key, outcome.result().offset) if key is not None else None
    if isinstance(error, OutcomeUnknown):
        return error_frame(ErrorCode.UNAVAILABLE, str(error))
    if isinstance(error, Unavailable):
        return error_frame(ErrorCode.UNAVAILABLE, "redis is unavailable; the message was not published")
    return _failed(error)


def _task_reply(task: asyncio.Future[str | None]) -> str | None:
    error = task.exception()
    return task.result() if error is None else _failed(error)


def _failed(error: BaseException) -> str | None:
    """A bug: this frame gets no reply (None), the socket and its later replies go on."""
    log.error("a chat frame's work failed", exc_info=error)
    return None


def _nothing() -> None:
    pass
