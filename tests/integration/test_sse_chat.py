"""``GET /sse/chat/{room}`` with httpx streaming against the server ``herald serve`` runs (in-process:
``replica_factory``; two replicas on one redis-server): what an SSE client sees (SPEC §10): the retry hint,
the welcome, every chat frame as an event, ids, resume with ``Last-Event-ID``, heartbeats, refusals, limits,
slow consumers and shutdown. A replica that stalls (SIGSTOP) and misses more than the history:
tests/e2e/test_sse_gap.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.auth import Auth
from tests.helpers.chat import ametric, eventually
from tests.helpers.inprocess import InProcessReplica
from tests.helpers.servers import RedisServer
from tests.helpers.sse import WAIT_S, opened, post_many, sse

pytestmark = [pytest.mark.redis]

Replicas = tuple[InProcessReplica, InProcessReplica]

SECRET = "s" * 40
#: these tests publish bursts from one address: lift the per-writer limit (tested elsewhere)
UNLIMITED = {"HERALD_HTTP_RATE_LIMIT": "1000000", "HERALD_HTTP_RATE_BURST": "1000000"}


@pytest.fixture(scope="module")
def replicas(redis_server: RedisServer) -> Iterator[Replicas]:
    env = {"HERALD_KEY_PREFIX": f"e{uuid.uuid4().hex[:8]}", "HERALD_HEARTBEAT_S": "0.3", "HERALD_HISTORY_SIZE": "5"}
    settings = {name.removeprefix("HERALD_").lower(): value for name, value in {**env, **UNLIMITED}.items()}
    started = [InProcessReplica(redis_url=redis_server.url, replica_id=name, **settings).start() for name in "ab"]
    yield started[0], started[1]
    for replica in started:
        replica.stop()


async def test_welcome_then_every_frame_as_an_event_across_replicas(
    replicas: Replicas,
) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    async with sse(a.http, f"/sse/chat/{room}", user="ann") as ann:
        welcome = await opened(ann)
        assert welcome.data == {"type": "welcome", "room": room, "user": "ann", "replica": "a", "offset": None}
        assert welcome.id == "0"  # an empty room: a reconnect replays everything from its start
        async with sse(b.http, f"/sse/chat/{room}", user="bob") as bob:
            await opened(bob)
            join = await ann.until("join")
            assert join.data["user"] == "bob" and join.id is None
            [offset] = await post_many(b, room, ["hello\nworld"])
            message = await ann.until("message")
            assert message.id == offset
            assert message.data == {**message.data, "type": "message", "id": offset, "user": "anonymous"}
            assert message.data["text"] == "hello\nworld"
            bob_sees = await bob.until("message")
            assert bob_sees.data == message.data  # bob was not told of his own join
        leave = await ann.until("leave")
        assert leave.data["user"] == "bob"
        await ann.comment("heartbeat")  # every HERALD_HEARTBEAT_S, a comment line


async def test_last_event_id_resumes_like_since_and_wins_over_it(
    replicas: Replicas,
) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    offsets = await post_many(b, room, ["one", "two", "three"])
    headers = {"Last-Event-ID": offsets[0]}
    async with sse(a.http, f"/sse/chat/{room}", headers, since=offsets[2]) as reader:
        welcome = await opened(reader)
        assert welcome.data["recovered"] is True and welcome.data["offset"] == offsets[2]
        assert welcome.id is None  # the client's position is its Last-Event-ID, not the newest offset
        replayed = [await reader.until("message") for _ in range(2)]
        assert [(m.id, m.data["text"]) for m in replayed] == [(offsets[1], "two"), (offsets[2], "three")]
    async with sse(a.http, f"/sse/chat/{room}", since=offsets[1]) as reader:
        await opened(reader)
        assert (await reader.until("message")).data["text"] == "three"


async def test_a_position_older_than_the_history_is_told_recovered_false(
    replicas: Replicas,
) -> None:
    a, b = replicas
    room = f"r{uuid.uuid4().hex[:8]}"
    offsets = await post_many(b, room, [str(n) for n in range(7)])  # the history keeps 5
    async with sse(a.http, f"/sse/chat/{room}", {"Last-Event-ID": offsets[0]}) as reader:
        welcome = await opened(reader)
        assert welcome.data["recovered"] is False
        assert [(await reader.until("message")).data["text"] for _ in range(5)] == ["2", "3", "4", "5", "6"]


@pytest.mark.parametrize(
    ("path", "query", "headers", "status"),
    [
        ("/sse/chat/bad%20room", {}, {}, 422),
        ("/sse/chat/ok", {"since": "yesterday"}, {}, 422),
        ("/sse/chat/ok", {}, {"Last-Event-ID": "nope"}, 422),
    ],
)
async def test_a_bad_request_is_refused_before_the_stream(
    replicas: Replicas,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    status: int,
) -> None:
    async with httpx.AsyncClient(base_url=replicas[0].http, timeout=5) as client:
        response = await client.get(path, params=query, headers=headers)
    assert response.status_code == status
    assert "detail" in response.json()


async def test_auth_token_in_query_or_header_rooms_and_expiry(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_JWT_SECRET=SECRET)
    auth = Auth(SECRET)
    async with httpx.AsyncClient(base_url=herald.http, timeout=5) as client:
        assert (await client.get("/sse/chat/lobby")).status_code == 401  # chat reads need a token
        assert (await client.get("/sse/chat/lobby", params={"token": "forged"})).status_code == 401
        only_other = auth.issue("eve", channels=["other"])
        assert (await client.get("/sse/chat/lobby", params={"token": only_other})).status_code == 403
    bearer = {"Authorization": f"Bearer {auth.issue('ann')}"}
    async with sse(herald.http, "/sse/chat/lobby", bearer, user="ignored") as reader:
        assert (await opened(reader)).data["user"] == "ann"
    started = time.monotonic()
    async with sse(herald.http, "/sse/chat/lobby", token=auth.issue("bob", ttl_s=1.5)) as reader:
        await opened(reader)
        [close] = await reader.rest()
        assert close.event == "close" and close.data == {"code": 1008, "reason": "token expired"}
    assert time.monotonic() - started < WAIT_S


async def test_beyond_max_connections_the_stream_ends_with_1013(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_MAX_CONNECTIONS="1")
    async with sse(herald.http, "/sse/chat/lobby") as first:
        await opened(first)
        async with sse(herald.http, "/sse/chat/lobby") as second:
            assert second.response.status_code == 200
            [close] = await second.rest()
            assert close.event == "close" and close.data["code"] == 1013
    async with sse(herald.http, "/sse/chat/lobby") as again:  # the slot was given back
        await opened(again)


async def test_a_client_that_stops_reading_is_dropped_after_a_bounded_backlog(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_SEND_QUEUE="8", HERALD_HEARTBEAT_S="3600", **UNLIMITED)
    room = f"r{uuid.uuid4().hex[:8]}"
    padding = "x" * 60_000
    async with sse(herald.http, f"/sse/chat/{room}") as reader:
        await opened(reader)
        # Not reading: the kernel's buffers fill, then the replica's bounded queue overflows.
        published = 0

        async def dropped() -> bool:
            nonlocal published
            await post_many(herald, room, [f"{published + n} {padding}" for n in range(20)])
            published += 20
            return await ametric(herald.http, "herald_slow_consumers_total") == 1

        await eventually(dropped, WAIT_S * 4, "the slow consumer to be dropped")
        events = await reader.rest()
    texts = [event.data["text"].split()[0] for event in events if event.event == "message"]
    assert texts == [str(n) for n in range(len(texts))]  # a prefix, in order: what TCP already held
    assert len(texts) < published
    assert events[-1].event == "close" and events[-1].data["code"] == 1013


async def test_shutdown_ends_the_stream_with_1012_at_once(
    redis_server: RedisServer, replica_factory: Callable[..., InProcessReplica]
) -> None:
    herald = replica_factory(redis_server.url, HERALD_HEARTBEAT_S="3600", HERALD_SHUTDOWN_GRACE_S="10")
    async with sse(herald.http, "/sse/chat/lobby") as reader:
        await opened(reader)
        started = time.monotonic()
        await asyncio.to_thread(herald.stop)  # as SIGTERM stops herald serve (tests/e2e/test_shutdown.py)
        [close] = await reader.rest()
    assert close.event == "close" and close.data["code"] == 1012
    assert time.monotonic() - started < 5  # not held until uvicorn's graceful timeout
