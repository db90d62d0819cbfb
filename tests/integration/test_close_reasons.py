"""Every close code Herald sends carries a short reason a client can log (issue 15, item 5).

The shutdown close (1012) is sent by the server protocol itself, not by a handler, so it is checked here on the
server ``herald serve`` runs (in-process, tests/helpers/inprocess.py: stopped as SIGTERM stops it; the signal
itself and the exit status are tests/e2e/test_shutdown.py's) with real clients of each endpoint and subprotocol."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import websockets

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from tests.helpers.chat import connect
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import RedisServer

pytestmark = [pytest.mark.redis]


async def closed(ws: websockets.ClientConnection, within: float) -> tuple[int | None, str | None]:
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return ws.close_code, ws.close_reason


async def test_shutdown_close_1012_says_why_and_what_to_do_on_every_endpoint(
    redis_server: RedisServer, key_prefix: str
) -> None:
    async with InProcessReplica(redis_url=redis_server.url, key_prefix=key_prefix, shutdown_grace_s=3) as herald:
        chat, _ = await connect(herald.ws, "reasons", user="ada")
        graphql = {}
        for subprotocol in ("graphql-transport-ws", "graphql-ws"):
            ws = await websockets.connect(f"{herald.ws}/graphql", subprotocols=[subprotocol], open_timeout=5)  # type: ignore[list-item]
            await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
            graphql[subprotocol] = ws
        stopped = asyncio.create_task(asyncio.to_thread(herald.stop))  # as SIGTERM stops herald serve
        expected = (CloseCode.SERVICE_RESTART, CLOSE_CODE_EXPLANATIONS[CloseCode.SERVICE_RESTART])
        assert await closed(chat, 5) == expected
        for ws in graphql.values():
            assert await closed(ws, 5) == expected
        await asyncio.wait_for(stopped, 20)


async def test_over_the_connection_limit_the_1013_has_a_reason(redis_server: RedisServer, key_prefix: str) -> None:
    async with InProcessReplica(redis_url=redis_server.url, key_prefix=key_prefix, max_connections=1) as herald:
        first, _ = await connect(herald.ws, "reasons", user="ada")
        second = await websockets.connect(f"{herald.ws}/ws/chat/reasons?user=bob", open_timeout=5)
        code, reason = await closed(second, 5)
        assert code == CloseCode.TRY_AGAIN_LATER
        assert reason
        await first.close()


def test_every_close_code_has_a_written_explanation() -> None:
    assert set(CLOSE_CODE_EXPLANATIONS) == set(CloseCode)
    assert all(0 < len(text.encode()) <= 123 for text in CLOSE_CODE_EXPLANATIONS.values())
