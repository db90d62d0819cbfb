"""SPEC §12: one write limiter per user across REST and GraphQL (HTTP and WebSocket), against ``herald serve``."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.helpers.chat import connect, frame_where, next_frame, send
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

SEND = 'mutation { sendMessage(room: "%s", text: "via graphql") { id } }'


async def test_rest_and_graphql_writes_share_one_bucket_per_writer_and_the_excess_publishes_nothing(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, HERALD_HTTP_RATE_LIMIT="0.2", HERALD_HTTP_RATE_BURST="3")
    room = f"r{uuid.uuid4().hex[:8]}"
    url = f"{herald.http}/api/chat/{room}/messages"
    async with httpx.AsyncClient(timeout=10) as client:
        statuses = [(await client.post(url, json={"text": f"m{n}"})).status_code for n in range(5)]
        assert statuses == [202, 202, 202, 429, 429]
        limited = await client.post(url, json={"text": "again"})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        # the same writer through GraphQL over HTTP: the same bucket, already empty
        mutation = await client.post(f"{herald.http}/graphql", json={"query": SEND % room})
        assert mutation.status_code == 429 and "Retry-After" in mutation.headers
        assert "HERALD_HTTP_RATE_LIMIT" in mutation.json()["errors"][0]["message"]
        # reads are not writes
        history = (await client.get(url)).json()
    assert [m["text"] for m in history] == ["m0", "m1", "m2"]  # nothing of the excess was published

    # ...and over a GraphQL WebSocket: an error result for the operation, the socket stays open
    import websockets

    async with websockets.connect(
        f"{herald.ws}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    ) as ws:
        await send(ws, {"type": "connection_init"})
        assert (await next_frame(ws))["type"] == "connection_ack"
        await send(ws, {"type": "subscribe", "id": "1", "payload": {"query": SEND % room}})
        result = await frame_where(ws, lambda f: f["type"] == "next")
        assert "HERALD_HTTP_RATE_LIMIT" in result["payload"]["errors"][0]["message"]
        await send(ws, {"type": "ping"})
        assert (await frame_where(ws, lambda f: f["type"] == "pong"))["type"] == "pong"

    # chat frames have their own per-socket limit: this writer can still chat
    chat, _ = await connect(herald.ws, room)
    await send(chat, {"type": "message", "text": "on the socket"})
    assert (await frame_where(chat, lambda f: f["type"] == "message"))["text"] == "on the socket"
    await chat.close()


async def test_each_user_has_a_bucket_of_their_own(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    secret = "s" * 32
    herald = herald_factory(
        redis_server.url, HERALD_JWT_SECRET=secret, HERALD_HTTP_RATE_LIMIT="0.2", HERALD_HTTP_RATE_BURST="2"
    )
    from api.auth import Auth

    tokens = {user: Auth(secret).issue(user) for user in ("ann", "bob")}
    room = f"r{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=10) as client:

        async def post(user: str) -> int:
            headers = {"Authorization": f"Bearer {tokens[user]}"}
            response = await client.post(
                f"{herald.http}/api/chat/{room}/messages", json={"text": user}, headers=headers
            )
            return response.status_code

        assert [await post("ann") for _ in range(3)] == [202, 202, 429]
        assert [await post("bob") for _ in range(3)] == [202, 202, 429]
