"""Issue 12, access (SPEC §7, §12), provoked for real against ``herald serve`` on a real redis-server:
tokens never reach a log line, browser origins are checked on every WebSocket handshake, CORS answers
only allowed origins, ``X-Forwarded-*`` is believed from trusted proxies only, and a validly signed but
unrepresentable token is refused, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from api.auth import Auth
from tests.helpers.chat import wait_until
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

SECRET = "hardening-secret-" + "h" * 40
auth = Auth(SECRET)
GRAPHQL_WS = Subprotocol("graphql-transport-ws")


def _start(factory: Callable[..., Herald], redis_server: RedisServer, **env: str) -> Herald:
    return factory(redis_server.url, f"h{uuid.uuid4().hex[:6]}", **env)


def _signed(claims: dict[str, object]) -> str:
    """A correctly signed HS256 token around ``claims`` as given (10**400 included)."""
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    signature = hmac.new(SECRET.encode(), header + b"." + body, hashlib.sha256).digest()
    return b".".join((header, body, base64.urlsafe_b64encode(signature).rstrip(b"="))).decode()


def _handshake_status(url: str, **kwargs: object) -> int:
    """101 when the WebSocket opened, else the HTTP status of the refusal."""
    try:
        with connect(url, open_timeout=5, **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


# -- 1. tokens in logs ---------------------------------------------------------------------------------------


def test_no_token_reaches_the_log(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], request: pytest.FixtureRequest
) -> None:
    herald = _start(herald_factory, redis_server, HERALD_JWT_SECRET=SECRET, HERALD_LOG_LEVEL="debug")
    room = f"r{uuid.uuid4().hex[:6]}"
    tokens = [auth.issue(f"user{i}", ttl_s=60) for i in range(4)]
    bad = _signed({"sub": "mallory", "exp": 10**400})
    # chat with ?token= (the browser way), refused handshakes with a token in the URL, GraphQL with the
    # token in connection_init, REST with Authorization
    with connect(f"{herald.ws}/ws/chat/{room}?token={tokens[0]}&since=0", open_timeout=5) as ws:
        ws.recv(timeout=5)
    assert _handshake_status(f"{herald.ws}/ws/chat/{room}?token={bad}") == 403
    assert _handshake_status(f"{herald.ws}/ws/chat/bad%20room?token={tokens[1]}") == 403
    with connect(f"{herald.ws}/graphql", subprotocols=[GRAPHQL_WS], open_timeout=5) as gql:
        gql.send(json.dumps({"type": "connection_init", "payload": {"token": tokens[2]}}))
        assert json.loads(gql.recv(timeout=5))["type"] == "connection_ack"
    headers = {"Authorization": f"Bearer {tokens[3]}"}
    httpx.post(f"{herald.http}/api/chat/{room}/messages", json={"text": "hi"}, headers=headers, timeout=5)
    httpx.get(f"{herald.http}/api/chat/{room}/messages?token={tokens[3]}", timeout=5)
    herald.terminate()

    log = herald.log()
    assert "WebSocket /ws/chat/" in log  # uvicorn's lines with URLs are there...
    assert "token=***" in log  # ...redacted
    leaked = [token for token in [*tokens, bad] if token in log or token.split(".")[2] in log]
    assert leaked == []
    assert not re.search(r"eyJ[A-Za-z0-9_-]+\.", log)
    assert "authorization" not in log.lower() and "connection_init" not in log
    request.node.user_properties.append(("tokens_in_log", len(leaked)))


# -- 2. origins (and 6. the X-Forwarded-Host of a trusted proxy) ----------------------------------------------


@pytest.mark.parametrize("path", ["/ws/chat/lobby", "/graphql"])
def test_websocket_origins_same_origin_by_default(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], path: str
) -> None:
    herald = _start(herald_factory, redis_server)
    url = f"{herald.ws}{path}"
    extra: dict[str, object] = {"subprotocols": [GRAPHQL_WS]} if path == "/graphql" else {}
    same = f"http://127.0.0.1:{herald.port}"
    assert _handshake_status(url, origin="http://evil.example", **extra) == 403
    assert _handshake_status(url, origin=f"http://127.0.0.1:{herald.port + 1}", **extra) == 403  # other port
    assert _handshake_status(url, origin="null", **extra) == 403
    assert _handshake_status(url, origin=same, **extra) == 101
    assert _handshake_status(url, **extra) == 101  # no Origin: not a browser
    # behind a trusted proxy (127.0.0.1 by default) the public host counts as the same origin
    proxied = {"additional_headers": {"X-Forwarded-Host": "chat.example.com"}}
    assert _handshake_status(url, origin="https://chat.example.com", **proxied, **extra) == 101
    assert _handshake_status(url, origin="https://evil.example", **proxied, **extra) == 403


def test_x_forwarded_host_and_for_are_ignored_from_an_untrusted_peer(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = _start(herald_factory, redis_server, HERALD_TRUSTED_PROXIES="10.9.9.9")
    headers = {"X-Forwarded-Host": "chat.example.com", "X-Forwarded-For": "203.0.113.7"}
    url = f"{herald.ws}/ws/chat/lobby"
    assert _handshake_status(url, origin="https://chat.example.com", additional_headers=headers) == 403
    assert _handshake_status(url, additional_headers=headers) == 101
    wait_until(lambda: "[accepted]" in herald.log(), 5, "the accepted line")
    accepted = [line for line in herald.log().splitlines() if "[accepted]" in line]
    assert "203.0.113.7" not in herald.log() and "127.0.0.1:" in accepted[-1]


def test_x_forwarded_for_is_believed_from_a_trusted_proxy(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = _start(herald_factory, redis_server)  # HERALD_TRUSTED_PROXIES defaults to 127.0.0.1
    assert _handshake_status(f"{herald.ws}/ws/chat/lobby", additional_headers={"X-Forwarded-For": "203.0.113.7"}) == 101
    wait_until(lambda: "203.0.113.7" in herald.log(), 5, "the forwarded client address in the log")


def test_listed_origins_and_cors(redis_server: RedisServer, herald_factory: Callable[..., Herald]) -> None:
    allowed = "https://app.example.com"
    herald = _start(herald_factory, redis_server, HERALD_ALLOWED_ORIGINS=f"{allowed}, http://localhost:3000")
    url = f"{herald.ws}/ws/chat/lobby"
    assert _handshake_status(url, origin=allowed) == 101
    assert _handshake_status(url, origin="http://localhost:3000") == 101
    assert _handshake_status(url, origin="https://evil.example") == 403
    assert _handshake_status(url, origin=f"http://127.0.0.1:{herald.port}") == 101  # its own page still works

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{herald.http}/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            timeout=5,
        )

    assert preflight(allowed).headers.get("access-control-allow-origin") == allowed
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers
    simple = httpx.get(f"{herald.http}/api/books", headers={"Origin": "https://evil.example"}, timeout=5)
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_without_allowed_origins_there_are_no_cors_answers(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = _start(herald_factory, redis_server)
    response = httpx.get(f"{herald.http}/api/books", headers={"Origin": "https://evil.example"}, timeout=5)
    assert "access-control-allow-origin" not in response.headers


# -- 5. identity edge cases ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param({"sub": "eve", "exp": 10**400}, 401, id="exp-10^400"),
        pytest.param({"sub": "eve", "exp": float("inf")}, 401, id="exp-infinity"),
        pytest.param({"sub": "ali\u0000ce"}, 401, id="sub-nul"),
        pytest.param({"sub": "a" * 4_000}, 401, id="sub-4KB"),
        # a 133 KB token does not fit in a request head (64 KiB): refused before it is even decoded
        pytest.param({"sub": "a" * 100_000}, 431, id="sub-100KB"),
    ],
)
def test_unrepresentable_tokens_are_refused_on_every_surface(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], claims: dict[str, object], status: int
) -> None:
    herald = _start(herald_factory, redis_server, HERALD_JWT_SECRET=SECRET)
    token = _signed(claims)
    bearer = {"Authorization": f"Bearer {token}"}
    post = httpx.post(f"{herald.http}/api/chat/lobby/messages", json={"text": "x"}, headers=bearer, timeout=5)
    read = httpx.get(f"{herald.http}/api/chat/lobby/messages", headers=bearer, timeout=5)
    mutation = httpx.post(
        f"{herald.http}/graphql",
        json={"query": 'mutation { sendMessage(room: "lobby", text: "x") { id } }'},
        headers=bearer,
        timeout=5,
    )
    # a 100 KB token does not fit in an 8 KiB WebSocket request line: 431 rather than 403, still no socket
    assert _handshake_status(f"{herald.ws}/ws/chat/lobby?token={token}") in (403, 431)
    assert (post.status_code, read.status_code, mutation.status_code) == (status, status, status)
    assert "Traceback" not in herald.log()
