"""uvicorn's websockets-sansio protocol, with what an idle socket holds cut down (README, W3: 25.4 -> 13.9 KB).

Measured with tracemalloc, most of an idle chat socket was uvicorn's protocol, not Herald's state:

- an ``asyncio.Queue`` (the ASGI receive queue: three deques and an ``asyncio.Event`` with a fourth) and an
  ``asyncio.Event`` (``writable``: a fifth deque). A deque is ~760 bytes however empty: ~4 KB for a socket
  that, once its handler reads frames straight from the protocol (``api.ws.frame_io.FrameReader``), queues
  nothing but its ``connect`` and ``disconnect``. ``Inbox`` and ``Gate`` do what the protocol asks of those
  two with the same semantics, holding a list only while something waits in it;
- an instance dict of 37 attributes: past 30 it stops sharing its keys with the class (1.6 KB instead of
  ~0.3). The per-connection ones live in slots; what every socket shares (config, loop, logger...) stays;
- the handshake's request and response, headers and all (~2.5 KB), never read once it is answered;
- a keepalive timer per socket (~0.5 KB on uvloop): pings come from one timer per second (api.ws.keepalive).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected, get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers

from api.ws.keepalive import ping_wheel

#: what an answered handshake request is left holding (never mutated)
_NO_HEADERS = Headers()


class Inbox:
    """An unbounded FIFO with ``asyncio.Queue``'s ``put_nowait``/``get``/``empty``/``qsize``.

    As with ``asyncio.Queue``, an item stays queued until a getter takes it: a getter cancelled after it was
    woken loses nothing (the next getter is woken instead).
    """

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake_next()

    def get_nowait(self) -> Any:
        """The first item, taken; ``IndexError`` when there is none (``asyncio.Queue`` raises ``QueueEmpty``)."""
        items = self._items
        if not items:
            raise IndexError("the inbox is empty")
        item = items.pop(0)
        if not items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = [getter]
            else:
                self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()  # (a no-op if it was woken)
                self._forget(getter)
                if self._items and not getter.cancelled():
                    self._wake_next()  # it was woken for an item it will not take: the next getter takes it
                raise
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                break
        if not getters:
            self._getters = None

    def _forget(self, getter: asyncio.Future[None]) -> None:
        getters = self._getters
        if getters is not None and getter in getters:
            getters.remove(getter)
            if not getters:
                self._getters = None


class Gate:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``; starts set (uvicorn's ``writable`` does)."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        if not self._open:
            self._open = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    __slots__ = (
        "close_sent",
        "close_timer",
        "conn",
        "curr_msg_data_type",
        "disconnected",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "last_ping_rtt",
        "pending_ping_payload",
        "ping_sent_at",
        "ping_tick",
        "ping_timer",
        "pong_timer",
        "queue",
        "read_paused",
        "request",
        "response",
        "scope",
        "transport",
        "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: when the next keepalive ping is due (a ``PingWheel`` tick); None: not scheduled
        self.ping_tick: int | None = None
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Gate()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and self.response is not None:
            self._forget_handshake()

    def _forget_handshake(self) -> None:
        # The handshake is answered: its headers are not read again (the scope has its own copy).
        # websockets' parser keeps the request object itself, so it is emptied.
        self.request.headers = _NO_HEADERS
        self.response = None  # type: ignore[assignment]

    def accept_now(self, subprotocol: str | None) -> bool:
        """The application's ``accept()`` answered synchronously: the ``websocket.connect`` message taken off
        the queue and the 101 written as uvicorn's ``send({"type": "websocket.accept"})`` writes it (same
        headers: the server's defaults, the chosen subprotocol), without the two ASGI rounds (receive, then
        send, through Starlette) and the access-log arguments formatted for a disabled log. False (nothing
        done) in any state but a fresh handshake: the caller accepts the ASGI way. Raises uvicorn's
        ``ClientDisconnected`` when the peer is gone, as its ``send`` does."""
        if self.disconnected:
            raise ClientDisconnected()
        queue = self.queue
        if self.handshake_complete or self.response is None or not self.writable.is_set() or queue.empty():
            return False
        if queue.get_nowait()["type"] != "websocket.connect":  # (it is queued first, before the task starts)
            raise RuntimeError("the websocket.connect message was not first in the queue")
        if self.read_paused and queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(
                '%s - "WebSocket %s" [accepted]', get_client_addr(self.scope), get_path_with_query_string(self.scope)
            )
        headers = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in self.default_headers]
        if subprotocol:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        response = self.response
        del response.headers["Date"]
        response.headers.update(headers)
        if not self.transport.is_closing():
            self.handshake_complete = True
            self.conn.send_response(response)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.start_keepalive()
            self._forget_handshake()
        return True

    # -- keepalive: uvicorn sends the pings and keeps the pong deadline; the wheel says when

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        self.ping_tick = ping_wheel(self.loop).add(self, max(0.0, self.ping_interval - self.last_ping_rtt))

    def ping_due(self) -> None:
        self.ping_tick = None
        self.send_keepalive_ping()

    def stop_keepalive(self) -> None:
        if self.ping_tick is not None:
            ping_wheel(self.loop).discard(self, self.ping_tick)
            self.ping_tick = None
        super().stop_keepalive()
