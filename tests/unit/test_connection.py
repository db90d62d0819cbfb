"""``Connection`` and its two writers: the same promises, checked on each.

A socket is a real Starlette ``WebSocket`` over an in-memory ASGI peer. On the ``prepared`` side the peer also
owns a transport the ``FrameWriter`` writes to (as Herald's uvicorn protocol does, see
``test_uvicorn_shape.py`` for the real one); the frames written there are parsed back into text, so both
sides are read the same way: the texts a client would receive, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.types import Message
from starlette.websockets import WebSocket

from api.errors import CloseCode
from api.metrics import Counts
from api.ws import connection as connection_module
from api.ws.connection import Connection
from api.ws.frame_io import EXTENSION, FrameWriter
from api.ws.writers import PreparedFrameWriter, QueuedWriter, wire
from broker import Event

KINDS = ["prepared", "queued"]


def parse_frames(data: bytes) -> list[str]:
    """Unmasked server text frames back to their texts (RFC 6455 §5.2)."""
    texts, at = [], 0
    while at < len(data):
        assert data[at] == 0x81, "a final text frame"
        size, at = data[at + 1] & 0x7F, at + 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        texts.append(data[at : at + size].decode())
        at += size
    return texts


@dataclass
class Peer:
    """The client side: what it received, in order, and the close it got."""

    texts: list[str] = field(default_factory=list)
    close: tuple[int, str] | None = None
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    #: a peer that stopped reading: the close frame never leaves
    stuck: bool = False

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            self.texts.append(message["text"])
        elif message["type"] == "websocket.close":
            if self.stuck:
                await asyncio.get_running_loop().create_future()
            self.close = (message["code"], message.get("reason") or "")


class MemoryTransport:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.aborted = False
        self.writes = 0

    def write(self, frame: bytes) -> None:
        self.writes += 1
        self.peer.texts.extend(parse_frames(frame))

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


class MemoryProtocol:
    """The attributes ``FrameWriter`` reads of Herald's uvicorn protocol."""

    def __init__(self, peer: Peer) -> None:
        self.transport = MemoryTransport(peer)
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_sent = self.disconnected = False
        self.frame_writer: FrameWriter | None = None

    def close_slow_peer(self, code: CloseCode, reason: str) -> None:
        """As Herald's protocol does for a peer that stopped reading: the close frame goes behind what the
        transport already holds (which the peer finds once it reads again)."""
        self.close_sent = True
        self.transport.peer.close = (code, reason)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        if self.frame_writer is not None and self.frame_writer.on_resume is not None:
            self.frame_writer.on_resume()


@dataclass
class Socket:
    conn: Connection
    peer: Peer
    counts: Counts
    protocol: MemoryProtocol | None


