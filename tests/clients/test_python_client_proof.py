"""Issue 13 item 5, the Python half: 200 herald_client rooms on a replica that gets SIGTERM mid-stream.

A numbered stream is published through the other replica while the first one drains
(close 1012). Every client must end with every number exactly once, in order, on the
surviving replica; and the reconnects must reach the survivor spread over time. The
same scenario runs twice, with the client's jittered first delay after 1012 and
without it, and prints the peak connects/s each time (measured where the welcome of
the survivor's log says it accepted; timing figures are printed, never asserted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from datetime import datetime

import httpx
import pytest
from herald_client import HeraldClient, ReconnectPolicy, Room

from tests.clients.proxy import FailoverProxy
from tests.helpers.chat import eventually
from tests.helpers.proof import Figures, figures
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

CLIENTS = 200
NUMBERS = 240
#: numbers per second through the publishing replica
RATE = 60.0
#: the client's default spread of the first reconnect after 1012 (ReconnectPolicy.restart_spread_s)
SPREAD_S = ReconnectPolicy().restart_spread_s
ENV = {
    "HERALD_HEARTBEAT_S": "3600",
    "HERALD_SHUTDOWN_GRACE_S": "5",
    "HERALD_HISTORY_SIZE": "5000",
    "HERALD_MAX_CONNECTIONS": "10000",
    "HERALD_HTTP_RATE_LIMIT": "100000",  # the stream is published by one writer, faster than the default allows
}
WAIT_S = 45.0


class Listener:
    """One application: reads the room and keeps the numbers; notes when its room opens."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.gaps = 0
        self.opened: list[float] = []
        self.room: Room | None = None

    def on_state(self, state: str) -> None:
        if state == "open":
            self.opened.append(time.monotonic())

    async def read(self, last: int) -> None:
        assert self.room is not None
        async for frame in self.room:
            if frame["type"] == "gap":
                self.gaps += 1
            elif frame["type"] == "message":
                self.numbers.append(int(frame["text"]))
                if self.numbers[-1] == last:
                    return


async def publish_numbers(herald: Herald, room: str, count: int, published: list[int]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        for n in range(1, count + 1):
            response = await client.post(f"{herald.http}/api/chat/{room}/messages", json={"text": str(n)})
            assert response.status_code == 202, response.text
            published.append(n)
            # a steady pace, so the stream is still flowing while the clients move
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))


def accepted_after(herald: Herald, room: str, after: float) -> list[float]:
    """Times of the WebSocket handshakes to ``room`` the replica's log says it accepted after ``after``.

    uvicorn logs each at INFO: ``2026-12-01 13:13:47,882 INFO uvicorn.error: … "WebSocket /ws/chat/R?…" [accepted]``.
    """
    times = []
    for line in herald.log().splitlines():
        if f"/ws/chat/{room}?" in line and line.endswith("[accepted]"):
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if stamp >= after:
                times.append(stamp)
    return times


async def drain_one_replica(draining: Herald, survivor: Herald, room: str, spread_s: float) -> Figures:
    proxy = await FailoverProxy([draining.port, survivor.port]).start()
    policy = ReconnectPolicy(restart_spread_s=spread_s)
    listeners = [Listener() for _ in range(CLIENTS)]
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(proxy.close)
        for start in range(0, CLIENTS, 25):  # join in batches: 200 handshakes at once is a test of its own
            batch = listeners[start : start + 25]
            heralds = [
                await stack.enter_async_context(
                    # all "anonymous": one presence entry, so no join/leave storm (200 x 200 frames) to measure
                    HeraldClient(proxy.url, policy=policy, rng=random.Random(start + i))
                )
                for i in range(len(batch))
            ]
            rooms = [h.room(room, on_state=listener.on_state) for h, listener in zip(heralds, batch, strict=True)]
            await asyncio.gather(*(r.__aenter__() for r in rooms))
            for listener, joined in zip(batch, rooms, strict=True):
                listener.room = joined
                stack.push_async_callback(joined.close)
        assert {listener.room.replica for listener in listeners if listener.room} == {draining.replica_id}

        readers = [asyncio.create_task(listener.read(NUMBERS)) for listener in listeners]
        published: list[int] = []
        publisher = asyncio.create_task(publish_numbers(survivor, room, NUMBERS, published))

        async def a_third_published() -> bool:
            return len(published) >= NUMBERS // 3

        await eventually(a_third_published, WAIT_S, "a third of the stream published")
        assert draining.process is not None
        sigterm_at = time.monotonic()
        sigterm_wall = time.time()
        os.kill(draining.process.pid, signal.SIGTERM)
        await asyncio.wait_for(publisher, WAIT_S)
        _, pending = await asyncio.wait(readers, timeout=WAIT_S)
        for reader in pending:
            reader.cancel()
        exit_status = await asyncio.to_thread(draining.process.wait, 15)
        draining.process = None

    reconnects = accepted_after(survivor, room, sigterm_wall)
    assert len(reconnects) == len([t for listener in listeners for t in listener.opened if t > sigterm_at])
    result = figures([listener.numbers for listener in listeners], NUMBERS, reconnects)
    print(
        f"\n[python client, SIGTERM proof] first-delay spread {spread_s} s: {result.describe()};"
        f" drained replica exited {exit_status}"
    )
    assert not pending, f"{len(pending)} clients did not get the whole stream within {WAIT_S} s"
    assert exit_status in (0, -signal.SIGTERM)
    assert all(listener.room is not None and listener.room.replica == survivor.replica_id for listener in listeners)
    assert all(listener.gaps == 0 for listener in listeners)
    return result


@pytest.mark.timeout(240)
async def test_200_clients_on_a_draining_replica_get_every_number_once_in_order_and_reconnect_spread_out(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    survivor = herald_factory(redis_server.url, **ENV)
    first = herald_factory(redis_server.url, **ENV)
    spread = await drain_one_replica(first, survivor, f"{room}a", SPREAD_S)
    second = await asyncio.to_thread(herald_factory, redis_server.url, **ENV)
    at_once = await drain_one_replica(second, survivor, f"{room}b", 0.0)
    for result in (spread, at_once):
        assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
        assert result.reconnects == CLIENTS
    print(
        f"\n[python client, SIGTERM proof] peak reconnects/s at the survivor: {spread.peak_per_s_100ms:.0f}"
        f" with the jittered first delay (0-{SPREAD_S} s), {at_once.peak_per_s_100ms:.0f} without"
    )
