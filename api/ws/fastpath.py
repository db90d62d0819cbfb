"""A uvicorn WebSocket protocol with a "prepared frames" ASGI extension.

A server-to-client WebSocket frame is unmasked, so for one event every
recipient's frame is the same bytes. Through plain ASGI each recipient still
costs an ``await send()`` down Starlette -> uvicorn -> websockets framing ->
``transport.write``, plus a queue and a task wake-up. This protocol (uvicorn's
websockets-sansio, selected with ``Config(ws=HeraldWebSocketProtocol)``) puts a
``FrameWriter`` in ``scope["extensions"]`` so the app can frame an event once
and hand the bytes to each socket's transport synchronously.

It builds on ``api.ws.lean.LeanWebSocketProtocol``: uvicorn's protocol with less held per idle socket.

Under any other server the extension is absent and ``Connection`` falls back to
its queue and writer task: same behaviour, more CPU.

Direct writes are only safe without per-connection compression, so Herald runs
uvicorn with ``ws_per_message_deflate=False``; a connection that negotiated an
extension anyway gets no writer.

Two hardening duties live here too, where the frames are (SPEC §8):

- Control frames count toward the send bound. Every ping is answered with a pong
  written straight to the transport, so a peer that pings and never reads would
  make the replica buffer pongs without end. Once the transport is paused (its
  buffer over the high-water mark), pongs answered are counted; past
  ``send_bound`` (``HERALD_SEND_QUEUE``) the peer is closed 1013 like any slow
  consumer: the close frame follows what is buffered, nothing more is read, and
  the TCP connection is cut after ``slow_close_s``.
- A handshake websockets cannot parse (a header line over 8 KiB: a long
  ``?token=``, a big cookie; more than 128 headers) is answered 431 (400 for
  other junk) and closed, instead of silence until the peer gives up.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketState
from uvicorn.protocols.utils import ClientDisconnected
from websockets.exceptions import SecurityError
from websockets.frames import Frame, Opcode

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.ws.coalesce import flusher_for
from api.ws.lean import LeanWebSocketProtocol

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


class HeraldWebSocketProtocol(LeanWebSocketProtocol):
    __slots__ = ("frame_reader", "frame_writer", "lingering", "unread_pongs")  # per socket (api.ws.lean)
    #: pongs answered while the transport is paused before the peer is closed 1013 (``HERALD_SEND_QUEUE``)
    send_bound: int = 1000
    #: seconds a closed slow peer keeps its TCP connection to read what is buffered (``HERALD_SLOW_CLOSE_S``)
    slow_close_s: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.frame_writer: FrameWriter | None = None
        self.frame_reader: FrameReader | None = None
        #: pongs answered since the transport was last paused
        self.unread_pongs = 0
        #: closed as a slow peer: input is dropped, the connection ends when the peer closes or is cut
        self.lingering = False
        super().__init__(*args, **kwargs)
        # websockets logs every frame and handshake header at DEBUG: tokens, Authorization headers and
        # connection_init payloads (truncated past what redaction can recognise). Never (SPEC §7).
        self.conn.debug = False

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return
        self.conn.receive_data(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_handshake(self.conn.handshake_exc)
            return
        if self.conn.parser_exc is None:
            self.handle_events()
            return
        # uvicorn drops every frame of this read when a later one is bad (say, over ws_max_size):
        # the complete messages before it were valid and are handed to the app first.
        for event in self.conn.events_received():
            if isinstance(event, Frame) and not self.close_sent:
                if event.opcode is Opcode.TEXT:
                    self.handle_text(event)
                elif event.opcode is Opcode.BINARY:
                    self.handle_bytes(event)
                elif event.opcode is Opcode.CONT:
                    self.handle_cont(event)
        if not self.close_sent:
            self.handle_parser_exception()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The ASGI task is created above but has not run yet, so the scope can still be extended.
        if (
            self.handshake_initiated
            and not self.close_sent
            and not self.response.headers.get_all("Sec-WebSocket-Extensions")
        ):
            self.frame_writer = FrameWriter(self)
            self.frame_reader = FrameReader(self)
            self.scope["extensions"][EXTENSION] = {
                "writer": self.frame_writer,
                "reader": self.frame_reader,
                "accept": self.accept_now,
            }

    def _flush_held(self) -> None:
        writer = self.frame_writer
        if writer is not None:
            writer.flush()

    async def send(self, message: Any) -> None:
        self._flush_held()  # frames held this turn go before what the application sends itself
        if message["type"] == "websocket.close" and self.frame_reader is not None:
            self.frame_reader.detach()
        await super().send(message)

    def send_receive_event_to_app(self) -> None:
        reader = self.frame_reader
        text = self.curr_msg_data_type == "text"
        if reader is None or self.close_sent or (reader.on_text if text else reader.on_bytes) is None:
            super().send_receive_event_to_app()
            return
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        try:
            if text:
                assert reader.on_text is not None
                reader.on_text(data.decode())  # (websockets checked the UTF-8)
            else:
                assert reader.on_bytes is not None
                reader.on_bytes(data)
        except Exception:  # the application's bug costs this frame, never the protocol's state
            self.logger.exception("a client frame's handler failed")

    def handle_close(self, event: Frame) -> None:
        self._flush_held()
        super().handle_close(event)

    def shutdown(self) -> None:
        self._flush_held()
        # uvicorn closes every open socket 1012 with an empty reason when the server stops; a client's
        # log should say why and what to do, as every other close Herald sends does.
        if self.handshake_complete and not self.close_sent:
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": CloseCode.SERVICE_RESTART})
            self.conn.send_close(CloseCode.SERVICE_RESTART, CLOSE_CODE_EXPLANATIONS[CloseCode.SERVICE_RESTART])
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        super().shutdown()

    def _refuse_handshake(self, exc: Exception) -> None:
        too_large = isinstance(exc.__cause__, SecurityError)
        status, reason = (431, "Request Header Fields Too Large") if too_large else (400, "Bad Request")
        body = f"invalid WebSocket handshake: {exc.__cause__ or exc}".encode()
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def handle_ping(self) -> None:
        if self.close_sent:
            self.conn.data_to_send()  # closing: the pong is dropped, not buffered
            return
        if not self.writable.is_set():  # the peer is not reading what we write
            self.unread_pongs += 1
            if self.unread_pongs > self.send_bound:
                self.close_slow_peer(CloseCode.TRY_AGAIN_LATER, "slow consumer: control frames not read")
                return
        super().handle_ping()

    def close_slow_peer(self, code: CloseCode, reason: str) -> None:
        """``code`` after what is buffered, then a lingering close; TCP cut after ``slow_close_s`` if still unread.

        Closing the socket while the peer's unread pings sit in our receive buffer would make the kernel send
        a reset, discarding the backlog and the close frame. So reading stops until everything we wrote has
        left (the peer reads again), then our side is shut (FIN after the close frame) and whatever arrives
        is read and dropped until the peer closes.
        """
        self._flush_held()
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self.lingering = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.stop_keepalive()
        self.read_paused = False  # so that the application's receive() does not resume reading
        self.transport.pause_reading()
        self.transport.set_write_buffer_limits(high=self.transport.get_write_buffer_limits()[1], low=0)
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.close_timer = self.loop.call_later(self.slow_close_s, self.transport.abort)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.unread_pongs = 0

    def resume_writing(self) -> None:
        if self.lingering and not self.transport.is_closing():
            # everything we wrote, the close frame last, has left: FIN, and drain the peer's input
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.resume_reading()
        super().resume_writing()
        writer = self.frame_writer
        if writer is not None and writer.on_resume is not None:
            writer.on_resume()
