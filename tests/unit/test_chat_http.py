"""SPEC §6, chat part: ``/api/chat/{room}/messages``, ``/health``, ``/ready`` (in-process app)."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.errors import CloseCode
from api.state import AppState
from broker import chat_channel, parse_offset
from tests.helpers.services import free_port

BAD_ROOMS = ["bad!", "a%20b", "x" * 65, "%C3%BCber", "room%3F", "%00", "a:b"]


def post(client: TestClient, room: str, text: str) -> str:
    response = client.post(f"/api/chat/{room}/messages", json={"text": text})
    assert response.status_code == 202, response.text
    offset: str = response.json()["id"]
    return offset


def history(client: TestClient, room: str, **params: str | int) -> list[dict[str, object]]:
    response = client.get(f"/api/chat/{room}/messages", params=params)
    assert response.status_code == 200, response.text
    messages: list[dict[str, object]] = response.json()
    return messages


def ids(messages: list[dict[str, object]]) -> list[object]:
    return [message["id"] for message in messages]


def bulk_publish(client: TestClient, room: str, count: int) -> list[str]:
    """Publish straight through the app's broker: quicker than ``count`` HTTP requests."""
    state: AppState = client.app.state.herald  # type: ignore[attr-defined]

    async def publish() -> list[str]:
        payload = json.dumps({"room": room, "user": "bulk", "text": "m", "ts": 0.0})
        return [(await state.broker.publish(chat_channel(room), payload)).offset for _ in range(count)]

    assert client.portal is not None
    return client.portal.call(publish)


# -- POST -------------------------------------------------------------------------------


def test_posting_a_message_answers_202_with_its_offset(client: TestClient) -> None:
    response = client.post("/api/chat/lobby/messages", json={"text": "hello"})
    assert response.status_code == 202
    body = response.json()
    assert list(body) == ["id"]
    parse_offset(body["id"])


def test_posted_messages_get_increasing_offsets(client: TestClient) -> None:
    offsets = [post(client, "lobby", f"m{n}") for n in range(5)]
    positions = [parse_offset(offset) for offset in offsets]
    assert positions == sorted(set(positions))


def test_a_posted_message_is_stored_as_the_anonymous_user_when_auth_is_off(client: TestClient) -> None:
    offset = post(client, "lobby", "  hi there ✓ ")
    [message] = history(client, "lobby")
    assert message == {"id": offset, "room": "lobby", "user": "anonymous", "text": "  hi there ✓ ", "ts": message["ts"]}
    assert isinstance(message["ts"], float)


@pytest.mark.parametrize("room", BAD_ROOMS)
def test_posting_to_an_invalid_room_name_is_422(client: TestClient, room: str) -> None:
    assert client.post(f"/api/chat/{room}/messages", json={"text": "x"}).status_code == 422


@pytest.mark.parametrize("room", ["a", "A-z_0.9", "x" * 64, "..."])
def test_every_room_name_the_pattern_allows_is_accepted(client: TestClient, room: str) -> None:
    offset = post(client, room, "hi")
    assert ids(history(client, room)) == [offset]


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": 5}, {"text": None}, {"message": "hi"}, [], "hi"], ids=repr)
def test_posting_without_a_text_is_422_and_publishes_nothing(client: TestClient, body: object) -> None:
    assert client.post("/api/chat/lobby/messages", json=body).status_code == 422
    assert history(client, "lobby") == []


def test_posting_a_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post("/api/chat/lobby/messages", content=b"text=hi", headers={"content-type": "application/json"})
    assert response.status_code == 422


# -- GET ---------------------------------------------------------------------------------


def test_history_is_chronological(client: TestClient) -> None:
    offsets = [post(client, "lobby", f"m{n}") for n in range(5)]
    messages = history(client, "lobby")
    assert ids(messages) == offsets
    assert [m["text"] for m in messages] == [f"m{n}" for n in range(5)]


def test_history_without_since_is_the_last_limit_messages(client: TestClient) -> None:
    offsets = [post(client, "lobby", f"m{n}") for n in range(6)]
    assert ids(history(client, "lobby", limit=2)) == offsets[-2:]


def test_history_with_since_is_the_first_limit_messages_after_it(client: TestClient) -> None:
    offsets = [post(client, "lobby", f"m{n}") for n in range(6)]
    assert ids(history(client, "lobby", since=offsets[1], limit=2)) == offsets[2:4]
    assert ids(history(client, "lobby", since=offsets[1])) == offsets[2:]
    assert history(client, "lobby", since=offsets[-1]) == []


def test_history_since_zero_starts_at_the_oldest_retained_message(client: TestClient) -> None:
    offsets = [post(client, "lobby", f"m{n}") for n in range(4)]
    assert ids(history(client, "lobby", since="0", limit=3)) == offsets[:3]


def test_history_of_a_room_nobody_used_is_empty(client: TestClient) -> None:
    assert history(client, "empty") == []


def test_history_is_per_room(client: TestClient) -> None:
    a = post(client, "a", "for a")
    post(client, "b", "for b")
    assert ids(history(client, "a")) == [a]


