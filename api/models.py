"""Wire models: HTTP bodies, the room-name rule, and event payload encoding."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field, StringConstraints

from api.errors import BadRequest, shown
from broker import is_offset

ROOM_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_ROOM = re.compile(ROOM_PATTERN)

Room = Annotated[str, StringConstraints(pattern=ROOM_PATTERN)]


def is_room(name: str) -> bool:
    return _ROOM.fullmatch(name) is not None


def over_limit(text: str, limit: int) -> bool:
    """``text`` is more than ``limit`` bytes of UTF-8 (the rule of HERALD_MAX_MESSAGE_BYTES, for frames and
    bodies alike); encoded only when its length could be over (at most 4 bytes a character)."""
    return len(text) * 4 > limit and len(text.encode()) > limit


def valid_since(since: str | None) -> str | None:
    """``since`` as given; ``BadRequest`` when it is not an offset."""
    if since is not None and not is_offset(since):
        raise BadRequest(f"since is not an offset: {shown(since)}")
    return since


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def now() -> float:
    return round(time.time(), 3)


def chat_payload(room: str, user: str, text: str) -> str:
    """The stored data of a chat message; its offset is added on delivery."""
    return dumps({"room": room, "user": user, "text": text, "ts": now()})


def with_offset(key: str, offset: str, data: str) -> str:
    """``{"<key>":"<offset>", ...data}`` by concatenation: no JSON decode on the hot path."""
    return '{"' + key + '":"' + offset + '",' + data[1:] if len(data) > 2 else '{"' + key + '":"' + offset + '"}'


class MessageIn(BaseModel):
    text: str = Field(min_length=1, description="message text")


class MessageAccepted(BaseModel):
    id: str = Field(description="offset of the published event")


class RoomPresenceOut(BaseModel):
    """The same list a WebSocket's ``presence`` request answers (SPEC §5): cluster-wide, sorted."""

    room: str
    users: list[str]


class ChatMessage(BaseModel):
    id: str
    room: str
    user: str
    text: str
    ts: float


class BookIn(BaseModel):
    isbn: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    author: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Book(BaseModel):
    isbn: str
    title: str
    author: str
    addedAt: float
    offset: str


class Health(BaseModel):
    status: str
    replica: str
