"""Real JavaScript clients, unchanged, against real replicas: the npm ``graphql-sse`` client on
``/graphql/stream`` and the npm ``eventsource`` client on ``/sse/chat/{room}``, resuming after the
replica it was on is SIGTERMed (behind the repo's nginx, which sends the reconnect to a survivor)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.chat import eventually
from tests.helpers.nginx import run_nginx
from tests.helpers.node import node_modules
from tests.helpers.servers import Herald, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

RUN_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def js() -> Path:
    return node_modules()


def test_graphql_sse_client_queries_mutates_and_subscribes_across_replicas(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], js: Path, room: str
) -> None:
    a = herald_factory(redis_server.url, HERALD_HISTORY_SIZE="2", HERALD_HEARTBEAT_S="0.2")
    b = herald_factory(redis_server.url, HERALD_HISTORY_SIZE="2", HERALD_HEARTBEAT_S="0.2")
    done = subprocess.run(
        ["node", "graphql_sse.mjs", a.http, b.http, room], cwd=js, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr + done.stdout
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["query"] == [{"data": {"books": []}}]
    [bad] = summary["badDocument"]
    assert bad["errors"][0]["message"] == "Cannot query field 'nope' on type 'Query'."
    sent = [result["data"]["sendMessage"] for result in summary["sent"]]
    assert [message["text"] for message in sent] == ["m1", "m2", "m3"]
    expected = [{"id": message["id"], "user": "anonymous", "text": message["text"]} for message in sent]
    for results in summary["received"]:  # two identical subscriptions on A, fed by mutations on B
        assert [result["data"]["chatMessage"] for result in results] == expected
    assert summary["executions"] == 3  # one execution per event on A, whatever the subscribers
    # since "0" with m1 trimmed away: told, then given what is retained
    first, second = summary["since"]
    assert first == {"data": {"chatMessage": expected[1]}, "extensions": {"recovered": False}}
    assert second == {"data": {"chatMessage": expected[2]}}


async def test_eventsource_resumes_on_a_survivor_with_last_event_id_after_sigterm(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], js: Path, room: str, tmp_path: Path
) -> None:
    replicas = [
        herald_factory(redis_server.url, HERALD_HEARTBEAT_S="1", HERALD_HTTP_RATE_LIMIT="1000") for _ in range(2)
    ]
    total, kill_after = 60, 20
    with run_nginx([herald.port for herald in replicas], tmp_path) as port:
        client = await asyncio.create_subprocess_exec(
            "node",
            "eventsource_chat.mjs",
            f"http://127.0.0.1:{port}/sse/chat/{room}?user=reader",
            str(total),
            cwd=js,
            stdout=asyncio.subprocess.PIPE,
        )
        stdout = client.stdout
        assert stdout is not None
        lines: list[dict[str, Any]] = []

        async def read_all() -> None:
            while line := await stdout.readline():
                lines.append(json.loads(line))

        async def welcomed() -> bool:
            return any(line["kind"] == "welcome" for line in lines)

        reader = asyncio.ensure_future(read_all())
        try:
            await eventually(welcomed, RUN_TIMEOUT_S, "the first welcome")
            on = next(line for line in lines if line["kind"] == "welcome")["data"]["replica"]
            first = next(herald for herald in replicas if herald.replica_id == on)
            survivor = next(herald for herald in replicas if herald is not first)
            async with asyncio.timeout(RUN_TIMEOUT_S):
                async with httpx.AsyncClient(base_url=survivor.http, timeout=5) as http:
                    for number in range(1, total + 1):
                        response = await http.post(f"/api/chat/{room}/messages", json={"text": str(number)})
                        assert response.status_code == 202
                        if number == kill_after:
                            assert await asyncio.to_thread(first.terminate) == 0
                        await asyncio.sleep(0.02)  # a steady stream, not a synchronisation
                await reader
                assert await client.wait() == 0, lines[-3:]
        finally:
            reader.cancel()
            if client.returncode is None:
                client.kill()
                await client.wait()

    messages = [line for line in lines if line["kind"] == "message"]
    assert [m["data"]["text"] for m in messages] == [str(n) for n in range(1, total + 1)]  # none lost, none twice
    assert all(m["id"] == m["data"]["id"] for m in messages)
    closes = [line for line in lines if line["kind"] == "close"]
    assert closes[0]["data"]["code"] == 1012
    welcomes = [line["data"] for line in lines if line["kind"] == "welcome"]
    assert welcomes[-1]["replica"] == survivor.replica_id
    assert welcomes[-1]["recovered"] is True
