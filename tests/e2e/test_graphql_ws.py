"""GraphQL over WebSocket, frame by frame, against a real ``herald serve`` on a real redis-server.

One test per rule of the two subprotocols, every close code of SPEC §5 included (4500 needs a broken
component, so it lives in test_graphql_app.py). Frames are written by hand with the ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.auth import Auth
from api.errors import CloseCode
from tests.helpers.chat import ametric, eventually, until_metric
from tests.helpers.servers import Herald, RedisServer

pytestmark = pytest.mark.redis

WAIT_S = 10.0
SECRET = "graphql-ws-test-secret-0123456789abcdef"
TRANSPORT = "graphql-transport-ws"
LEGACY = "graphql-ws"
CHAT = "subscription C($room: String!, $since: String) { chatMessage(room: $room, since: $since) { id text } }"
Frame = dict[str, Any]


def start_replica(tmp: Any, redis_server: RedisServer, name: str, **env: str) -> Herald:
    env = {"HERALD_KEY_PREFIX": f"g{uuid.uuid4().hex[:8]}", "HERALD_HEARTBEAT_S": "3600", **env}
    return Herald(tmp.mktemp(name), redis_server.url, name, **env).start()


@pytest.fixture(scope="module")
def herald(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    replica = start_replica(
        tmp_path_factory,
        redis_server,
        "gql-open",
        HERALD_GRAPHQL_INIT_TIMEOUT_S="0.5",
        HERALD_GRAPHQL_KEEPALIVE_S="0.2",
        HERALD_HISTORY_SIZE="3",
        HERALD_SEND_QUEUE="8",
    )
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def secured(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    replica = start_replica(tmp_path_factory, redis_server, "gql-secured", HERALD_JWT_SECRET=SECRET)
    yield replica
    replica.stop()


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


async def open_ws(herald: Herald, protocol: str | None = TRANSPORT, query: str = "", **kwargs: Any) -> ClientConnection:
    subprotocols = [protocol] if protocol else None
    return await connect(f"{herald.ws}/graphql{query}", subprotocols=subprotocols, open_timeout=WAIT_S, **kwargs)  # type: ignore[list-item]


async def send(ws: ClientConnection, **frame: Any) -> None:
    await ws.send(json.dumps(frame))


async def recv(ws: ClientConnection) -> Frame:
    """The next frame, keep-alives (legacy ``ka``) skipped."""
    async with asyncio.timeout(WAIT_S):
        while True:
            frame: Frame = json.loads(await ws.recv())
            if frame != {"type": "ka"}:
                return frame


async def closed(ws: ClientConnection) -> tuple[list[Frame], int | None, str | None]:
    """Every frame until the server closes, then the close code and reason."""
    frames: list[Frame] = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(WAIT_S):
            while True:
                frame = json.loads(await ws.recv())
                if frame != {"type": "ka"}:
                    frames.append(frame)
    return frames, ws.close_code, ws.close_reason


async def ready(herald: Herald, protocol: str = TRANSPORT, payload: Any = None, query: str = "") -> ClientConnection:
    ws = await open_ws(herald, protocol, query)
    await send(ws, type="connection_init", payload=payload or {})
    assert await recv(ws) == {"type": "connection_ack"}
    return ws


async def post(herald: Herald, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=herald.http, timeout=WAIT_S) as http:
        response = await http.post(path, json=body, headers=headers)
    assert response.status_code in (201, 202), response.text
    result: dict[str, Any] = response.json()
    return result


async def gauge(herald: Herald, name: str) -> float:
    return await ametric(herald.http, name)


async def until_gauge(herald: Herald, name: str, value: float) -> None:
    await until_metric(herald.http, name, value, WAIT_S)


async def until_status(herald: Herald, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=herald.http, timeout=WAIT_S) as http:

        async def answers() -> bool:
            return (await http.get(path)).status_code == status

        await eventually(answers, WAIT_S, f"{path} to answer {status}")


def subscribe(op_id: str, query: str, **variables: Any) -> dict[str, Any]:
    return {"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}}


# -- graphql-transport-ws: close codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "Invalid JSON: "),
        ('{"type":"nope"}', "Invalid message 'type' property \"nope\""),
        (
            '{"type":"subscribe","payload":{"query":"{ books { isbn } }"}}',
            "\"subscribe\" message expects the 'id' property to be a string, but got undefined",
        ),
        ('{"type":"next","id":"1","payload":{}}', 'Unexpected message of type "next" received'),
    ],
)
async def test_4400_an_invalid_message_closes_the_socket(herald: Herald, text: str, reason: str) -> None:
    ws = await ready(herald)
    await ws.send(text)
    frames, code, got = await closed(ws)
    assert (frames, code) == ([], CloseCode.GQL_BAD_REQUEST)
    assert got is not None and got.startswith(reason)


async def test_4401_subscribe_before_the_ack(herald: Herald) -> None:
    ws = await open_ws(herald)
    await send(ws, **subscribe("1", "subscription { newBook { isbn } }"))
    assert await closed(ws) == ([], CloseCode.GQL_UNAUTHORIZED, "Unauthorized")


@pytest.mark.parametrize("payload", [{}, {"token": "forged"}, {"authorization": "Bearer forged"}])
async def test_4403_a_rejected_connection_init(secured: Herald, payload: dict[str, str]) -> None:
    ws = await open_ws(secured)
    await send(ws, type="connection_init", payload=payload)
    assert await closed(ws) == ([], CloseCode.GQL_FORBIDDEN, "Forbidden")


@pytest.mark.parametrize("protocols", [None, ["graphql-sse"]])
async def test_4406_no_acceptable_subprotocol(herald: Herald, protocols: list[str] | None) -> None:
    ws = await connect(f"{herald.ws}/graphql", subprotocols=protocols, open_timeout=WAIT_S)  # type: ignore[arg-type]
    assert ws.subprotocol is None
    assert await closed(ws) == ([], CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")


async def test_4408_no_connection_init_in_time(herald: Herald) -> None:
    ws = await open_ws(herald)  # HERALD_GRAPHQL_INIT_TIMEOUT_S=0.5 on this replica
    assert await closed(ws) == (
        [],
        CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT,
        "Connection initialisation timeout",
    )


async def test_an_acknowledged_socket_outlives_the_init_timeout(herald: Herald) -> None:
    ws = await ready(herald)
    # A socket opened after ours and never initialised: once it is closed 4408, our init timeout has passed too.
    witness = await open_ws(herald)
    assert (await closed(witness))[1] == CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT
    await send(ws, type="ping", payload={"n": 1})
    assert await recv(ws) == {"type": "pong", "payload": {"n": 1}}
    await ws.close()


async def test_4409_a_second_subscribe_with_a_running_id(herald: Herald) -> None:
    ws = await ready(herald)
    await send(ws, **subscribe("1", "subscription { newBook { isbn } }"))
    await send(ws, **subscribe("1", "subscription { newBook { title } }"))
    assert await closed(ws) == ([], CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS, "Subscriber for 1 already exists")


async def test_4429_a_second_connection_init(herald: Herald) -> None:
    ws = await ready(herald)
    await send(ws, type="connection_init")
    assert await closed(ws) == ([], CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests")


async def test_1009_a_frame_over_the_size_limit(herald: Herald) -> None:
    ws = await ready(herald)
    await send(ws, type="ping", payload={"pad": "x" * 70_000})  # HERALD_MAX_MESSAGE_BYTES defaults to 65536
    assert (await closed(ws))[1] == CloseCode.MESSAGE_TOO_BIG


async def test_1013_a_subscriber_that_stops_reading(herald: Herald, room: str) -> None:
    # max_queue=1 and no compression: the client stops reading TCP, the replica's buffers fill, then its
    # 8-frame send queue (HERALD_SEND_QUEUE=8) overflows.
    ws = await open_ws(herald, max_queue=1, compression=None)
    await send(ws, type="connection_init")
    assert await recv(ws) == {"type": "connection_ack"}
    await send(ws, **subscribe("1", CHAT, room=room))
    await until_gauge(herald, "herald_graphql_subscriptions", 1)
    before = await gauge(herald, "herald_slow_consumers_total")
    for _ in range(100):
        await asyncio.gather(*(post(herald, f"/api/chat/{room}/messages", {"text": "x" * 60_000}) for _ in range(8)))
        if await gauge(herald, "herald_slow_consumers_total") > before:
            break
    assert await gauge(herald, "herald_slow_consumers_total") == before + 1
    assert (await closed(ws))[1] == CloseCode.TRY_AGAIN_LATER
    await until_gauge(herald, "herald_graphql_subscriptions", 0)


# -- graphql-transport-ws: operations ------------------------------------------------------------------------


async def test_queries_and_mutations_answer_next_then_complete(herald: Herald, room: str) -> None:
    ws = await ready(herald)
    send_message = 'mutation M($room: String!) { sendMessage(room: $room, text: "hi") { id text } }'
    await send(ws, **subscribe("m", send_message, room=room))
    sent = await recv(ws)
    assert sent["type"] == "next" and sent["payload"]["data"]["sendMessage"]["text"] == "hi"
    assert await recv(ws) == {"id": "m", "type": "complete"}
    await send(ws, **subscribe("q", "query Q($room: String!) { messages(room: $room) { id } }", room=room))
    assert await recv(ws) == {
        "id": "q",
        "type": "next",
        "payload": {"data": {"messages": [{"id": sent["payload"]["data"]["sendMessage"]["id"]}]}},
    }
    assert await recv(ws) == {"id": "q", "type": "complete"}
    await ws.close()


async def test_a_request_error_is_an_error_message_and_the_socket_stays(herald: Herald) -> None:
    ws = await ready(herald)
    await send(ws, **subscribe("1", "subscription { newBook { nope } }"))
    error = await recv(ws)
    assert (error["id"], error["type"]) == ("1", "error")
    assert [e["message"] for e in error["payload"]] == ["Cannot query field 'nope' on type 'Book'."]
    await send(ws, **subscribe("1", "{ books(limit: 1) { isbn } }"))  # the id is free again
    assert (await recv(ws))["type"] == "next"
    await ws.close()


async def test_a_refused_subscription_is_next_with_errors_then_complete(herald: Herald) -> None:
    ws = await ready(herald)
    await send(ws, **subscribe("1", CHAT, room="no spaces"))
    result = await recv(ws)
    assert result["payload"]["data"] is None
    assert result["payload"]["errors"][0]["message"].startswith("invalid room name 'no spaces'")
    assert await recv(ws) == {"id": "1", "type": "complete"}
    await ws.close()


async def test_client_complete_stops_the_subscription(herald: Herald, room: str) -> None:
    ws = await ready(herald)
    await send(ws, **subscribe("1", CHAT, room=room))
    await until_gauge(herald, "herald_graphql_subscriptions", 1)
    await post(herald, f"/api/chat/{room}/messages", {"text": "one"})
    assert (await recv(ws))["payload"]["data"]["chatMessage"]["text"] == "one"
    await send(ws, type="complete", id="1")
    await send(ws, type="complete", id="unknown")  # ignored
    await until_gauge(herald, "herald_graphql_subscriptions", 0)
    await post(herald, f"/api/chat/{room}/messages", {"text": "two"})
    await send(ws, type="ping")
    assert await recv(ws) == {"type": "pong"}  # and no "two" before it
    await ws.close()


async def test_since_replays_then_goes_live_and_flags_a_trimmed_history(herald: Herald, room: str) -> None:
    ids = [(await post(herald, f"/api/chat/{room}/messages", {"text": f"m{i}"}))["id"] for i in range(5)]
    ws = await ready(herald)  # HERALD_HISTORY_SIZE=3: m0 and m1 are gone
    await send(ws, **subscribe("old", CHAT, room=room, since=ids[0]))
    await send(ws, **subscribe("new", CHAT, room=room, since=ids[3]))
    frames = [await recv(ws) for _ in range(4)]
    old = [f["payload"] for f in frames if f["id"] == "old"]
    new = [f["payload"] for f in frames if f["id"] == "new"]
    assert [p["data"]["chatMessage"]["text"] for p in old] == ["m2", "m3", "m4"]
    assert [p.get("extensions") for p in old] == [{"recovered": False}, None, None]
    assert new == [{"data": {"chatMessage": {"id": ids[4], "text": "m4"}}}]
    await until_gauge(herald, "herald_graphql_subscriptions", 2)
    live = await post(herald, f"/api/chat/{room}/messages", {"text": "live"})
    frames = [await recv(ws) for _ in range(2)]
    assert sorted(f["id"] for f in frames) == ["new", "old"]
    assert all(f["payload"] == {"data": {"chatMessage": {"id": live["id"], "text": "live"}}} for f in frames)
    await ws.close()


# -- graphql-ws (legacy subscriptions-transport-ws) ----------------------------------------------------------


async def test_legacy_the_seed_client_flow(herald: Herald) -> None:
    ws = await open_ws(herald, LEGACY)
    await send(ws, type="connection_init", payload={})
    assert json.loads(await ws.recv()) == {"type": "connection_ack"}
    assert json.loads(await ws.recv()) == {"type": "ka"}
    await send(ws, type="start", id="1", payload={"query": "subscription { newBook { isbn title author } }"})
    await until_gauge(herald, "herald_graphql_subscriptions", 1)
    isbn = uuid.uuid4().hex
    await post(herald, "/api/books", {"isbn": isbn, "title": "Dune", "author": "Herbert"})
    book = {"isbn": isbn, "title": "Dune", "author": "Herbert"}
    assert await recv(ws) == {"type": "data", "id": "1", "payload": {"data": {"newBook": book}}}
    await send(ws, type="stop", id="1")
    assert await recv(ws) == {"type": "complete", "id": "1"}
    await send(ws, type="connection_terminate")
    assert (await closed(ws))[1] == CloseCode.NORMAL
    await until_gauge(herald, "herald_graphql_subscriptions", 0)


async def test_legacy_keep_alive_frames(herald: Herald) -> None:
    ws = await ready(herald, LEGACY)  # HERALD_GRAPHQL_KEEPALIVE_S=0.2 on this replica
    kas = 0
    async with asyncio.timeout(WAIT_S):
        while kas < 3:
            kas += json.loads(await ws.recv()) == {"type": "ka"}
    await ws.close()


async def test_legacy_rejected_init_is_connection_error_then_4403(secured: Herald) -> None:
    ws = await open_ws(secured, LEGACY)
    await send(ws, type="connection_init", payload={"token": "forged"})
    frames, code, _ = await closed(ws)
    assert (frames, code) == (
        [{"type": "connection_error", "payload": {"message": "Forbidden"}}],
        CloseCode.GQL_FORBIDDEN,
    )


async def test_legacy_no_init_in_time(herald: Herald) -> None:
    ws = await open_ws(herald, LEGACY)
    frames, code, _ = await closed(ws)
    reason = "Connection initialisation timeout"
    assert (frames, code) == (
        [{"type": "connection_error", "payload": {"message": reason}}],
        CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT,
    )


async def test_legacy_misuse_is_answered_and_the_socket_stays_open(herald: Herald) -> None:
    ws = await ready(herald, LEGACY)
    await ws.send("not json")
    assert (await recv(ws))["type"] == "connection_error"
    await send(ws, type="bogus", id="7")
    assert await recv(ws) == {"type": "error", "id": "7", "payload": {"message": "Invalid message type!"}}
    await send(ws, type="start", id="2", payload={"query": "{ books { nope } }"})
    errors = await recv(ws)
    assert (errors["type"], errors["id"]) == ("data", "2")
    assert [e["message"] for e in errors["payload"]["errors"]] == ["Cannot query field 'nope' on type 'Book'."]
    assert await recv(ws) == {"type": "complete", "id": "2"}
    await send(ws, type="start", id="3", payload={"query": "{ books(limit: 1) { isbn } }"})
    assert (await recv(ws))["type"] == "data"
    assert await recv(ws) == {"type": "complete", "id": "3"}
    await ws.close()


async def test_legacy_start_before_init_waits_for_it(herald: Herald) -> None:
    ws = await open_ws(herald, LEGACY)
    await send(ws, type="start", id="1", payload={"query": '{ book(isbn: "none") { isbn } }'})
    await send(ws, type="connection_init")
    assert json.loads(await ws.recv()) == {"type": "connection_ack"}
    assert await recv(ws) == {"type": "data", "id": "1", "payload": {"data": {"book": None}}}
    assert await recv(ws) == {"type": "complete", "id": "1"}
    await ws.close()


async def test_legacy_restarting_an_id_replaces_its_operation(herald: Herald, room: str) -> None:
    ws = await ready(herald, LEGACY)
    other = f"{room}-other"
    await send(ws, type="start", id="1", payload={"query": CHAT, "variables": {"room": other}})
    await send(ws, type="start", id="1", payload={"query": CHAT, "variables": {"room": room}})
    await until_gauge(herald, "herald_graphql_subscriptions", 1)
    await post(herald, f"/api/chat/{other}/messages", {"text": "old operation"})
    await post(herald, f"/api/chat/{room}/messages", {"text": "new operation"})
    assert (await recv(ws))["payload"]["data"]["chatMessage"]["text"] == "new operation"
    await ws.close()


# -- auth ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("way", ["payload token", "payload authorization", "query", "header"])
@pytest.mark.parametrize("protocol", [TRANSPORT, LEGACY])
async def test_a_token_is_accepted_every_documented_way(secured: Herald, room: str, way: str, protocol: str) -> None:
    token = Auth(SECRET).issue("alice")
    payload = {"payload token": {"token": token}, "payload authorization": {"authorization": f"Bearer {token}"}}
    headers = {"Authorization": f"Bearer {token}"} if way == "header" else None
    query = f"?token={token}" if way == "query" else ""
    ws = await open_ws(secured, protocol, query, additional_headers=headers)
    await send(ws, type="connection_init", payload=payload.get(way, {}))
    assert await recv(ws) == {"type": "connection_ack"}
    start = "subscribe" if protocol == TRANSPORT else "start"
    mutation = 'mutation S($room: String!) { sendMessage(room: $room, text: "hi") { user } }'
    await send(ws, type=start, id="1", payload={"query": mutation, "variables": {"room": room}})
    assert (await recv(ws))["payload"] == {"data": {"sendMessage": {"user": "alice"}}}
    await ws.close()


async def test_the_channels_claim_limits_chat_rooms(secured: Herald, room: str) -> None:
    ws = await ready(secured, payload={"token": Auth(SECRET).issue("bob", channels=[room])})
    await send(ws, **subscribe("1", CHAT, room="elsewhere"))
    refused = await recv(ws)
    assert [e["message"] for e in refused["payload"]["errors"]] == ["token does not allow room 'elsewhere'"]
    assert await recv(ws) == {"id": "1", "type": "complete"}
    await send(ws, **subscribe("2", CHAT, room=room))
    await until_gauge(secured, "herald_graphql_subscriptions", 1)
    await post(secured, f"/api/chat/{room}/messages", {"text": "allowed"}, Auth(SECRET).issue("carol"))
    assert (await recv(ws))["payload"]["data"]["chatMessage"]["text"] == "allowed"
    await ws.close()


async def test_an_expired_token_closes_4403(secured: Herald) -> None:
    ws = await ready(secured, payload={"token": Auth(SECRET).issue("dave", ttl_s=1)})
    frames, code, reason = await closed(ws)
    assert (frames, code, reason) == ([], CloseCode.GQL_FORBIDDEN, "token expired")


# -- Redis unavailable ---------------------------------------------------------------------------------------


async def test_unavailable_redis_is_a_graphql_error_and_the_socket_stays(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    replica = herald_factory(own_redis.url)
    ws = await ready(replica)
    own_redis.kill()
    await until_status(replica, "/ready", 503)  # the replica noticed the lost pub/sub connection
    await send(ws, **subscribe("1", CHAT, room="lobby"))
    assert await recv(ws) == {
        "id": "1",
        "type": "next",
        "payload": {"data": None, "errors": [{"message": "redis is unavailable"}]},
    }
    assert await recv(ws) == {"id": "1", "type": "complete"}
    await send(ws, **subscribe("2", 'mutation { sendMessage(room: "lobby", text: "x") { id } }'))
    refused = await recv(ws)
    assert [e["message"] for e in refused["payload"]["errors"]] == ["redis is unavailable"]
    await ws.close()
