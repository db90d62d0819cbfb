"""How ``herald serve`` meets the network: ``replica(settings)``, the uvicorn server it runs (tests run it
in-process too), with Herald's protocol classes configured from the settings.

- ``HeraldHttpProtocol`` (uvicorn's httptools protocol) closes a connection that has not sent a complete
  request, head and body, within ``HERALD_HANDSHAKE_TIMEOUT_S`` (nothing sent, a partial head, a partial
  WebSocket handshake, a partial body: a slowloris holds a file descriptor, not a replica), and answers a
  request head over ``MAX_HEAD_BYTES`` with 431 and a close instead of buffering it.
- ``HeraldWebSocketProtocol`` (api.ws.fastpath) bounds control frames and answers a bad handshake.
- ``TrustedProxies`` (api.proxy) believes ``X-Forwarded-*`` from ``HERALD_TRUSTED_PROXIES`` only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.proxy import TrustedProxies
from api.settings import Settings
from api.ws.fastpath import HeraldWebSocketProtocol

log = logging.getLogger("herald")

#: largest request line plus headers accepted over HTTP (bytes); larger is 431 and a closed connection.
#: (WebSocket handshakes are held to websockets' own 8 KiB per line and 128 headers, also answered 431.)
MAX_HEAD_BYTES = 64 * 1024

#: after a refusal, input is read and dropped this long before the close, so that the peer (still
#: sending its oversized head) reads the answer instead of a TCP reset (a "lingering close")
LINGER_S = 2.0

_END_OF_HEAD = b"\r\n\r\n"

#: allocations between young-generation collections once the process is set up (CPython's default: 700);
#: fewer, larger young collections, and during a connect storm no full collection at all (README, W3)
YOUNG_GC_THRESHOLD = 10_000


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


def replica(settings: Settings) -> uvicorn.Server:
    """The server ``herald serve`` runs (on a socket from ``listen``); tests run it in-process too."""
    from api.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        # X-Forwarded-* believed from HERALD_TRUSTED_PROXIES only (not uvicorn's proxy_headers: see api.proxy)
        TrustedProxies(app, settings.trusted_proxies),
        interface="asgi3",  # TrustedProxies.__call__ returns the app's awaitable (not a coroutine function)
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools and websockets-sansio (which enforces ws_max_size with 1009; wsproto does not), as
        # subclasses: handshake timeout, head limit, bounded pongs, Herald's prepared-frame writer.
        # Per-message deflate would make every recipient's frame different bytes (and cost a compressor
        # per socket), so it is off.
        **protocols(settings),
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,
        # Part of the grace period for sockets and handlers; the rest is for the lifespan shutdown.
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s * 0.6)),
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return _Server(config, settings.shutdown_grace_s, lambda: _drain_streams(app))


def settle_heap() -> None:
    """The process is set up (modules imported, the app built): what exists now lives as long as it does, so
    the cyclic garbage collector stops scanning it (``gc.freeze``). Without this every full collection walks
    the whole start-up heap again: during a connect storm (W3) the gen-2 collections, triggered as the new
    sockets' objects pile up, measured ~0.4-0.6 s of the ~2 s of CPU 2,000 connects cost (README, W3).
    Young collections then run every ``YOUNG_GC_THRESHOLD`` allocations instead of 700: a connect allocates
    a few hundred objects that mostly live as long as the socket, which at 700 were each rescanned by
    several young and middle collections and then promoted towards full ones (another ~0.1 s per 2,000)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def _drain_streams(app: Any) -> None:
    """SSE streams are HTTP responses: uvicorn would wait for them until its graceful timeout and then
    cut them. End them as shutdown begins, as sockets get 1012, so their clients resume elsewhere at once."""
    state = getattr(app.state, "herald", None)
    if state is not None:
        state.sse.drain()


class _Server(uvicorn.Server):
    """uvicorn's server with a hard deadline: told to stop, it exits within the grace period even
    if a handler or the lifespan shutdown hangs (e.g. on a Redis that stopped answering)."""

    def __init__(self, config: uvicorn.Config, grace_s: float, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._grace_s = grace_s
        self._on_shutdown = on_shutdown
        self._watchdog: threading.Timer | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            # A little early, so that "within the grace period" holds despite scheduling delays.
            self._watchdog = threading.Timer(self._grace_s * 0.9, _force_exit, args=(self._grace_s,))
            self._watchdog.daemon = True
            self._watchdog.start()
        super().handle_exit(sig, frame)


def _force_exit(grace_s: float) -> None:
    log.error("shutdown would outlast HERALD_SHUTDOWN_GRACE_S=%s; exiting now", grace_s)
    sys.stderr.flush()
    os._exit(0)
