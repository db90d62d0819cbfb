"""The WebSocket dispatch seam (``api.ws.dispatch``): which handler a socket reaches, below any root path,
past the HTTP middleware stack; everything else still goes through FastAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.app import create_app
from api.settings import Settings
from api.ws.dispatch import HeraldApp, SocketRoutes, route_path


async def chat(websocket: WebSocket) -> None:
    raise AssertionError("only matched here")


async def graphql(websocket: WebSocket) -> None:
    raise AssertionError("only matched here")


ROUTES = SocketRoutes(chat=chat, graphql=graphql)


def scope(path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "websocket", "path": path, "root_path": root_path}


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [
        ("/ws/chat/lobby", "", "/ws/chat/lobby"),
        ("/herald/ws/chat/lobby", "/herald", "/ws/chat/lobby"),
        ("/herald", "/herald", ""),
        ("/heraldic/ws/chat/lobby", "/herald", "/heraldic/ws/chat/lobby"),
        ("/ws/chat/lobby", "/herald", "/ws/chat/lobby"),
    ],
)
def test_the_route_path_is_the_path_below_the_root_path(path: str, root_path: str, expected: str) -> None:
    assert route_path(scope(path, root_path)) == expected


@pytest.mark.parametrize(("path", "root_path"), [("/ws/chat/lobby", ""), ("/api/v1/ws/chat/lobby", "/api/v1")])
def test_a_chat_socket_reaches_the_chat_handler_with_its_room(path: str, root_path: str) -> None:
    ws_scope = scope(path, root_path)
    assert ROUTES.handler_for(ws_scope) is chat
    assert ws_scope["path_params"] == {"room": "lobby"}


@pytest.mark.parametrize(("path", "root_path"), [("/graphql", ""), ("/x/graphql", "/x")])
def test_graphql_is_matched_exactly(path: str, root_path: str) -> None:
    assert ROUTES.handler_for(scope(path, root_path)) is graphql


@pytest.mark.parametrize("path", ["/graphql/", "/graphqlx", "/ws/chat/a/b", "/ws/chat", "/", "/x/graphql"])
def test_other_paths_are_not_ours(path: str) -> None:
    assert ROUTES.handler_for(scope(path)) is None


@pytest.fixture
def behind_root_path() -> Iterator[TestClient]:
    """An in-process replica served below ``/herald``, as ``uvicorn --root-path /herald`` serves it."""
    app = create_app(Settings(redis_url="memory://", replica_id="dispatch", heartbeat_s=30.0))
    with TestClient(app, root_path="/herald") as client:
        yield client


def test_sockets_below_a_root_path_reach_their_handlers(behind_root_path: TestClient) -> None:
    with behind_root_path.websocket_connect("/herald/ws/chat/lobby?user=ann") as ws:
        assert ws.receive_json()["room"] == "lobby"
    with behind_root_path.websocket_connect("/herald/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json() == {"type": "connection_ack"}
    assert behind_root_path.get("/herald/health").json()["status"] == "ok"


def test_a_socket_on_another_path_is_refused_by_starlette(behind_root_path: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect), behind_root_path.websocket_connect("/herald/ws/nowhere") as ws:
        ws.receive_text()


def test_sockets_skip_the_http_middleware_and_http_does_not() -> None:
    seen: list[str] = []

    class Record:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope["type"])
            await self.app(scope, receive, send)

    app = create_app(Settings(redis_url="memory://", replica_id="dispatch", heartbeat_s=30.0))
    assert isinstance(app, HeraldApp)
    app.add_middleware(Record)
    with TestClient(app) as client:
        with client.websocket_connect("/ws/chat/lobby") as ws:
            assert ws.receive_json()["type"] == "welcome"
        assert client.get("/health").status_code == 200
    assert "websocket" not in seen and "http" in seen
