"""GraphQL over HTTP and the REST book routes, through the in-process app (embedded Redis unless stated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.auth import Auth
from api.errors import CloseCode

Client = Callable[..., TestClient]
SECRET = "graphql-test-secret-0123456789abcdef"
ADD_BOOK = 'mutation Add($isbn: String!) { addBook(isbn: $isbn, title: "T", author: "A") { isbn offset addedAt } }'
SEND = (
    "mutation Send($room: String!, $text: String!) { sendMessage(room: $room, text: $text) { id room user text ts } }"
)


def gql(client: TestClient, query: str, token: str | None = None, **variables: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def messages_of(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors", [])]


# -- HTTP transport -------------------------------------------------------------------------------------------


def test_post_and_get_run_queries(client: TestClient) -> None:
    assert gql(client, "{ books { isbn } }") == (200, {"data": {"books": []}})
    response = client.get(
        "/graphql", params={"query": "query B($n: Int) { books(limit: $n) { isbn } }", "variables": '{"n": 3}'}
    )
    assert (response.status_code, response.json()) == (200, {"data": {"books": []}})


def test_get_refuses_a_mutation_with_405_and_changes_nothing(client: TestClient) -> None:
    response = client.get("/graphql", params={"query": ADD_BOOK, "variables": '{"isbn": "1"}'})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert messages_of(response.json()) == ["GET runs queries only; send this mutation with POST."]
    assert client.get("/api/books").json() == []


def test_a_browser_gets_a_query_page_and_an_api_client_a_400(client: TestClient) -> None:
    page = client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Herald GraphQL" in page.text
    assert client.get("/graphql").status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "The request body is not JSON."),
        (b"[]", "The request body must be a JSON object (no batches)."),
        (b"{}", "The request has no 'query' string."),
        (b'{"query": "{ books { isbn } }", "variables": [1]}', "'variables' must be a JSON object."),
    ],
)
def test_a_malformed_request_is_a_400(client: TestClient, body: bytes, message: str) -> None:
    response = client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, messages_of(response.json())) == (400, [message])


def test_syntax_and_validation_errors_are_200_with_errors_and_no_data(client: TestClient) -> None:
    status, body = gql(client, "{ books { isbn ")
    assert status == 200 and "data" not in body
    assert messages_of(body)[0].startswith("Syntax Error")
    status, body = gql(client, "{ books { nope } }")
    assert (status, messages_of(body)) == (200, ["Cannot query field 'nope' on type 'Book'."])


def test_a_subscription_over_http_is_refused(client: TestClient) -> None:
    status, body = gql(client, "subscription { newBook { isbn } }")
    assert status == 200
    assert "WebSocket" in messages_of(body)[0]


# -- books: GraphQL and REST share the store and the event ---------------------------------------------------


def test_add_book_stores_it_and_a_duplicate_is_a_graphql_error(client: TestClient) -> None:
    status, body = gql(client, ADD_BOOK, isbn="978-1")
    assert status == 200
    book = body["data"]["addBook"]
    assert client.get("/api/books/978-1").json() == {**book, "title": "T", "author": "A"}

    status, body = gql(client, ADD_BOOK, isbn="978-1")
    assert (status, body["data"]) == (200, None)
    assert messages_of(body) == ["a book with ISBN 978-1 already exists"]
    assert gql(client, "{ books(limit: 10) { isbn } }")[1]["data"]["books"] == [{"isbn": "978-1"}]
    # nothing was published for the duplicate: a replay of every retained book event finds one
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json() == {"type": "connection_ack"}
        replay = 'subscription { newBook(since: "0") { offset } }'
        ws.send_json({"type": "subscribe", "id": "1", "payload": {"query": replay}})
        assert ws.receive_json()["payload"] == {"data": {"newBook": {"offset": book["offset"]}}}
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_rest_books(client: TestClient) -> None:
    created = client.post("/api/books", json={"isbn": "1", "title": "First", "author": "A"})
    assert created.status_code == 201
    assert set(created.json()) == {"isbn", "title", "author", "addedAt", "offset"}
    assert client.post("/api/books", json={"isbn": "2", "title": "Second", "author": "B"}).status_code == 201
    assert client.post("/api/books", json={"isbn": "1", "title": "Again", "author": "A"}).status_code == 409
    assert client.post("/api/books", json={"isbn": "3", "title": " ", "author": "A"}).status_code == 422
    assert client.post("/api/books", json={"isbn": "3"}).status_code == 422
    assert client.get("/api/books/404").status_code == 404
    assert [b["isbn"] for b in client.get("/api/books").json()] == ["2", "1"]  # newest first
    assert [b["isbn"] for b in client.get("/api/books", params={"limit": 1}).json()] == ["2"]
    assert client.get("/api/books", params={"limit": 0}).status_code == 422
    _, body = gql(client, '{ book(isbn: "1") { title offset } missing: book(isbn: "9") { title } }')
    assert body["data"] == {"book": {"title": "First", "offset": created.json()["offset"]}, "missing": None}


def test_invalid_books_are_graphql_errors(client: TestClient) -> None:
    status, body = gql(client, 'mutation { addBook(isbn: "1", title: "  ", author: "A") { isbn } }')
    assert status == 200
    assert messages_of(body)[0].startswith("invalid book: title:")
    status, body = gql(client, "{ books(limit: 0) { isbn } }")
    assert messages_of(body) == ["limit must be between 1 and 1000"]


# -- chat over GraphQL ---------------------------------------------------------------------------------------


def test_send_message_is_a_chat_message_with_the_same_id(client: TestClient) -> None:
    with client.websocket_connect("/ws/chat/lobby?user=bob") as chat:
        assert chat.receive_json()["type"] == "welcome"
        status, body = gql(client, SEND, room="lobby", text="hello")
        assert status == 200
        sent = body["data"]["sendMessage"]
        frame = chat.receive_json()
        assert frame == {"type": "message", **sent}
        assert sent["user"] == "anonymous"
    status, body = gql(client, '{ messages(room: "lobby") { id text } }')
    assert body["data"]["messages"] == [{"id": sent["id"], "text": "hello"}]


@pytest.mark.parametrize(
    "query",
    [
        'mutation { sendMessage(room: "no spaces", text: "x") { id } }',
        '{ messages(room: "no spaces") { id } }',
    ],
)
def test_an_invalid_room_name_is_a_graphql_error(client: TestClient, query: str) -> None:
    status, body = gql(client, query)
    assert status == 200
    assert messages_of(body)[0].startswith("invalid room name 'no spaces'")


# -- limits --------------------------------------------------------------------------------------------------


def test_an_operation_over_the_limits_is_refused_before_it_executes(client_factory: Client) -> None:
    # Herald's types are flat (every query is depth 1), so only the field limit can be reached through
    # this schema; the depth rule is exercised by tests/unit/test_graphql_schema.py.
    client = client_factory(graphql_max_fields=3)
    two_books = (
        'mutation Two { a: addBook(isbn: "a", title: "T", author: "A") { isbn }'
        ' b: addBook(isbn: "b", title: "T", author: "A") { isbn } }'
    )
    status, body = gql(client, two_books)
    assert (status, messages_of(body)) == (200, ["Operation 'Two' selects 4 fields; the limit is 3."])
    assert client.get("/api/books").json() == []
    introspection = "{ __schema { queryType { name } } }"  # introspection counts toward the field limit
    assert gql(client, introspection)[1]["data"]["__schema"]["queryType"]["name"] == "Query"
    status, body = gql(client, "{ __schema { queryType { name fields { name } } } }")
    assert messages_of(body) == ["The operation selects 5 fields; the limit is 3."]


# -- auth ----------------------------------------------------------------------------------------------------


def test_with_auth_mutations_and_chat_reads_need_a_token_and_book_reads_stay_open(client_factory: Client) -> None:
    client = client_factory(jwt_secret=SECRET)
    for token in (None, "not-a-jwt", Auth("a-different-secret-0123456789abcdef").issue("eve")):
        status, body = gql(client, ADD_BOOK, token=token, isbn="1")
        assert status == 401
        assert "data" not in body and messages_of(body)
    assert (
        client.post("/graphql", json={"query": ADD_BOOK, "variables": {"isbn": "1"}}).headers["www-authenticate"]
        == "Bearer"
    )
    assert gql(client, "{ books { isbn } }") == (200, {"data": {"books": []}})

    token = Auth(SECRET).issue("alice", channels=["lobby"])
    assert gql(client, ADD_BOOK, token=token, isbn="1")[0] == 200
    status, body = gql(client, SEND, token=token, room="lobby", text="hi")
    assert body["data"]["sendMessage"]["user"] == "alice"
    status, body = gql(client, SEND, token=token, room="secret", text="hi")
    assert messages_of(body) == ["token does not allow room 'secret'"]
    status, body = gql(client, '{ messages(room: "secret") { id } }', token=token)
    assert messages_of(body) == ["token does not allow room 'secret'"]
    status, body = gql(client, '{ messages(room: "lobby") { id } }')
    assert (status, body["data"], messages_of(body)) == (200, None, ["a bearer token is required to read a chat room"])


# -- Redis unavailable ---------------------------------------------------------------------------------------


# -- WebSocket refusals that need the app's insides ----------------------------------------------------------


def test_an_unknown_or_missing_subprotocol_is_closed_4406(client: TestClient) -> None:
    for subprotocols in ([], ["graphql-sse"]):
        with client.websocket_connect("/graphql", subprotocols=subprotocols) as ws:
            assert ws.accepted_subprotocol is None
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (
            CloseCode.GQL_SUBPROTOCOL_NOT_ACCEPTABLE,
            "Subprotocol not acceptable",
        )


@pytest.mark.parametrize(
    ("protocol", "code", "frames"),
    [
        ("graphql-transport-ws", CloseCode.GQL_INTERNAL_SERVER_ERROR, []),
        (
            "graphql-ws",
            CloseCode.INTERNAL_ERROR,
            [{"type": "connection_error", "payload": {"message": "Internal server error"}}],
        ),
    ],
)
def test_an_internal_error_closes_4500(
    client_factory: Client, monkeypatch: pytest.MonkeyPatch, protocol: str, code: CloseCode, frames: list[Any]
) -> None:
    client = client_factory(jwt_secret=SECRET)

    def broken(*args: Any) -> None:
        raise RuntimeError("the token store is broken")

    monkeypatch.setattr(client.app.state.herald.auth, "verify", broken)  # type: ignore[attr-defined]
    with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"token": "t"}})
        received = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                received.append(ws.receive_json())
    assert received == frames
    assert closed.value.code == code


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_the_app_itself_closes_1009_on_a_frame_over_the_limit_in_bytes_not_characters(
    client_factory: Client, protocol: str
) -> None:
    # TestClient, like wsproto, ignores ws_max_size: the app's backstop counts UTF-8 bytes, as uvicorn does.
    client = client_factory(max_message_bytes=1024)
    wide = '{"type":"connection_init","payload":{"user":"' + "é" * 600 + '"}}'
    assert len(wide) <= 1024 < len(wide.encode())
    with client.websocket_connect("/graphql", subprotocols=[protocol]) as ws:
        ws.send_text(wide)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == CloseCode.MESSAGE_TOO_BIG
