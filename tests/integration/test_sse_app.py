"""The SSE routes in-process: documented in OpenAPI, and a one-shot graphql-sse operation."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

QUERY = "{ books(limit: 1) { isbn } }"


def test_the_sse_routes_are_in_the_openapi_document_as_event_streams(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in (("/sse/chat/{room}", "get"), ("/graphql/stream", "get"), ("/graphql/stream", "post")):
        assert "text/event-stream" in paths[path][method]["responses"]["200"]["content"], (path, method)


def test_a_graphql_sse_query_is_next_then_complete(client: TestClient) -> None:
    response = client.post(
        "/graphql/stream", headers={"Accept": "text/event-stream"}, json={"query": "{ books(limit: 1) { isbn } }"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == 'event: next\ndata: {"data":{"books":[]}}\n\nevent: complete\ndata:\n\n'


def test_a_page_of_another_origin_is_refused_403_and_a_listed_one_gets_cors(
    client_factory: Callable[..., TestClient],
) -> None:
    client = client_factory(allowed_origins="https://chat.example.com")
    evil = {"Origin": "https://evil.example", "Accept": "text/event-stream"}
    assert client.get("/sse/chat/lobby", headers=evil).status_code == 403
    assert client.post("/graphql/stream", headers=evil, json={"query": QUERY}).status_code == 403
    listed = {"Origin": "https://chat.example.com", "Accept": "text/event-stream"}
    response = client.post("/graphql/stream", headers=listed, json={"query": QUERY})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://chat.example.com"
    preflight = client.options(
        "/sse/chat/lobby",
        headers={
            "Origin": "https://chat.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert preflight.status_code == 200  # a reconnecting cross-origin EventSource may send Last-Event-ID


def test_mutations_over_sse_draw_from_the_writers_bucket(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory(http_rate_limit=0.01, http_rate_burst=1)
    send = {"query": 'mutation { sendMessage(room: "lobby", text: "hi") { id } }'}
    headers = {"Accept": "text/event-stream"}
    assert client.post("/graphql/stream", headers=headers, json=send).status_code == 200
    refused = client.post("/graphql/stream", headers=headers, json=send)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
