"""OpenTelemetry tracing through a real ``herald serve`` (the in-process tests are tests/unit/test_tracing.py)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import httpx
import pytest

from tests.helpers.chat import connect, frame_where, is_message
from tests.helpers.servers import Herald, RedisServer


@pytest.mark.redis
@pytest.mark.e2e
async def test_herald_serve_exports_spans_when_otel_traces_exporter_is_set(
    redis_server: RedisServer, herald_factory: Callable[..., Herald], room: str
) -> None:
    herald = herald_factory(redis_server.url, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="herald-test")
    ws, _ = await connect(herald.ws, room, user="ada")
    async with httpx.AsyncClient() as http:
        posted = await http.post(f"{herald.http}/api/chat/{room}/messages", json={"text": "traced"}, timeout=5)
    offset = posted.json()["id"]
    await frame_where(ws, is_message)
    await ws.close()
    assert herald.process is not None
    herald.process.send_signal(signal.SIGTERM)  # the batch exporter flushes at shutdown
    assert await asyncio.to_thread(herald.process.wait, 15) == 0
    log = herald.log()
    assert "OpenTelemetry tracing on (exporters: console)" in log
    for name in (f"publish chat:{room}", f"fan-out chat:{room}"):
        assert f'"name": "{name}"' in log
    assert f'"messaging.message.id": "{offset}"' in log
    assert '"service.name": "herald-test"' in log
