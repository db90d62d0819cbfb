"""Real GraphQL clients (``gql``) on both WebSocket subprotocols, across two ``herald serve`` replicas.

Subscribers sit on replica A; mutations (GraphQL over HTTP and over WebSocket, and the REST book route) go
to replica B. What A's subscribers receive is exactly what B's mutations answered: same offsets, same ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.helpers.chat import ametric, until_metric
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

WAIT_S = 15.0

CHAT = "subscription C($room: String!) { chatMessage(room: $room) { id room user text ts } }"
BOOK_FIELDS = "isbn title author addedAt offset"
ADD_BOOK = (
    f'mutation A($isbn: String!) {{ addBook(isbn: $isbn, title: "Dune", author: "Herbert") {{ {BOOK_FIELDS} }} }}'
)
SEND = "mutation S($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { id room user text ts } }"
NEW_BOOK = GraphQLRequest(f"subscription {{ newBook {{ {BOOK_FIELDS} }} }}")
PROTOCOLS = [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Herald, Herald]]:
    env = {"HERALD_KEY_PREFIX": f"e{uuid.uuid4().hex[:8]}", "HERALD_HEARTBEAT_S": "3600"}
    started = [Herald(tmp_path_factory.mktemp(name), redis_server.url, name, **env).start() for name in ("a", "b")]
    yield started[0], started[1]
    for herald in started:
        herald.stop()


def ws_client(herald: Herald, subprotocol: str) -> Client:
    return Client(transport=WebsocketsTransport(url=f"{herald.ws}/graphql", subprotocols=[subprotocol]))


async def gauge(herald: Herald, name: str) -> float:
    return await ametric(herald.http, name)


async def until_gauge(herald: Herald, name: str, value: float) -> None:
    await until_metric(herald.http, name, value, WAIT_S)


async def take(results: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(WAIT_S):
        return [await anext(results) for _ in range(count)]


@pytest.mark.parametrize("subprotocol", PROTOCOLS)
async def test_subscribers_on_one_replica_receive_what_another_publishes(
    replicas: tuple[Herald, Herald], subprotocol: str
) -> None:
    a, b = replicas
    room = f"room-{uuid.uuid4().hex[:8]}"
    async with ws_client(a, subprotocol) as on_a, ws_client(b, subprotocol) as ws_b:
        books = on_a.subscribe(NEW_BOOK)
        chat = on_a.subscribe(GraphQLRequest(CHAT, variable_values={"room": room}))
        executions = await gauge(a, "herald_graphql_executions_total")
        book_results = asyncio.ensure_future(take(books, 2))
        chat_results = asyncio.ensure_future(take(chat, 1))
        await until_gauge(a, "herald_graphql_subscriptions", 2)

        async with Client(transport=AIOHTTPTransport(url=f"{b.http}/graphql")) as http_b:
            added = (await http_b.execute(GraphQLRequest(ADD_BOOK, variable_values={"isbn": uuid.uuid4().hex})))[
                "addBook"
            ]
        async with httpx.AsyncClient(base_url=b.http, timeout=WAIT_S) as rest:
            response = await rest.post(
                "/api/books", json={"isbn": uuid.uuid4().hex, "title": "Emma", "author": "Austen"}
            )
            assert response.status_code == 201
        sent = (await ws_b.execute(GraphQLRequest(SEND, variable_values={"room": room, "text": "hello from B"})))[
            "sendMessage"
        ]

        assert [r["newBook"] for r in await book_results] == [added, response.json()]
        assert [r["chatMessage"] for r in await chat_results] == [sent]
        assert sent["user"] == "anonymous" and sent["room"] == room

        # a duplicate ISBN is a GraphQL error over the socket too, and announces nothing
        with pytest.raises(TransportQueryError, match="already exists"):
            await ws_b.execute(GraphQLRequest(ADD_BOOK, variable_values={"isbn": added["isbn"]}))
        await books.aclose()
        await chat.aclose()
        await until_gauge(a, "herald_graphql_subscriptions", 0)
        assert await gauge(a, "herald_graphql_shared_streams") == 0
        assert await gauge(a, "herald_graphql_executions_total") == executions + 3
    await until_gauge(a, 'herald_connections{endpoint="graphql"}', 0)


@pytest.mark.parametrize("subprotocol", PROTOCOLS)
async def test_queries_and_errors_through_gql(replicas: tuple[Herald, Herald], subprotocol: str) -> None:
    a, _ = replicas
    async with ws_client(a, subprotocol) as session:
        result = await session.execute(GraphQLRequest('{ books(limit: 1) { isbn } messages(room: "r") { id } }'))
        assert set(result) == {"books", "messages"}
        with pytest.raises(TransportQueryError, match="Cannot query field 'nope'"):
            await session.execute(GraphQLRequest("{ nope }"))
        with pytest.raises(TransportQueryError, match="invalid room name"):
            async for _ in session.subscribe(GraphQLRequest(CHAT, variable_values={"room": "no spaces"})):
                pass
