"""``api.ws.fastpath`` leans on uvicorn internals: this fails loudly when they change shape.

``HeraldWebSocketProtocol`` subclasses uvicorn's ``WebSocketsSansIOProtocol`` and reads its attributes
(``transport``, ``writable``, ``close_sent``, ``disconnected``, ``handshake_initiated``, ``response``,
``scope``, ``conn``). A uvicorn release that renames one would not break Herald outright: the frame writer
would silently be missing (every socket back on the slower queued path) or fail per connection. So the
real protocol is driven here, over an in-memory transport, through a handshake and a paused transport.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from starlette.websockets import WebSocket
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from api.metrics import Counts
from api.ws.connection import Connection
from api.ws.fastpath import HeraldWebSocketProtocol
from api.ws.frame_io import EXTENSION, FrameReader, FrameWriter, accept, text_frame
from api.ws.lean import Inbox

HANDSHAKE = (
    b"GET /ws/chat/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class MemoryTransport(asyncio.Transport):
    """What the protocol writes, kept in memory; a real socket would add nothing the shape depends on."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass  # (nothing is read from a real socket here)

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


def test_the_methods_herald_overrides_or_calls_keep_their_signatures() -> None:
    expected = {
        "data_received": ["self", "data"],
        "handle_connect": ["self", "event"],
        "handle_events": ["self"],
        "handle_text": ["self", "event"],
        "handle_bytes": ["self", "event"],
        "handle_cont": ["self", "event"],
        "handle_parser_exception": ["self"],
        "resume_writing": ["self"],
        "pause_writing": ["self"],
        "send_receive_event_to_app": ["self"],
        "send": ["self", "message"],
        "handle_close": ["self", "event"],
        "shutdown": ["self"],
        # keepalive pings (api.ws.keepalive): Herald schedules them, uvicorn sends them and keeps the pong deadline
        "start_keepalive": ["self"],
        "schedule_ping": ["self"],
        "send_keepalive_ping": ["self"],
        "stop_keepalive": ["self"],
    }
    for name, parameters in expected.items():
        method = getattr(WebSocketsSansIOProtocol, name, None)
        assert callable(method), f"uvicorn's WebSocketsSansIOProtocol has no {name}()"
        assert list(inspect.signature(method).parameters) == parameters, name
    # websockets' sans-I/O connection, read when a frame in the middle of a read is bad
    assert hasattr(Protocol, "events_received") and hasattr(ServerProtocol, "receive_data")
    assert ServerProtocol().parser_exc is None


async def test_the_real_protocol_hands_the_app_a_frame_writer_that_writes_and_pauses() -> None:
    scopes: list[dict[str, Any]] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        done.set()
        await receive()

    config = Config(app=app, ws=HeraldWebSocketProtocol, ws_per_message_deflate=False, lifespan="off")
    config.load()
    protocol = HeraldWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = MemoryTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    async with asyncio.timeout(5):
        await done.wait()
    assert b" 101 " in bytes(transport.written).split(b"\r\n", 1)[0]

    writer = scopes[0]["extensions"][EXTENSION]["writer"]
    assert isinstance(writer, FrameWriter) and protocol.frame_writer is writer
    before = len(transport.written)
    assert writer.write(text_frame(b"hello"))
    assert writer.write(text_frame(b"again"))
    await asyncio.sleep(0)  # held until the end of the loop turn, then written together (api.ws.coalesce)
    assert bytes(transport.written[before:]) == text_frame(b"hello") + text_frame(b"again")
    assert isinstance(scopes[0]["extensions"][EXTENSION]["reader"], FrameReader)

    resumed: list[bool] = []
    writer.on_resume = lambda: resumed.append(True)
    assert not writer.paused
    protocol.pause_writing()
    assert writer.paused
    protocol.resume_writing()
    assert not writer.paused and resumed == [True]

    writer.abort()
    assert transport.aborted
    protocol.connection_lost(None)
    assert not writer.write(text_frame(b"too late")), "a lost connection must refuse direct writes"
    _, running = await asyncio.wait(set(protocol.tasks), timeout=5)  # the app sees the disconnect and returns
    assert not running


async def _answered(accept_in_place: bool, offered: str) -> tuple[bytes, str]:
    """The real protocol's bytes for a handshake offering ``offered`` subprotocols, answered by a Starlette app
    that accepts ``graphql-transport-ws`` either in place (``api.ws.fastpath.accept``) or through ASGI, then
    reads one client frame and sends a welcome through ``Connection.send_now``; and the text it read."""
    received: list[str] = []
    done = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        if accept_in_place:
            await accept(websocket, "graphql-transport-ws")
        else:
            await websocket.accept(subprotocol="graphql-transport-ws")
        received.append(await websocket.receive_text())
        conn = Connection(websocket, endpoint="chat", user="ann", queue_size=10, counts=Counts())
        await conn.send_now('{"type":"welcome"}')
        done.set()
        await websocket.receive()

    config = Config(app=app, ws=HeraldWebSocketProtocol, ws_per_message_deflate=False, lifespan="off")
    config.load()
    protocol = HeraldWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = MemoryTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE[:-2] + f"Sec-WebSocket-Protocol: {offered}\r\n\r\n".encode())
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws/chat/lobby"), state=State.OPEN)  # (the 101 is checked below)
    client.send_text(b"hi")
    for _ in range(10):  # a few loop turns: the app accepts, then reads
        await asyncio.sleep(0)
    protocol.data_received(b"".join(client.data_to_send()))
    async with asyncio.timeout(5):
        await done.wait()
    await asyncio.sleep(0)  # the welcome is held until the end of the loop turn
    protocol.connection_lost(None)
    await asyncio.wait(set(protocol.tasks), timeout=5)
    return bytes(transport.written), received[0]


async def test_accepting_in_place_writes_the_same_bytes_as_accepting_through_asgi() -> None:
    offered = "graphql-ws, graphql-transport-ws"
    in_place, read_in_place = await _answered(True, offered)
    through_asgi, read_through_asgi = await _answered(False, offered)
    assert in_place == through_asgi
    status, _, rest = in_place.partition(b"\r\n")
    assert status == b"HTTP/1.1 101 Switching Protocols"
    headers, _, frames = rest.partition(b"\r\n\r\n")
    assert b"Sec-WebSocket-Protocol: graphql-transport-ws" in headers.split(b"\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in headers.split(b"\r\n")
    assert frames == text_frame(b'{"type":"welcome"}')
    assert read_in_place == read_through_asgi == "hi"


def test_an_inbox_hands_its_first_item_without_waiting() -> None:
    inbox = Inbox()
    inbox.put_nowait("connect")
    inbox.put_nowait("frame")
    assert inbox.get_nowait() == "connect"
    assert inbox.qsize() == 1
    assert inbox.get_nowait() == "frame"
    assert inbox.empty()
    with pytest.raises(IndexError):
        inbox.get_nowait()
