"""SPEC §8, a replica stops: SIGTERM closes every socket 1012 and the process
exits on its own within HERALD_SHUTDOWN_GRACE_S with status 0, even when a peer
or Redis hangs; in a rolling restart, clients that resume with ``since`` see
every event exactly once, in order."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import websockets

from api.errors import CloseCode
from tests.helpers.chat import connect, eventually, raw_handshake
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


def sigterm_and_wait(herald: Herald, limit_s: float) -> tuple[int, float]:
    """SIGTERM; (exit status, seconds until the process was gone). Fails if it outlives ``limit_s``."""
    process = herald.process
    assert process is not None
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    status = process.wait(limit_s)
    herald.process = None
    return status, time.monotonic() - started


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_sigterm_closes_every_socket_1012_and_exits_0_within_the_grace_period(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    grace = 3.0
    herald = herald_factory(redis_server.url, HERALD_SHUTDOWN_GRACE_S=str(grace))
    clients = [(await connect(herald.ws, "bye", user=f"u{i}"))[0] for i in range(3)]
    assert herald.process is not None
    started = time.monotonic()
    herald.process.send_signal(signal.SIGTERM)
    for ws in clients:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), grace)
        assert ws.close_code == CloseCode.SERVICE_RESTART
    # It stopped accepting before it closed the sockets.
    assert refuses_connections(herald.port)
    status = await asyncio.to_thread(herald.process.wait, grace)
    assert status == 0
    assert time.monotonic() - started < grace
    herald.process = None
    assert "Application shutdown complete" in herald.log()


async def test_a_replica_exits_within_the_grace_period_even_when_a_peer_stopped_reading(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    """The stuck socket keeps uvicorn waiting; the replica's deadline ends the process anyway."""
    grace = 1.0
    herald = herald_factory(redis_server.url, HERALD_SHUTDOWN_GRACE_S=str(grace))
    stuck = await asyncio.to_thread(raw_handshake, herald.port, "/ws/chat/stuck?user=stuck")
    try:
        async with httpx.AsyncClient(base_url=herald.http, timeout=5) as client:
            for _ in range(40):  # ~2.5 MiB the peer never reads: the replica's write buffer stays full
                assert (await client.post("/api/chat/stuck/messages", json={"text": "z" * 65536})).status_code == 202
        status, took = await asyncio.to_thread(sigterm_and_wait, herald, grace + 2)
    finally:
        stuck.close()
    assert status == 0
    assert took < grace + 0.25, took  # the replica aims at 0.9 x grace; 0.25 s of slack for a busy machine


async def test_a_replica_exits_within_the_grace_period_even_when_redis_hangs(
    own_redis: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    """Handlers hang on Redis while cleaning up; uvicorn alone would take 0.1 s + its 1 s task
    timeout + the lifespan shutdown, longer than this grace period: the replica's deadline ends it."""
    grace = 1.0
    herald = herald_factory(own_redis.url, HERALD_SHUTDOWN_GRACE_S=str(grace))
    clients = [(await connect(herald.ws, "frozen", user=f"u{i}"))[0] for i in range(2)]
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # alive but silent: every Redis call now hangs
    try:
        status, took = await asyncio.to_thread(sigterm_and_wait, herald, grace + 2)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    assert status == 0
    assert took < grace + 0.25, took  # the replica aims at 0.9 x grace; 0.25 s of slack for a busy machine
    assert "exiting now" in herald.log()
    for ws in clients:
        await ws.close()


@dataclass
class Follower:
    """A chat client that follows the room across replicas, resuming with ``since``."""

    name: str
    target: str
    numbers: list[int] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    connections: int = 0
    move: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, room: str) -> None:
        since: str | None = None
        while True:
            url = f"{self.target}/ws/chat/{room}?user={self.name}" + (f"&since={since}" if since else "")
            try:
                async with websockets.connect(url, open_timeout=5) as ws:
                    self.connections += 1
                    welcome = orjson.loads(await ws.recv())
                    since = since or welcome["offset"] or "0"
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        if frame["type"] == "message":
                            self.numbers.append(int(frame["text"]))
                            since = frame["id"]
                        if self.move.is_set():
                            self.move.clear()
                            break
                self.closes.append(None)  # we left on purpose
            except websockets.ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except OSError:
                await asyncio.sleep(0.05)  # the target is not listening (yet): try again


async def test_rolling_restart_loses_and_repeats_nothing(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], request: pytest.FixtureRequest
) -> None:
    env = {"HERALD_SHUTDOWN_GRACE_S": "3", "HERALD_HISTORY_SIZE": "5000"}
    a, b = herald_factory(redis_server.url, "a", **env), herald_factory(redis_server.url, "b", **env)
    room = "rolling"
    followers = [Follower(f"f{i}", a.ws) for i in range(3)]
    following = [asyncio.create_task(follower.run(room)) for follower in followers]
    await eventually(lambda: _all_connected(followers, 1), 5, "the followers to connect to A")

    published = 0
    stop = asyncio.Event()

    async def publish_through_b() -> None:
        nonlocal published
        async with httpx.AsyncClient(base_url=b.http, timeout=5) as client:
            while not stop.is_set():
                response = await client.post(f"/api/chat/{room}/messages", json={"text": str(published + 1)})
                assert response.status_code == 202
                published += 1
                await asyncio.sleep(0.003)

    publisher = asyncio.create_task(publish_through_b())
    await eventually(lambda: _passed(published, 100), 10, "100 messages")
    for follower in followers:
        follower.target = b.ws  # the load balancer stops sending new connections to A
    status, _ = await asyncio.to_thread(sigterm_and_wait, a, 5)
    assert status == 0
    await eventually(lambda: _all_connected(followers, 2), 5, "the followers to resume on B")
    assert all(follower.closes == [CloseCode.SERVICE_RESTART] for follower in followers)

    a2 = await asyncio.to_thread(herald_factory, redis_server.url, "a2", **env)
    mark = published
    await eventually(lambda: _passed(published, mark + 100), 10, "100 more messages")
    for follower in followers:
        follower.target = a2.ws
        follower.move.set()
    await eventually(lambda: _all_connected(followers, 3), 5, "the followers to resume on the new A")
    mark = published
    await eventually(lambda: _passed(published, mark + 100), 10, "100 more messages")
    stop.set()
    await asyncio.wait_for(publisher, 5)

    await eventually(lambda: _all_have(followers, published), 10, "every follower to get the last message")
    for task in following:
        task.cancel()
    await asyncio.gather(*following, return_exceptions=True)
    for follower in followers:
        assert follower.numbers == list(range(1, published + 1)), follower.name
    request.node.user_properties.append(("rolling_restart_messages_checked", published * len(followers)))


async def _all_connected(followers: list[Follower], times: int) -> bool:
    return all(follower.connections >= times for follower in followers)


async def _passed(count: int, target: int) -> bool:
    return count >= target


async def _all_have(followers: list[Follower], count: int) -> bool:
    return all(len(follower.numbers) >= count for follower in followers)
