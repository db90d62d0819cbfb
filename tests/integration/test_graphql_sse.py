"""``/graphql/stream`` (graphql-sse, distinct connections) with httpx against the server ``herald serve`` runs
(in-process: ``replica_factory``): the request rules, one stream per operation, executions shared with the
WebSocket transports, auth, and shutdown. The npm graphql-sse client itself is driven in e2e/test_sse_js.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from graphql import parse, print_ast

from api.auth import Auth
from tests.helpers.chat import ametric, until_metric
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import RedisServer
from tests.helpers.sse import SseEvent, SseReader

pytestmark = [pytest.mark.redis]

WAIT_S = 15.0
SSE = {"Accept": "text/event-stream"}
CHAT = "subscription C($room: String!) { chatMessage(room: $room) { id text } }"
SEND = "mutation S($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { id text } }"


@pytest.fixture(scope="module")
def herald(redis_server: RedisServer) -> Iterator[InProcessReplica]:
    with InProcessReplica(
        redis_url=redis_server.url, key_prefix=f"g{uuid.uuid4().hex[:8]}", heartbeat_s=0.3
    ) as started:
        yield started


@asynccontextmanager
async def operation(
    base: str, query: str, variables: dict[str, Any] | None = None, *, get: bool = False, **headers: str
) -> AsyncIterator[SseReader]:
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5, read=WAIT_S)) as client:
        if get:
            params = {"query": query, **({"variables": json.dumps(variables)} if variables else {})}
            request = client.stream("GET", "/graphql/stream", params=params, headers={**SSE, **headers})
        else:
            body = {"query": query, "variables": variables}
            request = client.stream("POST", "/graphql/stream", json=body, headers={**SSE, **headers})
        async with request as response:
            assert response.status_code == 200, (await response.aread()).decode()
            assert response.headers["content-type"].startswith("text/event-stream")
            yield SseReader(response)


async def whole(base: str, query: str, variables: dict[str, Any] | None = None, **kw: Any) -> list[SseEvent]:
    async with operation(base, query, variables, **kw) as reader:
        return await reader.rest()


async def test_a_query_is_one_next_then_complete(herald: InProcessReplica) -> None:
    for get in (False, True):
        events = await whole(herald.http, "{ books(limit: 1) { isbn } }", get=get)
        assert [(e.event, e.data) for e in events] == [("next", {"data": {"books": []}}), ("complete", "")]


async def test_errors_before_execution_arrive_as_next_in_a_200_stream(herald: InProcessReplica) -> None:
    for query in ("{ nope }", "{", 'subscription { chatMessage(room: "bad room") { id } }'):
        [result, complete] = await whole(herald.http, query)
        assert result.event == "next" and result.data["errors"], query
        assert complete.event == "complete"


@pytest.mark.parametrize(
    ("method", "body", "params", "headers", "status"),
    [
        ("POST", b'{"query": "{ books { isbn } }"}', {}, {}, 406),  # no Accept: text/event-stream
        ("POST", b"not json", {}, SSE, 400),
        ("POST", b'{"variables": {}}', {}, SSE, 400),
        ("GET", b"", {"query": 'mutation { sendMessage(room: "r", text: "t") { id } }'}, SSE, 405),
    ],
)
async def test_malformed_requests_are_http_errors(
    herald: InProcessReplica, method: str, body: bytes, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=herald.http, timeout=5) as client:
        response = await client.request(method, "/graphql/stream", content=body, params=params, headers=headers)
    assert response.status_code == status
    assert response.json()["errors"][0]["message"]


async def test_sse_and_websocket_subscribers_share_one_execution_per_event(herald: InProcessReplica) -> None:
    room = f"r{uuid.uuid4().hex[:8]}"
    variables = {"room": room}
    printed = print_ast(parse(CHAT))  # the text gql sends: streams are shared by identical documents
    transport = WebsocketsTransport(
        url=f"{herald.ws}/graphql", subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL]
    )
    async with (
        Client(transport=transport) as ws_client,
        operation(herald.http, printed, variables) as posted,
        operation(herald.http, printed, variables, get=True) as got,
    ):
        ws_results = ws_client.subscribe(GraphQLRequest(CHAT, variable_values=variables))
        ws_first = asyncio.ensure_future(anext(ws_results))
        await until_metric(herald.http, "herald_graphql_subscriptions", 3, WAIT_S)
        assert await ametric(herald.http, "herald_graphql_shared_streams") == 1
        before = await ametric(herald.http, "herald_graphql_executions_total")
        [sent, _] = await whole(herald.http, SEND, {"room": room, "text": "hi"})
        message = sent.data["data"]["sendMessage"]
        for reader in (posted, got):
            result = await reader.until("next")
            assert result.data == {"data": {"chatMessage": message}}
        assert (await asyncio.wait_for(ws_first, WAIT_S))["chatMessage"] == message
        await ws_results.aclose()  # type: ignore[attr-defined]
        assert await ametric(herald.http, "herald_graphql_executions_total") == before + 1
        await posted.comment("heartbeat")
    await until_metric(herald.http, "herald_graphql_subscriptions", 0, WAIT_S)


async def test_auth_mutations_and_subscriptions_need_a_token(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_JWT_SECRET="s" * 40)
    auth = Auth("s" * 40)
    async with httpx.AsyncClient(base_url=herald.http, timeout=5, headers=SSE) as client:
        for query in (SEND, CHAT):
            response = await client.post(
                "/graphql/stream", json={"query": query, "variables": {"room": "r", "text": "t"}}
            )
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert (await client.post("/graphql/stream", json={"query": "{ books { isbn } }"})).status_code == 200
    bearer = {"Authorization": f"Bearer {auth.issue('ann', channels=['mine'])}"}
    [sent, _] = await whole(herald.http, SEND, {"room": "mine", "text": "t"}, **bearer)
    assert sent.data["data"]["sendMessage"]["text"] == "t"
    [refused, _] = await whole(herald.http, CHAT, {"room": "theirs"}, **bearer)
    assert "does not allow room" in refused.data["errors"][0]["message"]


async def test_shutdown_ends_a_subscription_without_complete_so_the_client_retries(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_HEARTBEAT_S="3600")
    async with operation(herald.http, CHAT, {"room": "lobby"}) as reader:
        await until_metric(herald.http, "herald_graphql_subscriptions", 1, WAIT_S)
        await asyncio.to_thread(herald.stop)  # as SIGTERM stops herald serve (tests/e2e/test_shutdown.py)
        assert await reader.rest() == []  # ended, and no `complete`: graphql-sse clients reconnect
