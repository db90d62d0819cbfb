"""A chat socket's client frames -> ``ChatProtocol`` -> actions, with no await per frame.

Fed synchronously, straight from Herald's uvicorn protocol (``api.ws.frame_io.FrameReader``), or by the
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
        # replies waiting behind one still being worked out; made on first need (an idle socket holds none)
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
        for action in actions:
            if isinstance(action, Send):
                self._reply(action.text)
            elif isinstance(action, Publish):
                self._publish(action)
            elif isinstance(action, AskPresence):
                self._ask_presence()
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

    def _later(self) -> _Pending:
        """A place for a reply still being worked out, in line behind those before it."""
        pending = _Pending()
        if self._replies is None:
            self._replies = deque()
        self._replies.append(pending)
        self._in_flight += 1
        if self.full:
            self.pause()
        return pending

    def _settle(self, pending: _Pending, text: str | None) -> None:
        """``pending``'s reply is ``text`` (None: no reply): it and the replies behind it that are ready go."""
        pending.text, pending.ready = text, True
        self._in_flight -= 1
        replies, push = self._replies, self._conn.push
        while replies:  # (not None: a pending reply was queued there)
            head = replies[0]
            if isinstance(head, str):
                text = head
            elif head.ready:
                text = head.text
            else:
                break
            replies.popleft()
            if text is not None:
                push(text)
        if not self.full:
            self.resume()
            if self._room_made is not None:
                self._room_made.set()

    def _publish(self, action: Publish) -> None:
        """The publish, started now: no task and no future; its reply is made when Redis answered."""
        pending, key = self._later(), action.key

        def then(published: Published | None, error: BaseException | None) -> None:
            self._settle(pending, _publish_reply(key, published, error))

        try:
            self._state.chat.publish_then(self._room, self._user, action.text, then, key)
        except Exception as exc:  # (a bug) handled as a publish that failed: logged, no reply
            then(None, exc)

    def _ask_presence(self) -> None:
        pending = self._later()
        task = asyncio.ensure_future(self._presence())
        task.add_done_callback(lambda done: self._settle(pending, _task_reply(done)))

    async def _presence(self) -> str:
        try:
            users = await self._state.presence.users(self._room)
        except Unavailable:
            return error_frame(ErrorCode.UNAVAILABLE, "redis is unavailable")
        return dumps({"type": "presence", "room": self._room, "users": users})


class _Pending:
    """A reply still being worked out (``ready`` once it is; ``text`` None when there is none to send)."""

    __slots__ = ("ready", "text")

    def __init__(self) -> None:
        self.ready = False
        self.text: str | None = None


def _publish_reply(key: str | None, published: Published | None, error: BaseException | None) -> str | None:
    """A publish's reply: an ``ack`` when it had a key, an ``error`` when Redis did not take it."""
    if error is None:
        assert published is not None
        return ack_frame(key, published.offset) if key is not None else None
    if isinstance(error, asyncio.CancelledError):  # shutting down: no reply, as for a cancelled task
        return None
    if isinstance(error, OutcomeUnknown):
        return error_frame(ErrorCode.UNAVAILABLE, str(error))
    if isinstance(error, Unavailable):
        return error_frame(ErrorCode.UNAVAILABLE, "redis is unavailable; the message was not published")
    return _failed(error)


def _task_reply(task: asyncio.Future[str]) -> str | None:
    if task.cancelled():
        return None
    error = task.exception()
    return task.result() if error is None else _failed(error)


def _failed(error: BaseException) -> str | None:
    """A bug: this frame gets no reply (None), the socket and its later replies go on."""
    log.error("a chat frame's work failed", exc_info=error)
    return None


def _nothing() -> None:
    pass
