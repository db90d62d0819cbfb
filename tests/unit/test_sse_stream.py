"""``EventStream`` over a scripted ASGI peer: wake-ups, the bound, drains, disconnects, heartbeats,
and the once-per-event encodings it is fed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from api.errors import CloseCode
from api.metrics import Counts
from api.sse.chat import close_event, sse_chat, sse_chat_bytes
from api.sse.graphql import next_event
from api.sse.registry import SseStreams
from api.sse.stream import EventStream, sse_event
from broker import Event
from tests.helpers.chat import eventually

WAIT_S = 5.0


class Peer:
    """The ASGI side: records what is sent; ``receive`` answers ``http.disconnect`` once told to leave."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.left = asyncio.Event()
        #: while clear, send blocks like a transport over its high-water mark
        self.reading = asyncio.Event()
        self.reading.set()
        self.ended = False
        self.waits = self.sends = 0

    async def receive(self) -> dict[str, Any]:
        self.waits += 1
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sends += 1
        await self.reading.wait()
        if message["type"] == "http.response.body":
            self.sent.append(message["body"])
            self.ended = not message.get("more_body", False)

    @property
    def text(self) -> str:
        return b"".join(self.sent).decode()


def make(peer: Peer, counts: Counts | None = None, *, limit: int = 4, heartbeat_s: float = 3600) -> EventStream:
    return EventStream(
        peer.receive,  # type: ignore[arg-type]
        peer.send,  # type: ignore[arg-type]
        endpoint="chat",
        limit=limit,
        heartbeat_s=heartbeat_s,
        close_timeout_s=1.0,
        counts=counts or Counts(),
        farewell=close_event,
    )


async def until(check: Callable[[], bool]) -> None:
    async def checked() -> bool:
        return check()

    await eventually(checked, WAIT_S, "the peer to see it", interval=0.001)


async def test_a_push_wakes_the_idle_stream_at_once() -> None:
    peer = Peer()
    stream = make(peer)
    serving = asyncio.ensure_future(stream.serve())
    await until(lambda: peer.waits == 1)  # idle now, under a one-hour heartbeat
    stream.push(b"event: message\ndata: 1\n\n")
    stream.push(b"event: message\ndata: 2\n\n")
    await until(lambda: "data: 2" in peer.text)
    assert peer.text == "event: message\ndata: 1\n\nevent: message\ndata: 2\n\n"
    peer.left.set()
    await asyncio.wait_for(serving, WAIT_S)
    await stream.finish()
    assert not peer.ended  # the client is gone: nothing more is written


async def test_overflow_drops_the_backlog_and_ends_with_1013() -> None:
    peer, counts = Peer(), Counts()
    stream = make(peer, counts, limit=2)
    peer.reading.clear()  # the client stopped reading
    serving = asyncio.ensure_future(stream.serve())
    stream.push(b"a\n\n")
    await until(lambda: peer.sends == 1)  # the stream is now blocked writing "a"
    for data in (b"b\n\n", b"c\n\n", b"d\n\n"):
        stream.push(data)
    assert stream.closed and counts.slow_consumers == 1 and counts.delivered == 3
    await asyncio.wait_for(serving, WAIT_S)  # the blocked write was given up
    peer.reading.set()
    await stream.finish()
    assert peer.text == 'event: close\ndata: {"code":1013,"reason":"slow consumer: send queue overflowed"}\n\n'
    assert peer.ended


async def test_a_drain_flushes_what_was_pushed_then_says_1012() -> None:
    peer = Peer()
    registry = SseStreams()
    stream = make(peer)
    registry.add(stream)
    stream.push(b"event: message\ndata: last\n\n")
    registry.drain()
    await asyncio.wait_for(stream.serve(), WAIT_S)
    await stream.finish()
    assert peer.text.startswith("event: message\ndata: last\n\nevent: close\n")
    assert '"code":1012' in peer.text and peer.ended
    late = make(Peer())
    registry.add(late)  # opened during the shutdown: ends at once
    assert late.closed


async def test_heartbeats_are_comment_lines() -> None:
    peer = Peer()
    stream = make(peer, heartbeat_s=0.01)
    serving = asyncio.ensure_future(stream.serve())
    await until(lambda: peer.text.count(": heartbeat\n\n") >= 2)
    stream.end(CloseCode.NORMAL, "bye")
    await asyncio.wait_for(serving, WAIT_S)


def test_chat_events_are_encoded_once_per_event() -> None:
    message = Event.stored("chat:r", "5-1", '{"room":"r","user":"u","text":"a\\nb","ts":1.0}')
    encoded = message.memo(sse_chat_bytes)
    assert encoded is message.memo(sse_chat_bytes)
    head, data = message.memo(sse_chat).split("data: ")
    assert head == "event: message\nid: 5-1\n"
    assert orjson.loads(data) == {"type": "message", "id": "5-1", "room": "r", "user": "u", "text": "a\nb", "ts": 1.0}
    join = Event("chat:r", None, '{"type":"join","room":"r","user":"u","ts":1.0}', (0, 0))
    assert join.memo(sse_chat) == 'event: join\ndata: {"type":"join","room":"r","user":"u","ts":1.0}\n\n'


def test_a_graphql_result_becomes_one_next_event_for_every_member() -> None:
    result = '{"data":{"x":1}}'
    assert next_event(result) is next_event(result)
    assert next_event(result) == b'event: next\ndata: {"data":{"x":1}}\n\n'


@pytest.mark.parametrize(("data", "lines"), [("one", ["data: one"]), ("a\nb", ["data: a", "data: b"])])
def test_multi_line_data_is_one_data_field_per_line(data: str, lines: list[str]) -> None:
    assert sse_event("x", data) == "event: x\n" + "\n".join(lines) + "\n\n"