async def open_socket(kind: str, queue_size: int = 3) -> Socket:
    peer = Peer()
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws/chat/r", "headers": [], "extensions": {}}
    protocol = None
    if kind == "prepared":
        protocol = MemoryProtocol(peer)
        protocol.frame_writer = FrameWriter(protocol)  # type: ignore[arg-type]
        scope["extensions"][EXTENSION] = {"writer": protocol.frame_writer}
    websocket = WebSocket(scope, peer.receive, peer.send)
    peer.inbox.put_nowait({"type": "websocket.connect"})
    await websocket.accept()
    counts = Counts()
    conn = Connection(websocket, endpoint="chat", user="ann", queue_size=queue_size, counts=counts)
    return Socket(conn, peer, counts, protocol)


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` holds (bounded: everything here is in memory, a few turns suffice)."""
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


async def test_each_server_gets_its_writer() -> None:
    assert isinstance((await open_socket("prepared")).conn.writer, PreparedFrameWriter)
    assert isinstance((await open_socket("queued")).conn.writer, QueuedWriter)


async def test_nothing_pushed_goes_out_before_start_and_send_now_comes_first(kind: str) -> None:
    socket = await open_socket(kind)
    socket.conn.push("a")
    await socket.conn.send_now("welcome")
    socket.conn.push("b")
    await until(lambda: socket.peer.texts == ["welcome"])
    socket.conn.start_writer()
    socket.conn.push("c")
    await until(lambda: len(socket.peer.texts) == 4)
    assert socket.peer.texts == ["welcome", "a", "b", "c"]
    assert socket.counts.delivered == 3


async def test_an_event_is_encoded_once_for_every_connection(kind: str) -> None:
    calls: list[Event] = []

    def encoder(event: Event) -> str:
        calls.append(event)
        return '{"type":"message","text":"' + event.data + '"}'

    sockets = [await open_socket(kind) for _ in range(3)]
    for socket in sockets:
        socket.conn.start_writer()
    event = Event("c", "1-0", "hi")
    for socket in sockets:
        socket.conn.push_event(event, encoder)
    await until(lambda: all(socket.peer.texts for socket in sockets))
    assert [socket.peer.texts for socket in sockets] == [['{"type":"message","text":"hi"}']] * 3
    assert calls == [event]


def test_the_framed_encoder_is_one_stable_function_per_encoder() -> None:
    def encoder(event: Event) -> str:
        return event.data

    assert wire(encoder) is wire(encoder)


async def test_more_frames_waiting_than_the_queue_size_closes_1013_and_frees_them(kind: str) -> None:
    socket = await open_socket(kind, queue_size=3)
    for text in "abcd":
        socket.conn.push(text)
    await until(lambda: socket.peer.close is not None)
    assert socket.peer.close == (CloseCode.TRY_AGAIN_LATER, "slow consumer: send queue overflowed")
    assert socket.counts.slow_consumers == 1 and socket.counts.delivered == 3
    socket.conn.start_writer()
    socket.conn.push("late")
    await asyncio.sleep(0)
    assert socket.peer.texts == []


async def test_put_waits_for_room_instead_of_overflowing_and_keeps_the_order(kind: str) -> None:
    socket = await open_socket(kind, queue_size=2)
    socket.conn.push("a")
    socket.conn.push("b")
    put = asyncio.create_task(socket.conn.put("c"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not put.done() and not socket.conn.closed
    socket.conn.start_writer()
    await put
    await until(lambda: len(socket.peer.texts) == 3)
    assert socket.peer.texts == ["a", "b", "c"]
    assert socket.counts.slow_consumers == 0


async def test_after_a_close_nothing_more_is_sent_or_counted(kind: str) -> None:
    socket = await open_socket(kind)
    socket.conn.start_writer()
    await socket.conn.close(CloseCode.NORMAL, "bye")
    socket.conn.push("late")
    assert socket.peer.close == (CloseCode.NORMAL, "bye")
    assert socket.peer.texts == [] and socket.counts.delivered == 0


async def test_an_expired_token_closes_the_socket_with_the_given_code(kind: str) -> None:
    socket = await open_socket(kind)
    socket.conn.expire_at(time.time() - 1, CloseCode.POLICY_VIOLATION)
    await until(lambda: socket.peer.close is not None)
    assert socket.peer.close == (CloseCode.POLICY_VIOLATION, "token expired")


async def test_no_expiry_and_an_ended_connection_set_no_timer(kind: str) -> None:
    socket = await open_socket(kind)
    socket.conn.expire_at(None, CloseCode.POLICY_VIOLATION)
    socket.conn.expire_at(time.time() + 3600, CloseCode.POLICY_VIOLATION)
    await socket.conn.end()
    assert socket.conn._expiry is not None and socket.conn._expiry.cancelled()


async def test_a_peer_that_does_not_read_its_close_is_given_up(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "CLOSE_TIMEOUT_S", 0.01)
    opened: list[Socket] = []

    async def handler() -> Message:
        opened.append(await open_socket(kind))
        opened[0].peer.stuck = True
        return await opened[0].conn.receive()

    task = asyncio.create_task(handler())
    await until(lambda: bool(opened) and opened[0].conn._receiving)
    socket = opened[0]
    socket.conn.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
    assert await task == {"type": "websocket.disconnect", "code": CloseCode.TRY_AGAIN_LATER}
    if socket.protocol is not None:
        assert socket.protocol.transport.aborted


async def test_prepared_frames_wait_while_the_transport_is_paused_and_drain_in_order_on_resume() -> None:
    socket = await open_socket("prepared", queue_size=2)
    assert socket.protocol is not None
    socket.conn.start_writer()
    socket.protocol.pause_writing()
    socket.conn.push("a")
    socket.conn.push("b")
    assert socket.peer.texts == []
    socket.protocol.resume_writing()
    socket.conn.push("c")
    await asyncio.sleep(0)  # frames go out at the end of the loop turn (api.ws.coalesce)
    assert socket.peer.texts == ["a", "b", "c"]
    socket.protocol.pause_writing()
    for text in "xyz":
        socket.conn.push(text)
    await until(lambda: socket.peer.close is not None)
    assert socket.peer.close is not None and socket.peer.close[0] == CloseCode.TRY_AGAIN_LATER


async def test_a_prepared_frame_writer_writes_nothing_once_the_server_is_closing() -> None:
    socket = await open_socket("prepared")
    assert socket.protocol is not None
    socket.conn.start_writer()
    socket.protocol.close_sent = True
    socket.conn.push("late")
    assert socket.peer.texts == []


async def test_events_handed_over_in_one_loop_turn_leave_in_one_write_per_socket_in_order() -> None:
    sockets = [await open_socket("prepared", queue_size=10) for _ in range(3)]
    events = [Event.stored("chat:r", f"1-{i}", f'{{"text":"{i}"}}') for i in range(4)]
    for socket in sockets:
        socket.conn.start_writer()
    for event in events:  # one batched pub/sub read: several events in one turn
        for socket in sockets:
            socket.conn.push_event(event, lambda e: e.data)
    await asyncio.sleep(0)
    for socket in sockets:
        assert socket.protocol is not None
        assert socket.peer.texts == [e.data for e in events]
        assert socket.protocol.transport.writes == 1


async def test_send_now_on_prepared_frames_waits_while_the_transport_is_paused() -> None:
    socket = await open_socket("prepared")
    assert socket.protocol is not None
    socket.protocol.pause_writing()
    sent = asyncio.create_task(socket.conn.send_now("welcome"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert socket.peer.texts == [] and not sent.done()
    socket.protocol.resume_writing()
    await asyncio.wait_for(sent, 5)
    await until(lambda: socket.peer.texts == ["welcome"])


async def test_send_now_on_prepared_frames_raises_once_the_peer_is_gone_or_the_socket_closing() -> None:
    socket = await open_socket("prepared")
    assert socket.protocol is not None
    socket.protocol.disconnected = True
    with pytest.raises(OSError):
        await socket.conn.send_now("welcome")
    socket = await open_socket("prepared")
    assert socket.protocol is not None
    socket.protocol.close_sent = True
    with pytest.raises(RuntimeError):
        await socket.conn.send_now("welcome")
    await asyncio.sleep(0)
    assert socket.peer.texts == []
