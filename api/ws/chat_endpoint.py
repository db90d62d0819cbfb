"""``/ws/chat/{room}``: the runner around ``ChatProtocol``.

Order matters for "no gap, no duplicate": subscribe (buffering) and enter presence,
in one round trip -> welcome -> replay, page by page with backpressure -> live ->
start the writer; presence is exited however that ends. Refusals
happen before ``accept()`` so the client sees HTTP 403 and no socket opens.
A gap (stored events this client can no longer get) closes the socket with
4010, so the client resumes with ``since`` and learns ``recovered: false``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import Principal
from api.chat_feed import chat_frame, live_sink, replay_frame, send_backlog, welcome
from api.errors import CloseCode, HeraldError
from api.identity import Access, identify
from api.models import dumps, is_room, valid_since
from api.origins import origin_policy
from api.state import AppState
from api.ws.chat_frames import ChatFrames
from api.ws.connection import Connection
from api.ws.frame_io import accept, frame_reader
from broker import Event, Subscription, Unavailable

log = logging.getLogger(__name__)


def _refuse_reason(websocket: WebSocket, room: str, state: AppState) -> tuple[Principal | None, str]:
    if not origin_policy(state.settings.allowed_origins).allows(websocket.scope):
        return None, "origin not allowed"
    if not is_room(room):
        return None, "invalid room name"
    try:
        valid_since(websocket.query_params.get("since"))
        principal = identify(state.auth, Access.SOCKET, websocket.query_params, websocket.headers)
        assert principal is not None  # a socket always has one
        principal.check_room(room)
    except HeraldError as exc:
        return None, exc.detail
    return principal, ""


async def chat_socket(websocket: WebSocket) -> None:
    room: str = websocket.path_params["room"]
    state: AppState = websocket.app.state.herald
    settings = state.settings
    principal, reason = _refuse_reason(websocket, room, state)
    if principal is None:
        log.info("refused chat handshake for room %r: %s", room, reason)
        await websocket.close(CloseCode.POLICY_VIOLATION, reason)  # before accept(): HTTP 403
        return
    await accept(websocket)
    if state.connections.full():
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "replica at HERALD_MAX_CONNECTIONS")
        return
    conn = Connection(
        websocket, endpoint="chat", user=principal.user, queue_size=settings.send_queue, counts=state.metrics.counts
    )
    state.connections.add(conn)
    try:
        await _serve(websocket, conn, room, principal, state)
    finally:
        state.connections.discard(conn)
        await conn.end()


async def _serve(websocket: WebSocket, conn: Connection, room: str, principal: Principal, state: AppState) -> None:
    user = principal.user

    frame = replay_frame(user, chat_frame)
    sink = live_sink(user, lambda event: conn.push_event(event, chat_frame), conn.close_soon)

    since = websocket.query_params.get("since")
    try:
        # subscribed and present in one round trip; the own join frame it announces is dropped by ``sink``
        subscription = await state.presence.subscribe(room, user, conn.id, sink, since)
    except Unavailable:
        await conn.close(CloseCode.TRY_AGAIN_LATER, "redis is unavailable; retry with since")
        return
    try:
        try:
            if not await _welcome(conn, subscription, room, user, since, frame, state):
                return
        except TimeoutError:
            await conn.close(CloseCode.TRY_AGAIN_LATER, "slow consumer: replay not read in time")
            return
        except Unavailable:
            await conn.close(CloseCode.TRY_AGAIN_LATER, "redis is unavailable; retry with since")
            return
        conn.start_writer()
        conn.expire_at(principal.expires_at, CloseCode.POLICY_VIOLATION)
        await _receive_loop(websocket, conn, room, user, state)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        try:
            await state.presence.exit(room, user, conn.id)  # however the socket ended, the welcome's failure included
        finally:
            await subscription.close()


async def _welcome(
    conn: Connection,
    subscription: Subscription,
    room: str,
    user: str,
    since: str | None,
    frame: Callable[[Event], str | None],
    state: AppState,
) -> bool:
    """Send the welcome and the replay (``api.chat_feed.send_backlog``); False if the socket closed."""
    first = dumps(welcome(subscription, room, user, since, state.settings.replica_id))
    return await send_backlog(conn, subscription, first, frame, state.settings.slow_close_s)


async def _receive_loop(websocket: WebSocket, conn: Connection, room: str, user: str, state: AppState) -> None:
    frames = ChatFrames(conn, room, user, state)
    reader = frame_reader(websocket)
    if reader is not None:
        # Herald's protocol hands frames straight to the machine; what reaches the ASGI queue from now on
        # is what arrived before (handled below, first, in order) and the disconnect.
        frames.pause, frames.resume = reader.pause, reader.resume
        reader.on_text, reader.on_bytes = frames.on_text, frames.on_bytes
    try:
        while not conn.closed:
            message = await conn.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                frames.on_text(text)
            else:
                frames.on_bytes(message.get("bytes") or b"")
            await frames.room()
    finally:
        if reader is not None:
            reader.detach()
