"""A uvicorn WebSocket protocol with a "prepared frames" ASGI extension.

A server-to-client WebSocket frame is unmasked, so for one event every
recipient's frame is the same bytes. Through plain ASGI each recipient still
costs an ``await send()`` down Starlette -> uvicorn -> websockets framing ->
``transport.write``, plus a queue and a task wake-up. This protocol (uvicorn's
websockets-sansio, selected with ``Config(ws=HeraldWebSocketProtocol)``) puts a
``FrameWriter`` in ``scope["extensions"]`` so the app can frame an event once
and hand the bytes to each socket's transport synchronously (that extension's
tools, as the app holds them, are ``api.ws.frame_io``).

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

from typing import Any

from websockets.exceptions import SecurityError
from websockets.frames import Frame, Opcode

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.ws.frame_io import EXTENSION, FrameReader, FrameWriter
from api.ws.lean import LeanWebSocketProtocol


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
