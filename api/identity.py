"""Who is asking: the one rule, for HTTP requests and both WebSocket endpoints.

* auth off (no ``HERALD_JWT_SECRET``): whoever the client says (``?user=``, or ``user`` in a GraphQL
  ``connection_init`` payload) on a socket, ``anonymous`` over HTTP;
* auth on: the token's principal (``Unauthorized`` when it is malformed, expired or forged), looked for in the
  ``connection_init`` payload first (GraphQL), then ``?token=``, then ``Authorization: Bearer``;
* no token with auth on: None for an open HTTP read (books, GraphQL queries: the resolvers that read a chat
  room refuse it), ``Unauthorized`` for anything else (a chat room's history, a write, a socket).
"""

from __future__ import annotations

import asyncio
import time
from asyncio import TimerHandle
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from api.auth import Auth, Principal, bearer, token_from
from api.errors import CloseCode, Unauthorized


class Access(Enum):
    #: an HTTP read that is open without a token
    READ = "read"
    #: reading a chat room's history over HTTP (a private room is never readable anonymously)
    ROOM = "room"
    #: an HTTP write
    WRITE = "write"
    #: a WebSocket (chat, or a GraphQL ``connection_init``)
    SOCKET = "socket"


_MISSING = {
    Access.ROOM: "a bearer token is required to read a chat room",
    Access.WRITE: "a bearer token is required to write",
    Access.SOCKET: "a token is required",
}


def identify(
    auth: Auth,
    access: Access,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload: Mapping[str, Any] | None = None,
) -> Principal | None:
    """The principal behind a request or socket (module docstring); None only for an open ``READ``."""
    if not auth.enabled:
        if access is not Access.SOCKET:
            return auth.principal(None)
        name = payload.get("user") if payload else None
        return auth.principal(None, name if isinstance(name, str) else query.get("user"))
    token = _payload_token(payload)
    if token is None:
        token = token_from(query, headers)
    if token is None:
        if access is Access.READ:
            return None
        raise Unauthorized(_MISSING[access])
    return auth.verify(token)


def _payload_token(payload: Mapping[str, Any] | None) -> str | None:
    """GraphQL ``connection_init``: ``{"token": T}`` or ``{"authorization": "Bearer T"}``."""
    if not payload:
        return None
    if isinstance(payload.get("token"), str):
        token: str = payload["token"]
        return token
    header = payload.get("authorization") or payload.get("Authorization")
    return bearer(header) if isinstance(header, str) else None


def on_expiry(
    expires_at: float | None, close: Callable[[CloseCode, str], object], code: CloseCode
) -> TimerHandle | None:
    """Call ``close(code, "token expired")`` when a token expiring at ``expires_at`` (epoch s) does; None: never."""
    if expires_at is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.call_at(loop.time() + max(0.0, expires_at - time.time()), close, code, "token expired")
