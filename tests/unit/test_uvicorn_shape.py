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

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.protocol import Protocol
from websockets.server import ServerProtocol

from api.ws.fastpath import EXTENSION, FrameReader, FrameWriter, HeraldWebSocketProtocol, text_frame

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
