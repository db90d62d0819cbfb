"""The README's HTTP table tells the truth (issue 15, item 1): every status it lists for a route is one a
client really gets, provoked here in-process (fakeredis), and the row names it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.auth import Auth

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "s" * 32
Request = Callable[[TestClient], httpx.Response]


def row(prefix: str) -> str:
    table = README.read_text().split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    (found,) = [line for line in table.splitlines() if line.startswith(f"| {prefix}")]
    return found


def bearer(channels: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {Auth(SECRET).issue('ada', None, channels)}"}


POST_CHAT = "`POST /api/chat/{room}/messages`"
GET_CHAT = "`GET /api/chat/{room}/messages"
GET_PRESENCE = "`GET /api/chat/{room}/presence`"
POST_BOOK = "`POST /api/books`"
GET_BOOK = "`GET /api/books/{isbn}`"

CASES: list[tuple[str, int, bool, Request]] = [
    (POST_CHAT, 202, False, lambda c: c.post("/api/chat/lobby/messages", json={"text": "hi"})),
    (POST_CHAT, 401, True, lambda c: c.post("/api/chat/lobby/messages", json={"text": "hi"})),
    (POST_CHAT, 403, True, lambda c: c.post("/api/chat/lobby/messages", json={"text": "hi"}, headers=bearer(["dev"]))),
    (POST_CHAT, 413, False, lambda c: c.post("/api/chat/lobby/messages", json={"text": "x" * 70_000})),
    (POST_CHAT, 422, False, lambda c: c.post("/api/chat/bad%20room/messages", json={"text": "hi"})),
    (POST_CHAT, 422, False, lambda c: c.post("/api/chat/lobby/messages", json={"nope": 1})),
    (
        POST_CHAT,
        422,
        False,
        lambda c: c.post("/api/chat/lobby/messages", json={"text": "hi"}, headers={"Idempotency-Key": ""}),
    ),
    (GET_CHAT, 200, False, lambda c: c.get("/api/chat/lobby/messages?since=0&limit=2")),
    (GET_CHAT, 401, True, lambda c: c.get("/api/chat/lobby/messages", headers={"Authorization": "Bearer forged"})),
    (GET_CHAT, 403, True, lambda c: c.get("/api/chat/lobby/messages", headers=bearer(["dev"]))),
    (GET_CHAT, 422, False, lambda c: c.get("/api/chat/lobby/messages?since=yesterday")),
    (GET_CHAT, 422, False, lambda c: c.get("/api/chat/lobby/messages?limit=1001")),
    (GET_PRESENCE, 200, False, lambda c: c.get("/api/chat/lobby/presence")),
    (GET_PRESENCE, 401, True, lambda c: c.get("/api/chat/lobby/presence", headers={"Authorization": "Bearer forged"})),
    (GET_PRESENCE, 403, True, lambda c: c.get("/api/chat/lobby/presence", headers=bearer(["dev"]))),
    (GET_PRESENCE, 422, False, lambda c: c.get("/api/chat/bad%20room/presence")),
    (POST_BOOK, 201, False, lambda c: c.post("/api/books", json={"isbn": "1", "title": "t", "author": "a"})),
    (POST_BOOK, 401, True, lambda c: c.post("/api/books", json={"isbn": "1", "title": "t", "author": "a"})),
    (POST_BOOK, 422, False, lambda c: c.post("/api/books", json={"isbn": "1"})),
    (GET_BOOK, 404, False, lambda c: c.get("/api/books/0000000000")),
    ("`GET /health`", 200, False, lambda c: c.get("/health")),
    ("`GET /ready`", 200, False, lambda c: c.get("/ready")),
    ("`GET /docs`", 200, False, lambda c: c.get("/docs")),
]


@pytest.mark.parametrize(("route", "status", "auth", "request_"), CASES, ids=[f"{r}-{s}" for r, s, _, _ in CASES])
def test_the_readme_lists_what_a_client_gets(
    client_factory: Callable[..., TestClient], route: str, status: int, auth: bool, request_: Request
) -> None:
    client = client_factory(jwt_secret=SECRET) if auth else client_factory()
    assert request_(client).status_code == status
    assert re.search(rf"\b{status}\b", row(route)), f"README's row for {route} does not list {status}"


@pytest.mark.parametrize(
    ("route", "path", "body"),
    [
        (POST_CHAT, "/api/chat/lobby/messages", {"text": "hi"}),
        (POST_BOOK, "/api/books", {"isbn": "1", "title": "t", "author": "a"}),
    ],
)
def test_writes_beyond_the_writers_rate_are_429_with_retry_after(
    client_factory: Callable[..., TestClient], route: str, path: str, body: dict[str, str]
) -> None:
    client = client_factory(http_rate_limit=0.01, http_rate_burst=1)
    client.post(path, json=body)
    refused = client.post(path, json={**body, "isbn": "2"} if "isbn" in body else body)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "429" in row(route)


def test_a_duplicate_isbn_is_409(client_factory: Callable[..., TestClient]) -> None:
    client = client_factory()
    book = {"isbn": "9780441013593", "title": "Dune", "author": "Frank Herbert"}
    assert client.post("/api/books", json=book).status_code == 201
    assert client.post("/api/books", json=book).status_code == 409
    assert "409" in row(POST_BOOK)
