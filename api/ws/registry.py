"""The replica's open WebSockets: counted per endpoint, sent one shared heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import time

from api.models import dumps
from api.ws.connection import Connection

ENDPOINTS = ("chat", "graphql")


class Connections:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, set[Connection]] = {name: set() for name in ENDPOINTS}
        self._heartbeat: asyncio.Task[None] | None = None

    def total(self) -> int:
        return sum(len(group) for group in self._open.values())

    def count(self, endpoint: str) -> int:
        return len(self._open[endpoint])

    def full(self) -> bool:
        return self.total() >= self.limit

    def add(self, connection: Connection) -> None:
        self._open[connection.endpoint].add(connection)

    def discard(self, connection: Connection) -> None:
        self._open[connection.endpoint].discard(connection)

    def start_heartbeat(self, interval_s: float) -> None:
        self._heartbeat = asyncio.create_task(self._beat(interval_s), name="herald-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _beat(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            frame = dumps({"type": "heartbeat", "timestamp": round(time.time(), 3)})  # once for everyone
            for connection in tuple(self._open["chat"]):
                connection.push(frame)
