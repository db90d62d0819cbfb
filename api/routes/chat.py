"""``/api/chat/{room}/…``: publish over HTTP, read retained history (``api.chat``) and who is present."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, status

from api.deps import ChatDep, IdempotencyKey, PresenceDep, ReaderDep, WriterDep
from api.models import ROOM_PATTERN, ChatMessage, MessageAccepted, MessageIn, RoomPresenceOut, valid_since

router = APIRouter(prefix="/api/chat", tags=["chat"])

RoomPath = Annotated[str, Path(pattern=ROOM_PATTERN, description="room name")]


@router.post("/{room}/messages", status_code=status.HTTP_202_ACCEPTED, response_model=MessageAccepted)
async def post_message(
    room: RoomPath, body: MessageIn, writer: WriterDep, chat: ChatDep, key: IdempotencyKey = None
) -> MessageAccepted:
    writer.check_room(room)
    published, _ = await chat.publish(room, writer.user, body.text, key)
    return MessageAccepted(id=published.offset)


@router.get("/{room}/messages", response_model=list[ChatMessage])
async def get_messages(
    room: RoomPath,
    chat: ChatDep,
    reader: ReaderDep,
    since: Annotated[str | None, Query(description="offset: the first `limit` events after it")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ChatMessage]:
    if reader is not None:
        reader.check_room(room)
    events = await chat.history(room, valid_since(since), limit)
    return [ChatMessage(id=event.offset or "", **orjson.loads(event.data)) for event in events]


@router.get("/{room}/presence", response_model=RoomPresenceOut)
async def get_presence(room: RoomPath, presence: PresenceDep, reader: ReaderDep) -> RoomPresenceOut:
    """Who has a connection open in the room (WebSocket or SSE), on any replica: what a ``presence``
    frame answers on the WebSocket, for clients that have only HTTP (the SSE transport)."""
    if reader is not None:
        reader.check_room(room)
    return RoomPresenceOut(room=room, users=await presence.users(room))
