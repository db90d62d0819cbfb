"""How ``herald serve`` meets the network: uvicorn's protocol classes, configured from the settings.

- ``HeraldHttpProtocol`` (uvicorn's httptools protocol) closes a connection that has not sent a complete
  request, head and body, within ``HERALD_HANDSHAKE_TIMEOUT_S`` (nothing sent, a partial head, a partial
  WebSocket handshake, a partial body: a slowloris holds a file descriptor, not a replica), and answers a
  request head over ``MAX_HEAD_BYTES`` with 431 and a close instead of buffering it.
- ``HeraldWebSocketProtocol`` (api.ws.fastpath) bounds control frames and answers a bad handshake.
- ``TrustedProxies`` (api.proxy) believes ``X-Forwarded-*`` from ``HERALD_TRUSTED_PROXIES`` only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.settings import Settings
from api.ws.fastpath import HeraldWebSocketProtocol

#: largest request line plus headers accepted over HTTP (bytes); larger is 431 and a closed connection.
#: (WebSocket handshakes are held to websockets' own 8 KiB per line and 128 headers, also answered 431.)
MAX_HEAD_BYTES = 64 * 1024

#: after a refusal, input is read and dropped this long before the close, so that the peer (still
#: sending its oversized head) reads the answer instead of a TCP reset (a "lingering close")
LINGER_S = 2.0

_END_OF_HEAD = b"\r\n\r\n"


def response(status: int, reason: str, detail: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a plain-text body."""
    body = detail.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class HeraldHttpProtocol(HttpToolsProtocol):
    handshake_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True
        self._tail = b""
        self._refused = False
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: dropped
        if self._in_head:
            seen = self._tail + data
            end = seen.find(_END_OF_HEAD)
            self._head_bytes += (end + len(_END_OF_HEAD) - len(self._tail)) if end >= 0 else len(data)
            self._tail = seen[-(len(_END_OF_HEAD) - 1) :]
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, "Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        if self._deadline is None:
            self._arm()  # the next request on a kept-alive connection, pipelined ones included
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol takes over the connection
        super().handle_websocket_upgrade()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.handshake_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is being written: a 408 cannot be put in the middle of it
        elif self._head_bytes or (cycle is not None and not cycle.response_started):
            self._refuse(408, "Request Timeout", f"request not complete within {self.handshake_timeout_s} s")
        else:
            self.transport.close()  # nothing was sent: nothing to answer

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._disarm()
        self._refused = True
        self.transport.write(response(status, reason, detail))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application, if it runs, sees the client gone
            self.cycle.message_event.set()


def protocols(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments: Herald's HTTP and WebSocket protocol classes for these settings."""
    http = type("HttpProtocol", (HeraldHttpProtocol,), {"handshake_timeout_s": settings.handshake_timeout_s})
    ws = type(
        "WebSocketProtocol",
        (HeraldWebSocketProtocol,),
        {
            "send_bound": settings.send_queue,
            "slow_close_s": settings.slow_close_s,
        },
    )
    return {"http": http, "ws": ws}
