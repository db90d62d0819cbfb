"""A small ``text/event-stream`` reader over an httpx streaming response, for tests.

It keeps what a client sees: each event's ``event``, ``id``, ``data`` (decoded JSON when it is
JSON) and the comment lines and ``retry`` hint in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.helpers.services import Served

WAIT_S = 15.0


@dataclass
class SseEvent:
    event: str = "message"
    id: str | None = None
    data: Any = None
    #: comment lines (without the colon) and ``retry:`` hints seen since the previous event
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


class SseReader:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines: AsyncIterator[str] = response.aiter_lines()
        #: the stream ended (the server finished the response)
        self.ended = False

    async def next(self, within: float = WAIT_S) -> SseEvent | None:
        """The next event; None when the stream ended first."""
        async with asyncio.timeout(within):
            return await self._next()

    async def _next(self) -> SseEvent | None:
        event, data, seen = SseEvent(), [], False
        async for line in self._lines:
            if not line:
                if seen:
                    text = "\n".join(data)
                    event.data = orjson.loads(text) if text[:1] in ("{", "[") else text
                    return event
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if not name:
                event.comments.append(value)
            elif name == "retry":
                event.retry = int(value)
            elif name == "event":
                event.event, seen = value, True
            elif name == "id":
                event.id, seen = value, True
            elif name == "data":
                data.append(value)
                seen = True
        self.ended = True
        return None

    async def until(self, kind: str, within: float = WAIT_S) -> SseEvent:
        """Skip to the next event named ``kind``."""
        async with asyncio.timeout(within):
            while True:
                event = await self._next()
                if event is None:
                    raise AssertionError(f"the stream ended before a {kind!r} event")
                if event.event == kind:
                    return event

    async def comment(self, text: str, within: float = WAIT_S) -> None:
        """Skip to the comment line ``: text`` (events in between are dropped)."""
        async with asyncio.timeout(within):
            async for line in self._lines:
                if line == f": {text}":
                    return
        raise AssertionError(f"the stream ended before ': {text}'")

    async def rest(self, within: float = WAIT_S) -> list[SseEvent]:
        """Every event until the stream ends."""
        events = []
        async with asyncio.timeout(within):
            while (event := await self._next()) is not None:
                events.append(event)
        return events


async def post_many(herald: Served, room: str, texts: list[str]) -> list[str]:
    """Publish over REST; the offsets, in order."""
    async with httpx.AsyncClient(base_url=herald.http, timeout=10) as client:
        offsets = []
        for text in texts:
            response = await client.post(f"/api/chat/{room}/messages", json={"text": text})
            assert response.status_code == 202, response.text
            offsets.append(response.json()["id"])
        return offsets


@asynccontextmanager
async def sse(base: str, path: str, headers: dict[str, str] | None = None, **query: str) -> AsyncIterator[SseReader]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(5, read=WAIT_S)) as client,
        client.stream("GET", path, params=query, headers=headers) as response,
    ):
        yield SseReader(response)


async def opened(reader: SseReader) -> SseEvent:
    """The first event, after checking the response and the retry hint."""
    assert reader.response.status_code == 200
    assert reader.response.headers["content-type"].startswith("text/event-stream")
    first = await reader.next()
    assert first is not None
    assert first.retry is not None and 1000 <= first.retry < 3000
    assert first.event == "welcome"
    return first
