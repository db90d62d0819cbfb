"""Issue 12, memory and CPU (SPEC §8, §12), provoked for real against ``herald serve`` on a real
redis-server: request bodies capped before buffering, no large echo in a 422, the introspection alias
bomb refused. The replica's memory is measured before and after (reported as test properties, bounded by
assertions that leave a wide margin: no timing target is asserted). The protocol classes' own limits (ping
flood, half-open connections, oversize heads) are tests/integration/test_serving_limits.py."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.chat import read_until_closed, rss_kib
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MIB = 1024 * 1024
SMALL_BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def herald(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    replica = Herald(
        tmp_path_factory.mktemp("limits"),
        redis_server.url,
        f"limits-{prefix}",
        HERALD_KEY_PREFIX=prefix,
    ).start()
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def small_bodies(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    replica = Herald(
        tmp_path_factory.mktemp("bodies"),
        redis_server.url,
        f"bodies-{prefix}",
        HERALD_KEY_PREFIX=prefix,
        HERALD_MAX_BODY_BYTES=str(SMALL_BODY_LIMIT),
    ).start()
    yield replica
    replica.stop()


def pid(herald: Herald) -> int:
    assert herald.process is not None
    return herald.process.pid


def healthy(herald: Herald) -> bool:
    return httpx.get(f"{herald.http}/health", timeout=5).status_code == 200


# -- 7. request bodies ---------------------------------------------------------------------------------------


def _streamed(total: int, chunk: int = MIB) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        sent += size
        yield b"x" * size


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_200_mb_body_is_413_before_it_is_buffered(
    herald: Herald, declared: bool, request: pytest.FixtureRequest
) -> None:
    before = rss_kib(pid(herald))
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(200 * MIB)
    try:
        response = httpx.post(f"{herald.http}/api/books", content=_streamed(200 * MIB), headers=headers, timeout=30)
        status, body = response.status_code, response.content
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        status, body = 0, b""  # the server answered and closed mid-upload; its answer is checked below
    grown_mib = (rss_kib(pid(herald)) - before) / 1024
    request.node.user_properties.append((f"rss_growth_mib_200mb_{'declared' if declared else 'chunked'}", grown_mib))
    assert status in (413, 0) and len(body) < 200
    assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB for a refused body"
    assert healthy(herald)


def test_the_413_arrives_before_the_body_is_sent(herald: Herald) -> None:
    """Declared too large: answered on the head alone, connection closed, the body never read."""
    with socket.create_connection(("127.0.0.1", herald.port), timeout=5) as sock:
        sock.sendall(
            f"POST /api/books HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {200 * MIB}\r\n\r\n".encode()
        )
        answer = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"HERALD_MAX_BODY_BYTES" in answer


def test_an_invalid_body_is_never_echoed_back(herald: Herald, request: pytest.FixtureRequest) -> None:
    url = f"{herald.http}/api/books"
    huge = httpx.post(url, content=b'{"isbn": "' + b"9" * (20 * MIB) + b'"}', timeout=30)
    assert huge.status_code == 413 and len(huge.content) < 200
    # under the cap (900 KB) but invalid: described, not repeated
    big_field = {"isbn": "1", "title": "t" * 900_000, "author": ["not", "a", "string"]}
    invalid = httpx.post(url, json=big_field, timeout=30)
    assert invalid.status_code == 422
    assert len(invalid.content) < 4096, f"a 422 of {len(invalid.content)} bytes"
    problems = {tuple(problem["loc"]) for problem in invalid.json()["detail"]}
    assert ("body", "author") in problems
    not_json = httpx.post(url, content=b"{" * 900_000, headers={"Content-Type": "application/json"}, timeout=30)
    assert not_json.status_code == 422 and len(not_json.content) < 4096
    request.node.user_properties.append(("largest_422_bytes", max(len(invalid.content), len(not_json.content))))


BIG = "x" * 900_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"query": "{ " + BIG + " }"}, id="syntax-error-token"),
        pytest.param({"query": '{ messages(room: "' + BIG + '") { id } }'}, id="invalid-room"),
        pytest.param({"query": "{ books { isbn } }", "operationName": BIG}, id="unknown-operation"),
        pytest.param(
            {"query": "query Q($n: Int) { books(limit: $n) { isbn } }", "variables": {"n": BIG}}, id="variable"
        ),
        pytest.param({"query": 'subscription { chatMessage(room: "r", since: "' + BIG + '") { id } }'}, id="since"),
    ],
)
def test_graphql_errors_never_echo_a_large_input(herald: Herald, body: dict[str, object]) -> None:
    for accept in ("application/json", "application/graphql-response+json"):
        response = httpx.post(f"{herald.http}/graphql", json=body, headers={"Accept": accept}, timeout=30)
        assert response.json()["errors"]
        assert len(response.content) < 4096, f"{len(response.content)} bytes answering a 900 KB input"


def test_rest_errors_never_echo_a_large_input(herald: Herald) -> None:
    response = httpx.get(f"{herald.http}/api/chat/lobby/messages", params={"since": "9" * 60_000}, timeout=10)
    assert response.status_code == 422 and len(response.content) < 1024


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(min_value=0, max_value=3 * SMALL_BODY_LIMIT), declared=st.booleans())
def test_bodies_over_the_limit_are_413_and_the_rest_are_read(small_bodies: Herald, size: int, declared: bool) -> None:
    body = b"x" * size
    content: bytes | Iterator[bytes] = body if declared else iter([body[i : i + 1000] for i in range(0, size, 1000)])
    response = httpx.post(
        f"{small_bodies.http}/api/books", content=content, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == (413 if size > SMALL_BODY_LIMIT else 422)
    assert len(response.content) < 1024


# -- 8. the introspection alias bomb -------------------------------------------------------------------------


def test_an_introspection_alias_bomb_is_refused_before_it_runs(herald: Herald, request: pytest.FixtureRequest) -> None:
    bomb = "{ " + " ".join(f"a{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(2000)) + " }"
    health_s: list[float] = []
    done = threading.Event()

    def probe_health() -> None:
        while not done.is_set():
            started = time.monotonic()
            httpx.get(f"{herald.http}/health", timeout=30)
            health_s.append(time.monotonic() - started)

    prober = threading.Thread(target=probe_health, daemon=True)
    prober.start()
    started = time.monotonic()
    response = httpx.post(f"{herald.http}/graphql", json={"query": bomb}, timeout=60)
    elapsed = time.monotonic() - started
    done.set()
    prober.join(35)
    assert response.status_code == 200
    assert response.json() == {"errors": [response.json()["errors"][0]]}  # no data: nothing ran
    assert "more than 10000 tokens" in response.json()["errors"][0]["message"]
    # Under the token bound, over the field limit: refused by the size check
    smaller = "{ " + " ".join(f"a{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(400)) + " }"
    refused = httpx.post(f"{herald.http}/graphql", json={"query": smaller}, timeout=60).json()
    assert refused == {
        "errors": [{"message": "The operation selects 2000 fields; the limit is 500.", **refused["errors"][0]}]
    }
    request.node.user_properties.append(("alias_bomb_request_s", round(elapsed, 3)))
    request.node.user_properties.append(("alias_bomb_worst_health_s", round(max(health_s, default=0.0), 3)))
