"""``GET /sse/chat/{room}``: a chat room as server-sent events (SPEC §10).

The same steps as the chat WebSocket (``api.chat_feed``): subscribe (buffering) and enter presence
in one round trip -> welcome -> paged replay with backpressure -> live; presence is exited however
it ends. Each event's SSE text is built once per event per replica (``Event.memo``). Message
events carry ``id: OFFSET``, so a reconnecting ``EventSource`` resumes with ``Last-Event-ID``,
which works as ``since`` (and wins over it). Without ``since`` the welcome carries ``id:`` too (the
room's newest offset, or ``0`` for an empty room), so even a client that saw no message yet resumes
from where it joined. A gap, a drain, a slow consumer or an expired token end the stream after an
``event: close`` naming the WebSocket close code.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from api.auth import Principal
from api.chat_feed import chat_frame, frame_type, live_sink, replay_frame, send_backlog, welcome
from api.errors import BadRequest, CloseCode, Forbidden
from api.identity import Access, identify, on_expiry
from api.models import dumps, is_room
from api.origins import origin_policy
from api.sse.response import EventStream200, EventStreamResponse
from api.sse.stream import EventStream, sse_event
from api.state import AppState
from broker import Event, Unavailable, is_offset

router = APIRouter(tags=["sse"])

UNAVAILABLE = "redis is unavailable; retry with since"


def sse_chat(event: Event) -> str:
    """The SSE event of a chat event (``Event.memo`` key: once per event per replica)."""
    frame: str = event.memo(chat_frame)
    if event.offset is None:
        return sse_event(frame_type(event) or "message", frame)
    return sse_event("message", frame, event.offset)


def sse_chat_bytes(event: Event) -> bytes:
    text: str = event.memo(sse_chat)
    return text.encode()


def close_event(code: CloseCode, reason: str) -> bytes:
    """Why the stream ends, as the WebSocket would have said it with its close frame."""
    return sse_event("close", orjson.dumps({"code": int(code), "reason": reason}).decode()).encode()


@router.get(
    "/sse/chat/{room}",
    summary="A chat room as server-sent events",
    response_class=EventStream200,
    response_description="the retry hint, the welcome, then every chat frame as an event",
)
async def chat_events(
    request: Request,
    room: Annotated[str, Path(description="room name")],
    since: Annotated[str | None, Query(description="an offset: replay what came after it first")] = None,
    user: Annotated[str | None, Query(description="display name when auth is off")] = None,
    token: Annotated[str | None, Query(description="a JWT, or send Authorization: Bearer")] = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="sent by a reconnecting EventSource; wins over since")
    ] = None,
) -> Response:
    state: AppState = request.app.state.herald
    if not origin_policy(state.settings.allowed_origins).allows(request.scope):
        raise Forbidden("origin not allowed")  # a page on another site, as for a WebSocket handshake
    if not is_room(room):
        raise BadRequest(f"invalid room name {room!r}")
    since = last_event_id or since
    if since is not None and not is_offset(since):
        raise BadRequest(f"since is not an offset: {since!r}")
    principal = identify(state.auth, Access.SOCKET, request.query_params, request.headers)
    assert principal is not None  # SOCKET access is never anonymous-open
    principal.check_room(room)

    async def run(stream: EventStream) -> None:
        await _serve(stream, room, principal, since, state)

    return EventStreamResponse(state, "chat", principal.user, run, close_event)


async def _serve(stream: EventStream, room: str, principal: Principal, since: str | None, state: AppState) -> None:
    user, settings = principal.user, state.settings

    frame = replay_frame(user, sse_chat)
    sink = live_sink(user, lambda event: stream.push(event.memo(sse_chat_bytes)), stream.end)

    try:
        # subscribed and present in one round trip; the own join frame it announces is dropped by ``sink``
        subscription = await state.presence.subscribe(room, user, stream.id, sink, since)
    except Unavailable:
        stream.end(CloseCode.TRY_AGAIN_LATER, UNAVAILABLE)
        return
    expiry: asyncio.TimerHandle | None = None
    try:
        greeting = welcome(subscription, room, user, since, settings.replica_id)
        # without since, the welcome is a position too: a reconnect before any message resumes from it
        welcome_id = (subscription.offset or "0") if since is None else None
        first = sse_event("welcome", dumps(greeting), welcome_id)
        try:
            if not await send_backlog(stream, subscription, first, frame, settings.slow_close_s):
                return
        except TimeoutError:
            stream.end(CloseCode.TRY_AGAIN_LATER, "slow consumer: replay not read in time")
            return
        except Unavailable:
            stream.end(CloseCode.TRY_AGAIN_LATER, UNAVAILABLE)
            return
        expiry = on_expiry(principal.expires_at, stream.end, CloseCode.POLICY_VIOLATION)
        await stream.serve()
    finally:
        if expiry is not None:
            expiry.cancel()
        try:
            await state.presence.exit(room, user, stream.id)  # however the stream ended, a failed welcome included
        finally:
            await subscription.close()
