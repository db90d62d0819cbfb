"""An SSE stream whose replica stalled (SIGSTOP: its loop reads nothing) while more than the history was
published ends like 4010 over ``herald serve`` processes; the client resumes with ``recovered: false``.
Everything else an SSE client sees: tests/integration/test_sse_chat.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.helpers.servers import Herald, RedisServer
from tests.helpers.sse import WAIT_S, opened, post_many, sse

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

#: these tests publish bursts from one address: lift the per-writer limit (tested elsewhere)
UNLIMITED = {"HERALD_HTTP_RATE_LIMIT": "1000000", "HERALD_HTTP_RATE_BURST": "1000000"}


async def test_a_stream_whose_replica_missed_more_than_the_history_ends_like_4010(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    # Redis drops a pub/sub client that stops reading once 256 kB wait for it.
    own_redis.client().config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
    a = herald_factory(own_redis.url, HERALD_HISTORY_SIZE="20", HERALD_HEARTBEAT_S="3600", **UNLIMITED)
    b = herald_factory(own_redis.url, HERALD_HISTORY_SIZE="20", HERALD_HEARTBEAT_S="3600", **UNLIMITED)
    room = f"r{uuid.uuid4().hex[:8]}"
    async with sse(a.http, f"/sse/chat/{room}") as reader:
        await opened(reader)
        await post_many(b, room, ["before"])
        before = await reader.until("message")
        with a.stalled():
            padding = "x" * 40_000
            await post_many(b, room, [f"m{n} {padding}" for n in range(400)])
        events = await reader.rest(within=WAIT_S * 2)
    assert len([event for event in events if event.event == "message"]) < 400
    assert events[-1].event == "close"
    assert events[-1].data == {"code": 4010, "reason": "insufficient state: resume with since"}
    last = ([before] + [event for event in events if event.event == "message"])[-1]
    async with sse(a.http, f"/sse/chat/{room}", {"Last-Event-ID": last.id or ""}) as resumed:
        assert (await opened(resumed)).data["recovered"] is False
