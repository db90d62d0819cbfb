"""Every close code Herald sends carries a short reason a client can log (issue 15, item 5).

The shutdown close (1012) is sent by the server protocol itself, not by a handler, so it is checked here on a
real ``herald serve`` with real clients of each endpoint and subprotocol."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import orjson
import pytest
import websockets

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from tests.helpers.chat import connect
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


async def closed(ws: websockets.ClientConnection, within: float) -> tuple[int | None, str | None]:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return ws.close_code, ws.close_reason


async def test_sigterm_close_1012_says_why_and_what_to_do_on_every_endpoint(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_SHUTDOWN_GRACE_S="3")
    chat, _ = await connect(herald.ws, "reasons", user="ada")
    graphql = {}
    for subprotocol in ("graphql-transport-ws", "graphql-ws"):
        ws = await websockets.connect(f"{herald.ws}/graphql", subprotocols=[subprotocol], open_timeout=5)  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        graphql[subprotocol] = ws
    assert herald.process is not None
    herald.process.send_signal(signal.SIGTERM)
    expected = (CloseCode.SERVICE_RESTART, CLOSE_CODE_EXPLANATIONS[CloseCode.SERVICE_RESTART])
    assert await closed(chat, 5) == expected
    for ws in graphql.values():
        assert await closed(ws, 5) == expected
    assert await asyncio.to_thread(herald.process.wait, 5) == 0


async def test_over_the_connection_limit_the_1013_has_a_reason(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_MAX_CONNECTIONS="1")
    first, _ = await connect(herald.ws, "reasons", user="ada")
    second = await websockets.connect(f"{herald.ws}/ws/chat/reasons?user=bob", open_timeout=5)
    code, reason = await closed(second, 5)
    assert code == CloseCode.TRY_AGAIN_LATER
    assert reason
    await first.close()


def test_every_close_code_has_a_written_explanation() -> None:
    assert set(CLOSE_CODE_EXPLANATIONS) == set(CloseCode)
    assert all(0 < len(text.encode()) <= 123 for text in CLOSE_CODE_EXPLANATIONS.values())
