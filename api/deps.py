"""FastAPI dependencies as ``Annotated`` aliases (the FastAPI template's style)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from api.auth import Principal, token_from
from api.errors import Unauthorized
from api.limits import writer_key
from api.settings import Settings
from api.state import AppState
from api.ws.chat_protocol import MAX_KEY_CHARS
from broker import Broker


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.herald
    return state


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


def get_broker(request: Request) -> Broker:
    return get_state(request).broker


def get_writer(request: Request) -> Principal:
    """Who may write: the token's subject (401 without a valid one) or ``anonymous`` when auth is off;
    each write draws from that writer's ``HERALD_HTTP_RATE_LIMIT`` bucket (429 when it is empty)."""
    state = get_state(request)
    auth = state.auth
    if not auth.enabled:
        principal = auth.principal(None)
    else:
        token = token_from(request.query_params, request.headers)
        if token is None:
            raise Unauthorized("a bearer token is required to write")
        principal = auth.verify(token)
    client = request.client.host if request.client else None
    state.write_limits.take(writer_key(principal.user, client, auth.enabled))
    return principal


def get_reader(request: Request) -> Principal | None:
    """Who may read a chat room: with auth on, a valid token's subject (401 without one; its ``channels``
    claim is checked by the route), so a private room is never readable anonymously. None when auth is off."""
    auth = get_state(request).auth
    if not auth.enabled:
        return None
    token = token_from(request.query_params, request.headers)
    if token is None:
        raise Unauthorized("a bearer token is required to read a chat room")
    return auth.verify(token)


StateDep = Annotated[AppState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
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
