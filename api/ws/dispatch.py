"""Where a WebSocket goes: the one table of Herald's socket routes, and the app that dispatches to them.

A socket lives for hours and keeps its handler's whole call chain alive. Through Starlette's router and
middleware stack that is a dozen coroutine frames per connection, for HTTP concerns (body limits, exception
pages) a WebSocket handler does not use; dispatching here, before Starlette, measured 34.9 -> 23.8 KB of RSS
per idle connection and +20% connects/s (README, "Benchmarks"). So the socket routes live in this table only,
not in Starlette's router (OpenAPI has no WebSocket routes to list anyway):

==========================  ===================================
``/ws/chat/{room}``          ``api.ws.chat_endpoint.chat_socket``
``/graphql``                 ``api.graphql.endpoint.graphql_socket``
==========================  ===================================

``HeraldApp`` is the FastAPI app with this seam in front. Paths are matched below ``scope["root_path"]``
(uvicorn's ``--root-path`` behind a proxy, or an app mounted under a prefix), as Starlette's router matches
them. Any other WebSocket path goes on to Starlette, which refuses it
(HTTP 403 before the handshake).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

CHAT_PREFIX = "/ws/chat/"
GRAPHQL_PATH = "/graphql"

Handler = Callable[[WebSocket], Awaitable[None]]


def route_path(scope: Scope) -> str:
    """``scope["path"]`` below ``scope["root_path"]`` (ASGI puts the root path in front of the path)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


class SocketRoutes:
    """The table above. ``chat`` reads its room from ``websocket.path_params["room"]``, as under Starlette."""

    def __init__(self, *, chat: Handler, graphql: Handler) -> None:
        self.chat = chat
        self.graphql = graphql

    def handler_for(self, scope: Scope) -> Handler | None:
        """The handler of this WebSocket scope (its path parameters set), or None when it is not ours."""
        path = route_path(scope)
        if path.startswith(CHAT_PREFIX):
            room = path[len(CHAT_PREFIX) :]
            if "/" in room:
                return None
            scope["path_params"] = {"room": room}
            return self.chat
        if path == GRAPHQL_PATH:
            return self.graphql
        return None


class HeraldApp(FastAPI):
    """FastAPI, with Herald's WebSockets dispatched by ``sockets`` before the middleware stack.

    The handler is awaited right here (no wrapper coroutine), so a socket keeps just this frame and its own.
    """

    def __init__(self, *, sockets: SocketRoutes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sockets = sockets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            handler = self.sockets.handler_for(scope)
            if handler is not None:
                scope["app"] = self
                await handler(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)
