"""SPEC §8, Redis goes away: a real redis-server is SIGKILLed under two real
replicas with clients connected, then started again on the same port."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
import websockets

from api.errors import CloseCode, ErrorCode
from broker.pubsub import BACKOFF_CAP_S, backoff_delay
from tests.helpers.chat import ametric, astatus, close_code, connect, eventually, frame_where, send
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def test_reconnect_delays_grow_exponentially_with_full_jitter_up_to_a_cap() -> None:
    for attempt in range(12):
        ceiling = min(BACKOFF_CAP_S, 0.1 * 2**attempt)
        delays = [backoff_delay(attempt) for _ in range(50)]
        assert all(0 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered, so replicas do not reconnect in lockstep


async def test_replicas_ride_out_a_redis_outage_and_recover(
    own_redis: RedisServer, herald_factory: Callable[..., Herald], request: pytest.FixtureRequest
) -> None:
    # Short presence lifetimes, so the presence refresh (every ttl/3) runs within the test.
    a = herald_factory(own_redis.url, HERALD_PRESENCE_TTL_S="1")
    b = herald_factory(own_redis.url, HERALD_PRESENCE_TTL_S="1")
    alice, _ = await connect(a.ws, "main", user="alice")
    bob, _ = await connect(b.ws, "main", user="bob")
    carol, _ = await connect(b.ws, "side", user="carol")  # a second channel to re-subscribe
    await frame_where(alice, lambda f: f["type"] == "join")
    http = httpx.AsyncClient(timeout=5)

    own_redis.kill()

    async def not_ready() -> bool:
        return await astatus(f"{a.http}/ready") == 503 and await astatus(f"{b.http}/ready") == 503

    await eventually(not_ready, 5, "/ready to report 503 on both replicas")
    assert await astatus(f"{a.http}/health") == await astatus(f"{b.http}/health") == 200
    # Sockets stay open and answer; publishing is refused out loud, never accepted and dropped.
    await send(alice, {"type": "ping"})
    await frame_where(alice, lambda f: f["type"] == "pong")
    await send(alice, {"type": "message", "text": "during the outage"})
    error = await frame_where(alice, lambda f: f["type"] == "error")
    assert error["code"] == ErrorCode.UNAVAILABLE
    await send(alice, {"type": "presence"})
    assert (await frame_where(alice, lambda f: f["type"] == "error"))["code"] == ErrorCode.UNAVAILABLE
    refused = await http.post(f"{b.http}/api/chat/main/messages", json={"text": "during the outage"})
    assert refused.status_code == 503 and "unavailable" in refused.json()["detail"]
    assert (await http.get(f"{b.http}/api/chat/main/messages")).status_code == 503
    # A newcomer is let in and told at once to come back later (it cannot be subscribed).
    async with websockets.connect(f"{a.ws}/ws/chat/main?user=late", open_timeout=5) as late:
        assert await close_code(late) == CloseCode.TRY_AGAIN_LATER

    own_redis.start()
    restarted = time.monotonic()

    async def ready() -> bool:
        return await astatus(f"{a.http}/ready") == 200 and await astatus(f"{b.http}/ready") == 200

    recovery_s = await eventually(ready, 15, "/ready to report 200 on both replicas again")
    request.node.user_properties.append(("redis_recovery_s", round(recovery_s, 2)))
    # The backoff is capped: after a short outage both replicas are back well within the cap.
    assert time.monotonic() - restarted < BACKOFF_CAP_S + 5
    for replica in (a, b):
        assert await ametric(replica.http, "herald_redis_reconnects_total") >= 1
        assert await ametric(replica.http, "herald_channels") >= 1

    # Every channel with listeners was re-subscribed: new events reach the clients that stayed.
    published = await http.post(f"{a.http}/api/chat/main/messages", json={"text": "after"})
    assert published.status_code == 202
    for ws in (alice, bob):
        message = await frame_where(ws, lambda f: f["type"] == "message")
        assert (message["id"], message["text"]) == (published.json()["id"], "after")
    side = await http.post(f"{a.http}/api/chat/side/messages", json={"text": "side after"})
    assert (await frame_where(carol, lambda f: f["type"] == "message"))["id"] == side.json()["id"]
    await send(bob, {"type": "message", "text": "bob is back"})
    assert (await frame_where(alice, lambda f: f["type"] == "message"))["text"] == "bob is back"

    # This Redis kept nothing (no persistence); each replica's presence refresh puts its users back.
    async def present() -> bool:
        await send(alice, {"type": "presence"})
        frame = await frame_where(alice, lambda f: f["type"] == "presence")
        return bool(frame["users"] == ["alice", "bob"])

    await eventually(present, 5, "presence to be rebuilt", interval=0.2)
    # ...and newcomers are welcome again.
    late, welcome = await connect(a.ws, "main", user="late", since=published.json()["id"])
    assert welcome["recovered"] is True
    assert (await frame_where(late, lambda f: f["type"] == "message"))["text"] == "bob is back"
    for ws in (alice, bob, carol, late):
        await ws.close()
    await http.aclose()


async def test_a_lost_pubsub_connection_is_replayed_from_the_stream_without_gap_or_duplicate(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    """Only the subscriber connections die (Redis itself stays up, publishes go on): each replica
    reconnects, re-subscribes and replays what it missed from the channel's stream."""
    a, b = herald_factory(own_redis.url), herald_factory(own_redis.url)
    listeners = [(await connect(replica.ws, "gap", user=f"on-{replica.replica_id}"))[0] for replica in (a, b)]
    published: list[str] = []
    async with httpx.AsyncClient(base_url=b.http, timeout=5) as http:
        for i in range(150):
            if i == 50:
                killed = own_redis.client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                assert int(killed) == 2  # the one subscriber connection of each replica
            response = await http.post("/api/chat/gap/messages", json={"text": str(i)})
            assert response.status_code == 202
            published.append(response.json()["id"])
    for ws in listeners:
        ids = [(await frame_where(ws, lambda f: f["type"] == "message"))["id"] for _ in published]
        assert ids == published
        await ws.close()
    for replica in (a, b):
        assert await ametric(replica.http, "herald_redis_reconnects_total") >= 1
