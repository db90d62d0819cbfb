"""FastAPI dependencies as ``Annotated`` aliases (the FastAPI template's style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from api.auth import Principal
from api.books import Books
from api.chat import Chat
from api.identity import Access, identify
from api.limits import writer_key
from api.presence import RoomPresence
from api.state import AppState
from api.ws.chat_protocol import MAX_KEY_CHARS


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.herald
    return state


def get_books(request: Request) -> Books:
    return get_state(request).books


def get_chat(request: Request) -> Chat:
    return get_state(request).chat


def get_presence(request: Request) -> RoomPresence:
    return get_state(request).presence


def get_writer(request: Request) -> Principal:
    """Who may write: the token's subject (401 without a valid one) or ``anonymous`` when auth is off;
    each write draws from that writer's ``HERALD_HTTP_RATE_LIMIT`` bucket (429 when it is empty)."""
    state = get_state(request)
    writer = identify(state.auth, Access.WRITE, request.query_params, request.headers)
    assert writer is not None  # only an open read has no principal
    client = request.client.host if request.client else None
    state.write_limits.take(writer_key(writer.user, client, state.auth.enabled))
    return writer


def get_reader(request: Request) -> Principal | None:
    """Who may read a chat room: with auth on, a valid token's subject (401 without one; its ``channels``
    claim is checked by the route), so a private room is never readable anonymously."""
    return identify(get_state(request).auth, Access.ROOM, request.query_params, request.headers)


StateDep = Annotated[AppState, Depends(get_state)]
BooksDep = Annotated[Books, Depends(get_books)]
ChatDep = Annotated[Chat, Depends(get_chat)]
PresenceDep = Annotated[RoomPresence, Depends(get_presence)]
WriterDep = Annotated[Principal, Depends(get_writer)]
ReaderDep = Annotated[Principal | None, Depends(get_reader)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="a repeat within HERALD_IDEMPOTENCY_TTL_S publishes nothing and answers with the first offset",
    ),
]
