"""``herald serve --workers N``: N replicas on one port, each its own id and pub/sub connection; SIGTERM drains
them all (1012 to every socket) and the parent exits 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.errors import CloseCode
from tests.helpers.chat import connect, next_frame
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]


async def test_two_workers_share_the_port_as_two_replicas_and_drain_together_on_sigterm(
    redis_server: RedisServer, herald_factory: Callable[..., Herald]
) -> None:
    herald = herald_factory(redis_server.url, "box", HERALD_WORKERS="2", HERALD_SHUTDOWN_GRACE_S="3")
    by_replica: dict[str, ClientConnection] = {}
    opened: list[ClientConnection] = []
    for i in range(60):  # the kernel spreads connections over the workers: both show up long before 60
        ws, welcome = await connect(herald.ws, "lobby", user=f"u{i}")
        opened.append(ws)
        by_replica.setdefault(welcome["replica"], ws)
        if len(by_replica) == 2:
            break
    assert sorted(by_replica) == ["box-w1", "box-w2"]

    await by_replica["box-w1"].send('{"type":"message","text":"across workers"}')
    frame = await next_frame(by_replica["box-w2"])
    while frame["type"] != "message":
        frame = await next_frame(by_replica["box-w2"])
    assert frame["text"] == "across workers"

    assert herald.process is not None
    herald.process.send_signal(signal.SIGTERM)
    for ws in opened:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == CloseCode.SERVICE_RESTART
    assert await asyncio.to_thread(herald.process.wait, 10) == 0
    herald.process = None


def test_workers_refuse_the_embedded_redis(herald_factory: Callable[..., Herald]) -> None:
    with pytest.raises(RuntimeError, match="needs a shared Redis"):
        herald_factory("memory://", HERALD_WORKERS="2")
