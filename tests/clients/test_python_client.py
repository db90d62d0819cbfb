"""herald_client against real ``herald serve`` replicas and a real redis-server (SPEC §11).

What an application using the library sees: every message once and in order across a
killed replica, a gap frame when history was trimmed meanwhile, an exception (and no
retry) when the token is refused, one publish for a send whose answer was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from herald_client import AuthRefused, HeraldClient, ReconnectPolicy, Room, Unavailable

from api.auth import Auth
from tests.clients.proxy import FailoverProxy
from tests.helpers.chat import ametric, astatus, eventually, post_message
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

WAIT_S = 30.0
#: tests restart replicas: a 2 s backoff cap keeps the wait for the restarted one short (the default is 20 s)
FAST = ReconnectPolicy(cap_s=2.0)
#: the test process publishes over HTTP faster than HERALD_HTTP_RATE_LIMIT's default allows one writer
QUIET = {"HERALD_HEARTBEAT_S": "3600", "HERALD_SHUTDOWN_GRACE_S": "3", "HERALD_HTTP_RATE_LIMIT": "100000"}
SECRET = "client-test-secret-0123456789abcdef"
NEW_BOOK = "subscription S($since: String) { newBook(since: $since) { isbn offset } }"


def kill(herald: Herald) -> None:
    """SIGKILL: a crash, no close frame; the object can ``start()`` again on the same port."""
    assert herald.process is not None
    herald.process.kill()
    herald.process.wait(5)
    herald.process = None


async def restart(herald: Herald) -> None:
    await asyncio.to_thread(herald.start)
    await eventually(lambda: _ready(herald), WAIT_S, "the restarted replica is ready")


async def _ready(herald: Herald) -> bool:
    return await astatus(f"{herald.http}/ready") == 200


async def history(herald: Herald, room: str) -> list[dict[str, str]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{herald.http}/api/chat/{room}/messages", params={"limit": 1000})
    assert response.status_code == 200, response.text
    messages: list[dict[str, str]] = response.json()
    return messages


async def texts_until(room: Room, last: str, within: float = WAIT_S, seen: list[str] | None = None) -> list[str]:
    """Texts of the message frames (and "<gap>") the application reads, up to ``last``."""
    seen = [] if seen is None else seen
    async with asyncio.timeout(within):
        async for frame in room:
            if frame["type"] == "gap":
                seen.append("<gap>")
            elif frame["type"] == "message":
                seen.append(frame["text"])
                if frame["text"] == last:
                    return seen
    raise AssertionError(f"the room ended before {last!r}: {seen}")


@contextlib.asynccontextmanager
async def proxied(*upstreams: Herald) -> AsyncIterator[FailoverProxy]:
    proxy = await FailoverProxy([h.port for h in upstreams]).start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_send_returns_the_offset_the_room_delivers_and_presence_lists_the_users(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, **QUIET)
    async with HeraldClient(a.http, user="ada") as ada, HeraldClient(a.http, user="bob") as bob:
        async with ada.room(room) as ada_room:
            assert ada_room.offset == "0"  # an empty room: resume from its beginning
            async with bob.room(room) as bob_room:
                assert await ada_room.presence() == ["ada", "bob"]
                offset = await bob_room.send("hello")
                frames = []
                async with asyncio.timeout(WAIT_S):
                    async for frame in ada_room:
                        frames.append(frame)
                        if frame["type"] == "message":
                            break
            assert [(f["type"], f["user"]) for f in frames] == [("join", "bob"), ("message", "bob")]
            assert frames[-1]["id"] == offset and frames[-1]["text"] == "hello"
            assert ada_room.offset == offset
            assert (await history(a, room))[-1]["id"] == offset
            # the HTTP publish path for publishers that do not read a room
            again = await ada.publish(room, "over http", key="k1")
            assert await ada.publish(room, "over http", key="k1") == again
            assert await texts_until(ada_room, "over http") == ["over http"]


async def test_a_room_resumes_after_its_replica_is_killed_and_sees_every_message_once_in_order(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, **QUIET)
    b = herald_factory(redis_server.url, **QUIET)
    numbers = [str(n) for n in range(60)]
    async with HeraldClient(a.http, user="ada", policy=FAST) as herald, herald.room(room) as chat:
        seen: list[str] = []
        reader = asyncio.create_task(texts_until(chat, numbers[-1], within=2 * WAIT_S, seen=seen))
        for number in numbers[:20]:
            await post_message(b.http, room, number)

        async def read_20() -> bool:
            return len(seen) >= 20

        await eventually(read_20, WAIT_S, "the client read the first 20")
        kill(a)
        for number in numbers[20:40]:  # published while the client has no replica
            await post_message(b.http, room, number)
        await restart(a)
        for number in numbers[40:]:
            await post_message(b.http, room, number)
        assert await reader == numbers, seen
        assert chat.connects == 2


async def test_a_resume_past_the_trimmed_history_yields_a_gap_frame_before_the_retained_events(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, HERALD_HISTORY_SIZE="5", **QUIET)
    b = herald_factory(redis_server.url, HERALD_HISTORY_SIZE="5", **QUIET)
    async with HeraldClient(a.http, user="ada", policy=FAST) as herald, herald.room(room) as chat:
        await post_message(b.http, room, "m0")
        assert await texts_until(chat, "m0") == ["m0"]
        kill(a)
        for n in range(1, 21):  # 20 events while away: the stream keeps the last 5
            await post_message(b.http, room, f"m{n}")
        await restart(a)
        assert await texts_until(chat, "m20") == ["<gap>", "m16", "m17", "m18", "m19", "m20"]
        gap_offset = chat.offset
    # the same rule when opening a room with an old since
    async with HeraldClient(b.http, user="bob") as herald, herald.room(room, since="1-0") as chat:
        assert await texts_until(chat, "m20") == ["<gap>", "m16", "m17", "m18", "m19", "m20"]
        assert chat.offset == gap_offset


async def test_an_auth_refusal_raises_and_is_never_retried(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, HERALD_JWT_SECRET=SECRET, **QUIET)
    states: list[str] = []
    async with HeraldClient(a.http, token="not-a-token") as herald:
        with pytest.raises(AuthRefused, match="403"):
            async with herald.room(room, on_state=states.append):
                pass
    assert states == ["connecting", "closed"]  # one attempt, then nothing

    # A token that expires on an open socket: close 1008, the iterator raises, no reconnect.
    token = Auth(SECRET).issue("ada", ttl_s=2)
    states.clear()
    async with HeraldClient(a.http, token=token) as herald, herald.room(room, on_state=states.append) as chat:
        with pytest.raises(AuthRefused) as refused:
            async with asyncio.timeout(WAIT_S):
                async for _ in chat:
                    pass
        assert refused.value.code == 1008
        with pytest.raises(AuthRefused):
            await chat.send("after expiry")
    assert states.count("connecting") == 1 and chat.connects == 1

    # GraphQL: a refused connection_init closes 4403; the subscription raises the same way.
    async with HeraldClient(a.http, token="not-a-token") as herald:
        with pytest.raises(AuthRefused) as refused:
            async with asyncio.timeout(WAIT_S):
                async for _ in herald.subscribe(NEW_BOOK):
                    pass
        assert refused.value.code == 4403


async def test_a_send_whose_answer_was_lost_is_retried_across_a_reconnect_and_published_once(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, **QUIET)
    async with proxied(a) as proxy, HeraldClient(proxy.url, user="ada") as herald, herald.room(room) as chat:
        proxy.mute_replies()  # the frame reaches the replica; its ack never comes back
        sending = asyncio.create_task(chat.send("exactly once"))

        async def published() -> bool:
            return any(m["text"] == "exactly once" for m in await history(a, room))

        await eventually(published, WAIT_S, "the message was published")
        assert not sending.done()
        proxy.cut()  # the link fails; the client reconnects and sends again with the same key
        offset = await asyncio.wait_for(sending, WAIT_S)
        assert [m["id"] for m in await history(a, room) if m["text"] == "exactly once"] == [offset]
        assert chat.connects == 2
        await post_message(a.http, room, "after")
        assert await texts_until(chat, "after") == ["exactly once", "after"]


async def test_send_raises_unavailable_when_redis_is_down(
    own_redis: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(own_redis.url, **QUIET)
    policy = ReconnectPolicy(request_attempts=2, base_s=0.1)
    async with HeraldClient(a.http, policy=policy) as herald, herald.room(room) as chat:
        own_redis.stop()
        started = time.monotonic()
        with pytest.raises(Unavailable) as raised:
            await chat.send("nowhere")
        assert "after 2 attempts" in str(raised.value)
        assert time.monotonic() - started < WAIT_S


async def test_a_subscription_resumes_across_a_replica_restart_without_loss_or_repeat(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    a = herald_factory(redis_server.url, **QUIET)
    b = herald_factory(redis_server.url, **QUIET)
    isbns = [f"isbn-{uuid.uuid4().hex[:6]}-{n}" for n in range(6)]

    async def add(n: int) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            body = {"isbn": isbns[n], "title": f"t{n}", "author": "a"}
            assert (await client.post(f"{b.http}/api/books", json=body)).status_code == 201

    async with HeraldClient(a.http, policy=FAST) as herald:
        results = herald.subscribe(NEW_BOOK)
        first = asyncio.create_task(anext(results))
        await eventually(lambda: _subscribed(a), WAIT_S, "the subscription is live")
        await add(0)
        seen = [(await asyncio.wait_for(first, WAIT_S))["data"]["newBook"]["isbn"]]
        kill(a)
        for n in (1, 2, 3):
            await add(n)
        await restart(a)
        for _ in (1, 2, 3):
            seen.append((await asyncio.wait_for(anext(results), WAIT_S))["data"]["newBook"]["isbn"])
        for n in (4, 5):
            await add(n)
            seen.append((await asyncio.wait_for(anext(results), WAIT_S))["data"]["newBook"]["isbn"])
        await results.aclose()
    assert seen == isbns


async def _subscribed(herald: Herald) -> bool:
    return await ametric(herald.http, "herald_graphql_subscriptions") == 1


async def test_a_room_read_slowly_pauses_and_resumes_with_bounded_buffer_and_no_loss(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    a = herald_factory(redis_server.url, **QUIET)
    async with HeraldClient(a.http) as herald, herald.room(room, max_buffer=10) as chat:
        texts = [f"m{n}" for n in range(50)]
        for text in texts:  # nobody reads meanwhile: the room stops reading at 10 frames
            await post_message(a.http, room, text)

        async def paused() -> bool:
            return chat.state == "connecting"

        await eventually(paused, WAIT_S, "the room paused its connection")
        assert await texts_until(chat, "m49") == texts
        assert chat.connects >= 2
