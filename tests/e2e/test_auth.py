"""SPEC §7 against a real ``herald serve`` on a real redis-server: every chat and
HTTP surface refuses missing, malformed, expired, forged and wrong-room tokens;
an open socket is closed 1008 when its token expires; without a secret access
is anonymous and the server says so at start-up.

(GraphQL auth is tested with the GraphQL endpoint.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from api.auth import Auth
from api.errors import CloseCode
from tests.helpers.chat import close_code, connect, frame_where, next_frame, send
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

SECRET = "integration-secret-" + "k" * 40
ANONYMOUS_WARNING = "HERALD_JWT_SECRET is not set: access is anonymous"
ROOM = "lobby"
auth = Auth(SECRET)


def _herald(tmp: Path, redis_server: RedisServer, **env: str) -> Herald:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return Herald(tmp, redis_server.url, f"auth-{prefix}", HERALD_KEY_PREFIX=prefix, **env)


@pytest.fixture(scope="module")
def secured(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    herald = _herald(tmp_path_factory.mktemp("secured"), redis_server, HERALD_JWT_SECRET=SECRET).start()
    yield herald
    herald.stop()


@pytest.fixture(scope="module")
def anonymous(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    assert "HERALD_JWT_SECRET" not in os.environ, "the test environment must not set HERALD_JWT_SECRET"
    herald = _herald(tmp_path_factory.mktemp("anonymous"), redis_server).start()
    yield herald
    herald.stop()


def bad_token(kind: str) -> str | None:
    """A token that must not let ``mallory`` into room ``lobby``."""
    if kind == "missing":
        return None
    if kind == "malformed":
        return "not.a.jwt"
    if kind == "forged":
        return jwt.encode({"sub": "mallory"}, "not-the-secret-" + "z" * 40, algorithm="HS256")
    if kind == "expired":
        return jwt.encode({"sub": "mallory", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    assert kind == "wrong-room"
    return auth.issue("mallory", channels=["elsewhere"])


BAD = ["missing", "malformed", "forged", "expired", "wrong-room"]
#: HTTP status for a request carrying that token: a valid token for another room is 403, the rest 401
HTTP_STATUS = {"missing": 401, "malformed": 401, "forged": 401, "expired": 401, "wrong-room": 403}


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


# -- chat WebSocket ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("where", ["query", "header"])
async def test_chat_refuses_the_handshake_with_403(secured: Herald, kind: str, where: str) -> None:
    token = bad_token(kind)
    url = f"{secured.ws}/ws/chat/{ROOM}" + (f"?token={token}" if token is not None and where == "query" else "")
    headers = bearer(token) if where == "header" else {}
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, additional_headers=headers, open_timeout=5)
    assert refused.value.response.status_code == 403


async def test_chat_accepts_a_token_in_the_query_or_a_bearer_header(secured: Herald) -> None:
    token = auth.issue("alice", ttl_s=60, channels=[ROOM])
    ws, welcome = await connect(secured.ws, ROOM, token=token, user="someone-else")
    async with ws:
        assert welcome["user"] == "alice"  # the token's sub, never the display name
    async with websockets.connect(
        f"{secured.ws}/ws/chat/{ROOM}", additional_headers=bearer(token), open_timeout=5
    ) as by_header:
        assert (await next_frame(by_header))["user"] == "alice"


async def test_an_open_socket_is_closed_1008_when_its_token_expires(secured: Herald) -> None:
    token = auth.issue("brief", ttl_s=2)
    expires_at = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    ws, _ = await connect(secured.ws, ROOM, token=token)
    async with ws:
        await send(ws, {"type": "ping"})
        await frame_where(ws, lambda frame: frame["type"] == "pong")
        assert await close_code(ws, within=6) == CloseCode.POLICY_VIOLATION
    assert time.time() >= expires_at - 0.05


# -- HTTP -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BAD)
def test_http_chat_write_without_a_valid_token_is_refused_and_not_published(secured: Herald, kind: str) -> None:
    text = f"from mallory {kind}"
    response = httpx.post(
        f"{secured.http}/api/chat/{ROOM}/messages", json={"text": text}, headers=bearer(bad_token(kind)), timeout=5
    )
    assert response.status_code == HTTP_STATUS[kind]
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    reader = bearer(auth.issue("reader"))
    history = httpx.get(f"{secured.http}/api/chat/{ROOM}/messages", headers=reader, timeout=5).json()
    assert text not in [message["text"] for message in history]


@pytest.mark.parametrize("kind", BAD)
def test_http_chat_reads_need_a_valid_token_for_the_room(secured: Herald, kind: str) -> None:
    """SPEC §7 v2: a private room is never readable anonymously; a token limited to other rooms gets 403."""
    url = f"{secured.http}/api/chat/{ROOM}/messages"
    refused = httpx.get(url, headers=bearer(bad_token(kind)), timeout=5)
    assert refused.status_code == HTTP_STATUS[kind]
    assert "text" not in refused.text  # no message leaked in the refusal
    allowed = httpx.get(url, headers=bearer(auth.issue("reader", channels=[ROOM])), timeout=5)
    assert allowed.status_code == 200 and isinstance(allowed.json(), list)


@pytest.mark.parametrize("kind", BAD)
def test_graphql_messages_need_a_valid_token_for_the_room(secured: Herald, kind: str) -> None:
    query = {"query": f'{{ messages(room: "{ROOM}") {{ text }} }}'}
    token = bad_token(kind)
    url = f"{secured.http}/graphql"
    refused = httpx.post(url, json=query, headers=bearer(token), timeout=5)
    if kind in ("missing", "wrong-room"):  # no token at all, or a valid one for other rooms: a field error
        assert refused.status_code == 200 and refused.json()["data"] is None
        assert refused.json()["errors"][0]["message"] in (
            "a bearer token is required to read a chat room",
            f"token does not allow room '{ROOM}'",
        )
    else:  # a token that is no token: refused before execution
        assert refused.status_code == 401 and "data" not in refused.json()
    allowed = httpx.post(url, json=query, headers=bearer(auth.issue("reader", channels=[ROOM])), timeout=5)
    assert allowed.status_code == 200 and isinstance(allowed.json()["data"]["messages"], list)


def test_book_reads_stay_open_with_auth_on(secured: Herald) -> None:
    assert httpx.get(f"{secured.http}/api/books", timeout=5).status_code == 200
    body = httpx.post(f"{secured.http}/graphql", json={"query": "{ books { isbn } }"}, timeout=5).json()
    assert body == {"data": {"books": body["data"]["books"]}}


def test_http_chat_write_with_a_token_is_published_as_its_user(secured: Herald) -> None:
    room = f"w{uuid.uuid4().hex[:6]}"
    token = auth.issue("writer", channels=[room])
    url = f"{secured.http}/api/chat/{room}/messages"
    by_header = httpx.post(url, json={"text": "by header"}, headers=bearer(token), timeout=5)
    by_query = httpx.post(f"{url}?token={token}", json={"text": "by query"}, timeout=5)
    assert (by_header.status_code, by_query.status_code) == (202, 202)
    history = httpx.get(url, headers=bearer(token), timeout=5).json()
    assert [(m["user"], m["text"]) for m in history] == [("writer", "by header"), ("writer", "by query")]


@pytest.mark.parametrize("kind", ["missing", "malformed", "forged", "expired"])
def test_every_http_write_route_needs_a_valid_token(secured: Herald, kind: str) -> None:
    """Whatever ``/api`` write routes the app has (chat messages, books): 401, and nothing written."""
    paths = httpx.get(f"{secured.http}/openapi.json", timeout=5).json()["paths"]
    writes = [path for path, methods in paths.items() if "post" in methods and path.startswith("/api/")]
    assert "/api/chat/{room}/messages" in writes
    isbn = f"auth-{uuid.uuid4().hex[:8]}"
    bodies = {"/api/books": {"isbn": isbn, "title": "T", "author": "A"}}
    for path in writes:
        url = secured.http + path.replace("{room}", ROOM)
        response = httpx.post(url, json=bodies.get(path, {"text": "hi"}), headers=bearer(bad_token(kind)), timeout=5)
        assert response.status_code == 401, (path, response.text)
    if "/api/books" in writes:
        assert httpx.get(f"{secured.http}/api/books/{isbn}", timeout=5).status_code == 404


# -- herald token -----------------------------------------------------------------------


def herald_token(*args: str) -> str:
    """What ``herald token ARGS`` prints, run as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "api", "token", *args],
        env={**os.environ, "HERALD_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()


async def test_the_token_herald_token_prints_works_on_chat_and_http(secured: Herald) -> None:
    printed = await asyncio.to_thread(herald_token, "--user", "cli-user", "--ttl", "60", "--channels", "cli-room")
    async with httpx.AsyncClient(base_url=secured.http, headers=bearer(printed), timeout=5) as client:
        accepted = await client.post("/api/chat/cli-room/messages", json={"text": "from the cli"})
        refused = await client.post("/api/chat/other-room/messages", json={"text": "no"})
    assert (accepted.status_code, refused.status_code) == (202, 403)
    ws, welcome = await connect(secured.ws, "cli-room", token=printed, since="0")
    async with ws:
        assert welcome["user"] == "cli-user"
        message = await frame_where(ws, lambda frame: frame["type"] == "message")
        assert (message["id"], message["user"], message["text"]) == (accepted.json()["id"], "cli-user", "from the cli")
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"{secured.ws}/ws/chat/other-room?token={printed}", open_timeout=5)


# -- no secret ------------------------------------------------------------------------------


async def test_without_a_secret_access_is_anonymous_and_the_server_warns(anonymous: Herald, secured: Herald) -> None:
    assert ANONYMOUS_WARNING in anonymous.log()
    assert ANONYMOUS_WARNING not in secured.log()
    ws, welcome = await connect(anonymous.ws, "open-room", user="bob")
    async with ws:
        assert welcome["user"] == "bob"
    ws, welcome = await connect(anonymous.ws, "open-room", token=bad_token("forged") or "")
    async with ws:
        assert welcome["user"] == "anonymous"  # a token means nothing without a secret
    async with httpx.AsyncClient(base_url=anonymous.http, timeout=5) as client:
        response = await client.post("/api/chat/open-room/messages", json={"text": "hello"})
        assert response.status_code == 202
        history = (await client.get("/api/chat/open-room/messages")).json()
    assert (history[-1]["id"], history[-1]["user"]) == (response.json()["id"], "anonymous")
