"""Issue 13 item 5, the SSE half: 200 npm ``eventsource`` clients, unchanged, read a room through the
repo's nginx while one of the two replicas behind it gets SIGTERM mid-stream.

How an SSE client reaches the survivor: the way a deployment gives it one address, the load
balancer (deploy/nginx.conf, as in the compose file; here with the survivor as a ``backup`` server, so
all 200 clients start on the replica that is drained). The drained replica ends its streams after an
``event: close`` (1012); each ``EventSource`` reconnects to the same URL with ``Last-Event-ID`` after
the server's ``retry:`` hint (1-3 s, drawn per stream), nginx sends it to the survivor (the drained
one refuses connections), and ``Last-Event-ID`` resumes it there. The run is repeated with clients
that reconnect at once on ``event: close`` (``?since=`` the last id, no jittered first delay) to show
what the hint's spread buys. Figures are printed (reconnects timed where each client got its welcome);
every client must end with every number exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.chat import eventually
from tests.helpers.nginx import run_nginx
from tests.helpers.node import node_modules
from tests.helpers.proof import Figures, figures
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

CLIENTS = 200
NUMBERS = 240
RATE = 60.0  # numbers per second through the surviving replica
ENV = {
    "HERALD_HEARTBEAT_S": "3600",
    "HERALD_SHUTDOWN_GRACE_S": "5",
    "HERALD_HISTORY_SIZE": "5000",
}
WAIT_S = 90.0


async def publish_numbers(herald: Herald, room: str, published: list[int]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        started = time.monotonic()
        for n in range(1, NUMBERS + 1):
            response = await client.post(f"{herald.http}/api/chat/{room}/messages", json={"text": str(n)})
            assert response.status_code == 202, response.text
            published.append(n)
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))


async def drain_one_replica(pair: tuple[Herald, Herald], room: str, mode: str, js: Path, tmp_path: Path) -> Figures:
    drained, survivor = pair
    with run_nginx([drained.port, survivor.port], tmp_path / mode, backups=1) as port:
        node = await asyncio.create_subprocess_exec(
            "node",
            "eventsource_proof.mjs",
            f"http://127.0.0.1:{port}/sse/chat/{room}?user=reader",
            str(CLIENTS),
            str(NUMBERS),
            mode,
            cwd=js,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,  # the summary is one long line
        )
        try:
            assert node.stdout is not None
            ready: dict[str, int] = json.loads(await asyncio.wait_for(node.stdout.readline(), WAIT_S))["ready"]
            assert ready == {drained.replica_id: CLIENTS}
            published: list[int] = []
            publisher = asyncio.create_task(publish_numbers(survivor, room, published))

            async def a_third_published() -> bool:
                return len(published) >= NUMBERS // 3

            await eventually(a_third_published, WAIT_S, "a third of the stream published")
            assert drained.process is not None
            sigterm_at = time.time()
            os.kill(drained.process.pid, signal.SIGTERM)
            await asyncio.wait_for(publisher, WAIT_S)
            summary: dict[str, Any] = json.loads(await asyncio.wait_for(node.stdout.readline(), WAIT_S))
            exit_status = await asyncio.to_thread(drained.process.wait, 15)
            drained.process = None
        finally:
            if node.returncode is None:
                node.kill()
            await node.wait()

    clients = summary["clients"]
    reconnects = [w["t"] for c in clients for w in c["welcomes"] if w["t"] >= sigterm_at]
    result = figures([c["numbers"] for c in clients], NUMBERS, reconnects)
    print(f"\n[eventsource, SIGTERM proof] {mode}: {result.describe()}; drained replica exited {exit_status}")
    assert exit_status in (0, -signal.SIGTERM)
    moved = [c for c in clients if c["welcomes"][0]["replica"] == drained.replica_id]
    assert all(c["welcomes"][-1]["replica"] == survivor.replica_id for c in moved)
    assert all(w["recovered"] in (None, True) for c in clients for w in c["welcomes"])  # no gap told
    return result


@pytest.mark.timeout(300)
async def test_200_eventsource_clients_through_nginx_get_every_number_once_in_order_across_a_sigterm(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str, tmp_path: Path
) -> None:
    js = await asyncio.to_thread(node_modules)
    results: list[Figures] = []
    for mode in ("hint", "immediate"):
        pair = (
            await asyncio.to_thread(herald_factory, redis_server.url, **ENV),
            await asyncio.to_thread(herald_factory, redis_server.url, **ENV),
        )
        results.append(await drain_one_replica(pair, f"{room}{mode}", mode, js, tmp_path))
    for result in results:
        assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
        assert result.reconnects == CLIENTS
    hint, immediate = results
    print(
        f"\n[eventsource, SIGTERM proof] peak reconnects/s at the survivor: {hint.peak_per_s_100ms:.0f} with the"
        f" server's jittered retry hint (1-3 s), {immediate.peak_per_s_100ms:.0f} reconnecting at once"
    )
