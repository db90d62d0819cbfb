"""One execution per event (SPEC §5): identical subscriptions on a replica share one source stream.

The app runs in-process under uvicorn (so the test can count calls of the subscription field's resolver)
and is driven by real WebSocket clients speaking graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from api.settings import Settings
from tests.helpers.services import free_port

WAIT_S = 20.0
NEW_BOOK = "subscription { newBook { isbn title offset } }"
CHAT = "subscription Room($room: String!) { chatMessage(room: $room) { id text } }"


async def until(check: Any) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serve_in_process(**overrides: Any) -> AsyncIterator[tuple[int, FastAPI]]:
    values: dict[str, Any] = {"redis_url": "memory://", "replica_id": "dedup", "graphql_init_timeout_s": 30.0}
    app = create_app(Settings(**{**values, **overrides}))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    try:
        yield port, app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)


async def subscriber(port: int, query: str, variables: dict[str, Any] | None = None) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"], open_timeout=WAIT_S)
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), WAIT_S)) == {"type": "connection_ack"}
    await ws.send(json.dumps({"type": "subscribe", "id": "s", "payload": {"query": query, "variables": variables}}))
    return ws


async def next_payloads(ws: ClientConnection, count: int) -> list[str]:
    """The raw text of the next ``count`` frames (all must be ``next``)."""
    frames = [await asyncio.wait_for(ws.recv(), WAIT_S) for _ in range(count)]
    assert all(json.loads(frame)["type"] == "next" for frame in frames), frames
    return [str(frame) for frame in frames]


def count_resolver_calls(app: FastAPI, field: str) -> list[int]:
    """Wrap the subscription field's resolver (run once per execution); returns a one-item call counter."""
    definition = app.state.herald.graphql.schema.subscription_type.fields[field]
    original, calls = definition.resolve, [0]

    def counting(root: Any, info: Any, **arguments: Any) -> Any:
        calls[0] += 1
        return original(root, info, **arguments)

    definition.resolve = counting
    return calls


async def test_500_identical_subscribers_and_10_events_cost_10_executions() -> None:
    async with serve_in_process(send_queue=50) as (port, app):
        state = app.state.herald
        calls = count_resolver_calls(app, "newBook")
        clients = await asyncio.gather(*(subscriber(port, NEW_BOOK) for _ in range(500)))
        await until(lambda: state.graphql.subscriptions() == 500)
        assert state.graphql.shared_streams() == 1

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as http:
            for i in range(10):
                book = {"isbn": f"isbn-{i}", "title": f"t{i}", "author": "a"}
                assert (await http.post("/api/books", json=book)).status_code == 201

        received = await asyncio.gather(*(next_payloads(ws, 10) for ws in clients))
        titles = [json.loads(frame)["payload"]["data"]["newBook"]["title"] for frame in received[0]]
        assert titles == [f"t{i}" for i in range(10)]
        assert all(frames == received[0] for frames in received)  # the same bytes for everyone
        assert calls[0] == 10
        assert state.metrics.counts.graphql_executions == 10

        for ws in clients:
            await ws.close()
        await until(lambda: state.graphql.subscriptions() == 0)
        await until(lambda: state.graphql.shared_streams() == 0)


async def test_different_variables_are_not_merged() -> None:
    async with serve_in_process() as (port, app):
        state = app.state.herald
        calls = count_resolver_calls(app, "chatMessage")
        in_a = [await subscriber(port, CHAT, {"room": "a"}) for _ in range(3)]
        in_b = [await subscriber(port, CHAT, {"room": "b"}) for _ in range(2)]
        await until(lambda: state.graphql.subscriptions() == 5)
        assert state.graphql.shared_streams() == 2

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as http:
            assert (await http.post("/api/chat/a/messages", json={"text": "to a"})).status_code == 202
            assert (await http.post("/api/chat/b/messages", json={"text": "to b"})).status_code == 202

        for ws in in_a:
            assert json.loads((await next_payloads(ws, 1))[0])["payload"]["data"]["chatMessage"]["text"] == "to a"
        for ws in in_b:
            assert json.loads((await next_payloads(ws, 1))[0])["payload"]["data"]["chatMessage"]["text"] == "to b"
        assert calls[0] == 2  # one execution per room, not one per subscriber
        for ws in in_a + in_b:
            await ws.close()


async def test_operations_with_since_are_not_shared() -> None:
    async with serve_in_process() as (port, app):
        state = app.state.herald
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as http:
            assert (await http.post("/api/books", json={"isbn": "1", "title": "old", "author": "a"})).status_code == 201
            query = 'subscription { newBook(since: "0") { title } }'
            clients = [await subscriber(port, query) for _ in range(3)]
            await until(lambda: state.graphql.subscriptions() == 3)
            assert state.graphql.shared_streams() == 3  # each replays from its own offset
            assert (await http.post("/api/books", json={"isbn": "2", "title": "new", "author": "a"})).status_code == 201
        for ws in clients:
            frames = [json.loads(frame) for frame in await next_payloads(ws, 2)]
            assert [f["payload"]["data"]["newBook"]["title"] for f in frames] == ["old", "new"]
            await ws.close()
        assert state.metrics.counts.graphql_executions == 6  # (1 replayed + 1 live) x 3 private streams


@pytest.mark.parametrize("leaving", ["complete", "disconnect"])
async def test_the_last_subscriber_to_leave_frees_the_shared_stream(leaving: str) -> None:
    async with serve_in_process() as (port, app):
        graphql = app.state.herald.graphql
        first, second = await subscriber(port, NEW_BOOK), await subscriber(port, NEW_BOOK)
        await until(lambda: graphql.subscriptions() == 2)
        assert graphql.shared_streams() == 1

        await first.send(json.dumps({"type": "complete", "id": "s"}))
        await until(lambda: graphql.subscriptions() == 1)
        assert graphql.shared_streams() == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as http:
            assert (await http.post("/api/books", json={"isbn": "1", "title": "t", "author": "a"})).status_code == 201
        await next_payloads(second, 1)
        await first.send(json.dumps({"type": "ping"}))
        # the completed subscription got nothing more: the next frame is the answer to the ping
        assert json.loads(await asyncio.wait_for(first.recv(), WAIT_S)) == {"type": "pong"}

        if leaving == "complete":
            await second.send(json.dumps({"type": "complete", "id": "s"}))
        else:
            await second.close()
        await until(lambda: graphql.subscriptions() == 0)
        assert graphql.shared_streams() == 0
        await until(lambda: app.state.herald.broker.stats().channels == 0)
        await first.close()
