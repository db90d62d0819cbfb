"""``/api/chat/{room}/messages``: publish over HTTP, read retained history (``api.chat``)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, status

from api.deps import ChatDep, IdempotencyKey, ReaderDep, WriterDep
from api.models import ROOM_PATTERN, ChatMessage, MessageAccepted, MessageIn, valid_since

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