def test_history_returns_100_messages_by_default_and_at_most_1000(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(history_size=1100)
    offsets = bulk_publish(client, "big", 1001)
    assert ids(history(client, "big")) == offsets[-100:]
    assert ids(history(client, "big", limit=1000)) == offsets[-1000:]
    assert ids(history(client, "big", since="0", limit=1000)) == offsets[:1000]
    assert client.get("/api/chat/big/messages", params={"limit": 1001}).status_code == 422


def test_history_keeps_only_history_size_messages(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(history_size=5)
    offsets = [post(client, "lobby", f"m{n}") for n in range(8)]
    assert ids(history(client, "lobby", limit=100)) == offsets[-5:]
    assert ids(history(client, "lobby", since="0")) == offsets[-5:]


@pytest.mark.parametrize("limit", [0, -1, 1001, "ten", ""])
def test_a_limit_outside_1_to_1000_is_422(client: TestClient, limit: str | int) -> None:
    assert client.get("/api/chat/lobby/messages", params={"limit": limit}).status_code == 422


@pytest.mark.parametrize(
    "since", ["yesterday", "1-", "-1", "1-2-3", "１-2", "18446744073709551616-0", "1-99999999999999999999", ""]
)
def test_a_since_that_is_not_an_offset_is_422(client: TestClient, since: str) -> None:
    post(client, "lobby", "x")
    response = client.get("/api/chat/lobby/messages", params={"since": since})
    assert response.status_code == 422, response.text


def test_a_since_at_the_largest_offset_is_an_empty_page(client: TestClient) -> None:
    post(client, "lobby", "x")
    assert history(client, "lobby", since=f"{2**64 - 1}-{2**64 - 1}") == []


@pytest.mark.parametrize("room", BAD_ROOMS)
def test_reading_an_invalid_room_name_is_422(client: TestClient, room: str) -> None:
    assert client.get(f"/api/chat/{room}/messages").status_code == 422


def test_a_message_posted_over_http_reaches_the_rooms_sockets(client: TestClient) -> None:
    with client.websocket_connect("/ws/chat/lobby?user=ann") as ws:
        assert ws.receive_json()["type"] == "welcome"
        offset = post(client, "lobby", "from http")
        frame = ws.receive_json()
    assert frame == {
        "id": offset,
        "type": "message",
        "room": "lobby",
        "user": "anonymous",
        "text": "from http",
        "ts": frame["ts"],
    }


def test_presence_over_http_lists_the_rooms_users_as_a_presence_frame_does(client: TestClient) -> None:
    assert client.get("/api/chat/lobby/presence").json() == {"room": "lobby", "users": []}
    with (
        client.websocket_connect("/ws/chat/lobby?user=zed") as zed,
        client.websocket_connect("/ws/chat/lobby?user=ann") as ann,
        client.websocket_connect("/ws/chat/other?user=bob") as bob,
    ):
        for ws in (zed, ann, bob):
            assert ws.receive_json()["type"] == "welcome"
        ann.send_json({"type": "presence"})
        frame = ann.receive_json()
        while frame["type"] != "presence":  # join frames of the others come first
            frame = ann.receive_json()
        assert client.get("/api/chat/lobby/presence").json() == {"room": "lobby", "users": ["ann", "zed"]}
        assert frame["users"] == ["ann", "zed"]
    assert client.get("/api/chat/lobby/presence").json()["users"] == []


# -- health and readiness -----------------------------------------------------------------


def test_health_names_the_replica(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(replica_id="replica-7")
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "replica": "replica-7"})


def test_ready_is_200_when_redis_answers(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["replica"] == "test"


def test_without_redis_the_replica_is_up_not_ready_and_refuses_to_publish(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 503
    refused = client.post("/api/chat/lobby/messages", json={"text": "lost?"})
    assert refused.status_code == 503
    assert "detail" in refused.json()
    assert client.get("/api/chat/lobby/messages").status_code == 503


def test_a_message_over_the_size_limit_is_413_and_publishes_nothing(client_factory: Callable[..., TestClient]) -> None:
    small = client_factory(max_message_bytes=100)
    response = small.post("/api/chat/lobby/messages", json={"text": "é" * 60})
    assert response.status_code == 413
    assert "HERALD_MAX_MESSAGE_BYTES" in response.json()["detail"]
    assert small.post("/api/chat/lobby/messages", json={"text": "é" * 50}).status_code == 202
    assert [m["text"] for m in small.get("/api/chat/lobby/messages").json()] == ["é" * 50]


def test_graphql_send_message_over_the_size_limit_is_an_error(client_factory: Callable[..., TestClient]) -> None:
    small = client_factory(max_message_bytes=100)
    query = 'mutation($t: String!) { sendMessage(room: "lobby", text: $t) { id } }'
    body = small.post("/graphql", json={"query": query, "variables": {"t": "x" * 101}}).json()
    assert "HERALD_MAX_MESSAGE_BYTES" in body["errors"][0]["message"]
    assert small.get("/api/chat/lobby/messages").json() == []


def test_the_app_itself_closes_an_oversize_frame_1009_where_the_server_does_not(
    client_factory: Callable[..., TestClient],
) -> None:
    # Starlette's TestClient, like wsproto, ignores ws_max_size: the app's own check is the backstop.
    client = client_factory(max_message_bytes=1024)
    with client.websocket_connect("/ws/chat/lobby") as ws:
        assert ws.receive_json()["type"] == "welcome"
        ws.send_text(orjson.dumps({"type": "message", "text": "x" * 2000}).decode())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == CloseCode.MESSAGE_TOO_BIG
    assert client.get("/api/chat/lobby/messages").json() == []
