"""Keepalive pings on Herald's protocol come from one timer per second for all sockets (``api.ws.keepalive``),
with uvicorn's behaviour: a ping every ``ws_ping_interval`` (rounded up to the second), the socket failed with
1011 when a ping goes unanswered for ``ws_ping_timeout``, a socket let go as soon as its connection is."""

from __future__ import annotations

import asyncio
import gc
import struct
import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from api.ws.fastpath import HeraldWebSocketProtocol
from tests.helpers.chat import masked_frame
from tests.unit.test_uvicorn_shape import HANDSHAKE, MemoryTransport

TIMEOUT_S = 5.0
POLL_S = 0.01
PING, PONG = 0x9, 0xA


async def _open(ping_timeout: float) -> tuple[HeraldWebSocketProtocol, MemoryTransport]:
    accepted = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        accepted.set()
        while (await receive())["type"] != "websocket.disconnect":
            pass

    config = Config(
        app=app,
        ws=HeraldWebSocketProtocol,
        ws_per_message_deflate=False,
        ws_ping_interval=0.1,
        ws_ping_timeout=ping_timeout,
        lifespan="off",
    )
    config.load()
    protocol = HeraldWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = MemoryTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    async with asyncio.timeout(TIMEOUT_S):
        await accepted.wait()
    del transport.written[: transport.written.index(b"\r\n\r\n") + 4]  # the 101 response
    return protocol, transport


async def _until(done: Callable[[], bool], what: str) -> None:
    for _ in range(int(TIMEOUT_S / POLL_S)):
        if done():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"no {what} within {TIMEOUT_S} s")


async def _next_ping(transport: MemoryTransport) -> bytes:
    """The payload of the next ping frame the server writes (unmasked: 0x89, length, payload)."""
    await _until(lambda: len(transport.written) >= 6, "a ping")
    frame = bytes(transport.written[:6])
    del transport.written[:6]
    assert frame[0] == 0x80 | PING and frame[1] == 4, frame
    return frame[2:]


async def test_an_answered_socket_is_pinged_again_and_again() -> None:
    protocol, transport = await _open(ping_timeout=5.0)
    for _ in range(2):
        payload = await _next_ping(transport)
        protocol.data_received(masked_frame(PONG, payload))
    await _next_ping(transport)
    assert not transport.closed
    protocol.connection_lost(None)


async def test_a_ping_left_unanswered_fails_the_socket_with_1011() -> None:
    protocol, transport = await _open(ping_timeout=0.2)
    await _next_ping(transport)
    await _until(lambda: transport.closed, "the socket failed")
    assert transport.written[0] == 0x88  # a close frame...
    (code,) = struct.unpack("!H", transport.written[2:4])
    assert code == 1011 and b"keepalive ping timeout" in transport.written
    protocol.connection_lost(None)


async def test_a_lost_connection_is_let_go_at_once() -> None:
    protocol, transport = await _open(ping_timeout=5.0)
    protocol.data_received(masked_frame(PONG, await _next_ping(transport)))  # the next ping is in the wheel
    protocol.connection_lost(None)
    async with asyncio.timeout(TIMEOUT_S):
        await asyncio.gather(*protocol.tasks)  # the app saw the disconnect and returned
    gone = weakref.ref(protocol)
    del protocol
    gc.collect()
    assert gone() is None, "the wheel still holds a closed socket until its ping is due"
