"""``/graphql`` over WebSocket: subprotocol negotiation, then a ``Session`` (api.graphql.session).

The subprotocol comes from ``Sec-WebSocket-Protocol`` (``graphql-transport-ws`` preferred when both are
offered, as graphql-ws's ``handleProtocols`` does). None of ours offered: the socket is accepted without a
subprotocol and closed 4406, as the graphql-ws server does, so clients see the code rather than a failed
handshake. Frames go through ``Connection``'s bounded queue (a slow client is dropped with 1013, as on chat)
and the socket counts in ``herald_connections{endpoint="graphql"}``.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.websockets import WebSocket

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.graphql.session import Session
from api.graphql.types import GRAPHQL_WS_PROTOCOL, SUBPROTOCOLS
from api.origins import origin_policy
from api.state import AppState
from api.ws.connection import Connection
from api.ws.frame_io import accept


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    return next((protocol for protocol in SUBPROTOCOLS if protocol in offered), None)


async def graphql_socket(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.herald
    if not origin_policy(state.settings.allowed_origins).allows(websocket.scope):
        await websocket.close(CloseCode.POLICY_VIOLATION, "origin not allowed")  # before accept(): HTTP 403
        return
    protocol = choose_subprotocol(websocket.scope.get("subprotocols") or ())
    if protocol is None:
        await websocket.accept()
        code = CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE
        await websocket.close(code, CLOSE_CODE_EXPLANATIONS[code])
        return
    await accept(websocket, protocol)
    if state.connections.full():
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "replica at HERALD_MAX_CONNECTIONS")
        return
    conn = Connection(
        websocket, endpoint="graphql", user="", queue_size=state.settings.send_queue, counts=state.metrics.counts
    )
    state.connections.add(conn)
    session = Session(
        websocket,
        conn,
        service=state.graphql,
        auth=state.auth,
        write_limits=state.write_limits,
        settings=state.settings,
        legacy=protocol == GRAPHQL_WS_PROTOCOL,
    )
    try:
        await session.serve()
    finally:
        state.connections.discard(conn)
        await session.end()
        await conn.end()
