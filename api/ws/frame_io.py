"""What the application holds of Herald's uvicorn protocol (``api.ws.fastpath``): the "prepared frames"
ASGI extension's three tools, for a socket that protocol serves.

- ``FrameWriter``: prepared frames (``text_frame``: framed once per event, the same bytes for every
  recipient) written to the transport synchronously, coalesced per loop turn (``api.ws.coalesce``);
- ``FrameReader``: client frames handed over as they are parsed, without the ASGI receive queue;
- ``accept``: the handshake answered in place, without Starlette's receive/send rounds.

Each is found in ``scope["extensions"][EXTENSION]``; under any other server it is absent and the
application takes the plain ASGI path (``api.ws.writers``).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketState
from uvicorn.protocols.utils import ClientDisconnected

from api.errors import CloseCode
from api.ws.coalesce import flusher_for

if TYPE_CHECKING:
    from api.ws.fastpath import HeraldWebSocketProtocol

EXTENSION = "herald.frame_writer"

_OP_TEXT_FIN = 0x81


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, unfragmented text frame (RFC 6455 §5.2) around ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((_OP_TEXT_FIN, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", _OP_TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _OP_TEXT_FIN, 127, size) + payload


class FrameWriter:
    """Writes prepared frames to one connection's transport: held until the end of the loop turn, then
    written together (``api.ws.coalesce``), so a socket handed several events at once costs one write."""

    __slots__ = ("_flusher", "_held", "_protocol", "on_resume")

    def __init__(self, protocol: HeraldWebSocketProtocol) -> None:
        self._protocol = protocol
        self._flusher = flusher_for(asyncio.get_running_loop())
        self._held: list[bytes] | None = None
        #: called (synchronously) when the transport drained below its low-water mark
        self.on_resume: Callable[[], None] | None = None

    @property
    def paused(self) -> bool:
        """The transport's buffer is over its high-water mark: queue instead of writing."""
        return not self._protocol.writable.is_set()

    def abort(self) -> None:
        """Cut the TCP connection at once (a peer that never reads would otherwise hold it open)."""
        self._protocol.transport.abort()

    def close_behind(self, code: CloseCode, reason: str) -> bool:
        """While the peer is not reading: the close frame goes right behind what the transport holds, so a
        peer that reads again sees that backlog then ``code``; its TCP connection is cut after
        ``HERALD_SLOW_CLOSE_S`` if it never does. False (nothing done) when the peer reads or it is closing."""
        protocol = self._protocol
        if not self.paused or protocol.close_sent or protocol.disconnected:
            return False
        protocol.close_slow_peer(code, reason)
        return True

    def write(self, frame: bytes) -> bool:
        """Write one prepared frame (at the end of this loop turn); False when the connection is closing."""
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected:
            return False
        held = self._held
        if held is None:
            self._held = [frame]
            self._flusher.add(self)
        else:
            held.append(frame)
        return True

    async def send(self, frame: bytes) -> None:
        """``frame`` as the application's own ``send`` would write it (the welcome, a replay): once the transport
        takes more, raising as uvicorn does when the peer is gone (``ClientDisconnected``, an ``OSError``) and as
        Starlette does once the socket is closing (``RuntimeError``), but held and written
        with the rest of this loop turn instead of through ASGI and websockets' framing."""
        protocol = self._protocol
        if not protocol.writable.is_set():
            await protocol.writable.wait()
        if protocol.disconnected:
            raise ClientDisconnected()
        if not self.write(frame):
            raise RuntimeError('Cannot call "send" once a close message has been sent.')

    def flush(self) -> None:
        """Write what this turn held, as one buffer (before anything else is written to the socket)."""
        held, self._held = self._held, None
        if held is None:
            return
        protocol = self._protocol
        if protocol.close_sent or protocol.disconnected or protocol.transport.is_closing():
            return
        protocol.transport.write(held[0] if len(held) == 1 else b"".join(held))


class FrameReader:
    """Client frames handed to the application as they are parsed, synchronously, instead of through the
    ASGI receive queue (a queue put, a pause and resume of reading, a task wake-up and Starlette's receive
    per frame). The application sets ``on_text``/``on_bytes``; until it does, frames take the ASGI path.
    It bounds its own work: ``pause()`` stops reading from the socket until ``resume()``."""

    __slots__ = ("_paused", "_protocol", "on_bytes", "on_text")

    def __init__(self, protocol: HeraldWebSocketProtocol) -> None:
        self._protocol = protocol
        self._paused = False
        self.on_text: Callable[[str], None] | None = None
        self.on_bytes: Callable[[bytes], None] | None = None

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._protocol.transport.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            protocol = self._protocol
            if not protocol.lingering and not protocol.transport.is_closing():
                protocol.transport.resume_reading()

    def detach(self) -> None:
        """The application is closing the socket: frames go back to the ASGI path, reading resumes."""
        self.on_text = self.on_bytes = None
        self.resume()


def frame_reader(websocket: Any) -> FrameReader | None:
    """The socket's ``FrameReader`` when Herald's protocol serves it (else frames come through ASGI)."""
    extension = websocket.scope.get("extensions", {}).get(EXTENSION)
    return extension.get("reader") if extension is not None else None


async def accept(websocket: WebSocket, subprotocol: str | None = None) -> None:
    """``websocket.accept(subprotocol)``, answered by Herald's protocol in place when it serves the socket."""
    extension = websocket.scope.get("extensions", {}).get(EXTENSION)
    if (
        extension is not None
        and websocket.client_state is WebSocketState.CONNECTING
        and websocket.application_state is WebSocketState.CONNECTING
        and extension["accept"](subprotocol)
    ):
        websocket.client_state = websocket.application_state = WebSocketState.CONNECTED
        return
    await websocket.accept(subprotocol)
