"""The SSE routes in-process: documented in OpenAPI, and a one-shot graphql-sse operation."""

from __future__ import annotations

from fastapi.testclient import TestClient


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
