"""What a chat subscriber is sent, whatever carries it (WebSocket ``/ws/chat``, SSE ``/sse/chat``).

The encoders here are ``Event.memo`` keys: each runs once per event per replica and every local
subscriber gets the same text. ``send_backlog`` is the welcome-then-replay step both transports
share: subscribe (buffering; presence entered in the same round trip, ``api.presence``) -> welcome ->
replay page by page with backpressure -> live.
``replay_frame`` and ``live_sink`` say once who sees what: never one's own join/leave, and a gap ends
the subscriber with 4010 so that it resumes with ``since``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import orjson

from api.errors import CloseCode
from api.models import with_offset
from broker import Event, Sink, Subscription

GAP_REASON = "insufficient state: resume with since"


class Outlet(Protocol):
    """Where a backlog goes: a chat WebSocket's ``Connection`` or an SSE ``EventStream``."""

    @property
    def closed(self) -> bool: ...

    async def send_now(self, frame: str) -> None: ...

    async def close(self, code: CloseCode, reason: str) -> None: ...


def chat_frame(event: Event) -> str:
    """The client frame for a chat event; computed once per event per replica (``Event.memo``)."""
    if event.offset is None:
        return event.data  # join/leave: published as complete frames
    return with_offset("id", event.offset, '{"type":"message",' + event.data[1:])


def _membership(event: Event) -> tuple[str, str | None]:
    """(type, user) of a join/leave frame, parsed once per event per replica."""
    fields = orjson.loads(event.data)
    kind, user = fields.get("type"), fields.get("user")
    return (kind if isinstance(kind, str) else "", user if isinstance(user, str) else None)


def frame_user(event: Event) -> str | None:
    """The user a join/leave frame is about (so a member is not told of their own arrival)."""
    if event.offset is not None:
        return None
    membership: tuple[str, str | None] = event.memo(_membership)
    return membership[1]


def frame_type(event: Event) -> str:
    """The frame's ``type``: ``message`` for stored events, ``join``/``leave`` for the ephemeral ones."""
    if event.offset is not None:
        return "message"
    membership: tuple[str, str | None] = event.memo(_membership)
    return membership[0]


def replay_frame(user: str, encoder: Callable[[Event], str]) -> Callable[[Event], str | None]:
    """``send_backlog``'s ``frame`` for ``user``: ``encoder``'s text (memoised), None for their own join/leave."""

    def frame(event: Event) -> str | None:
        if event.offset is None and event.memo(frame_user) == user:
            return None
        text: str = event.memo(encoder)
        return text

    return frame


def live_sink(user: str, deliver: Sink, end: Callable[[CloseCode, str], None]) -> Sink:
    """The live sink for ``user`` (called for every event and every local subscriber: no await, no encoding
    of its own): a gap ``end``s the subscriber 4010, their own join/leave is dropped, the rest ``deliver``ed."""

    def sink(event: Event) -> None:
        if event.offset is None:
            if event.gap:
                end(CloseCode.INSUFFICIENT_STATE, GAP_REASON)
                return
            if event.memo(frame_user) == user:
                return
        deliver(event)

    return sink


def welcome(subscription: Subscription, room: str, user: str, since: str | None, replica: str) -> dict[str, object]:
    """The §4 welcome frame: ``recovered`` only when ``since`` was given."""
    frame: dict[str, object] = {
        "type": "welcome",
        "room": room,
        "user": user,
        "replica": replica,
        "offset": subscription.offset,
    }
    if since is not None:
        frame["recovered"] = subscription.recovered
    return frame


async def send_backlog(
    outlet: Outlet,
    subscription: Subscription,
    first: str,
    frame: Callable[[Event], str | None],
    slow_close_s: float,
) -> bool:
    """Send ``first`` (the welcome) and the replay, each send within ``slow_close_s``; False if the outlet closed.

    The replay arrives a page at a time and the next page is read only once this one was
    handed to the outlet, so a client that does not read holds at most a page in memory.
    ``frame`` returns None for events this client is not to see. A gap closes the outlet with
    4010. Raises ``TimeoutError`` (the client did not read in time) and ``broker.Unavailable``.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(slow_close_s) as deadline:
        await outlet.send_now(first)
        async for events in subscription.replay():
            for event in events:
                if event.gap:
                    await outlet.close(CloseCode.INSUFFICIENT_STATE, GAP_REASON)
                    return False
                text = frame(event)
                if text is not None:
                    deadline.reschedule(loop.time() + slow_close_s)
                    await outlet.send_now(text)
    return not outlet.closed
