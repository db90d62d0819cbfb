"""uvicorn's keepalive pings from one timer per second of a loop, not one timer per socket.

uvicorn (``ws_ping_interval``, 20 s by default) arms each socket's next ping with its own ``loop.call_later``:
on uvloop a ``TimerHandle`` and a libuv timer, ~0.5 KB of every idle socket. Herald's protocol
(``api.ws.lean.LeanWebSocketProtocol``) puts the socket in this loop's ``PingWheel`` instead: the sockets due
in the same second share one timer, so a ping leaves up to a second later than the interval says (20-21 s
instead of 20 s). The pong deadline (``ws_ping_timeout``), armed only while a ping is unanswered, stays
uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Protocol

from api.ws.loop_local import LoopLocal

log = logging.getLogger(__name__)


class Pinged(Protocol):
    def ping_due(self) -> None:
        """Send the keepalive ping now (the wheel has forgotten this socket)."""


class PingWheel:
    __slots__ = ("_due", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        #: loop time (whole seconds) -> the sockets to ping then; each second held has one loop timer
        self._due: dict[int, set[Pinged]] = {}

    def add(self, socket: Pinged, delay: float) -> int:
        """Ping ``socket`` after ``delay`` seconds, rounded up to the second; the tick is what ``discard`` takes."""
        tick = math.ceil(self._loop.time() + delay)
        due = self._due.get(tick)
        if due is None:
            due = self._due[tick] = set()
            self._loop.call_at(tick, self._fire, tick)
        due.add(socket)
        return tick

    def discard(self, socket: Pinged, tick: int) -> None:
        due = self._due.get(tick)
        if due is not None:
            due.discard(socket)

    def _fire(self, tick: int) -> None:
        for socket in self._due.pop(tick, ()):
            try:
                socket.ping_due()
            except Exception:  # one broken socket must not cost the others their pings
                log.exception("a keepalive ping failed")


#: ``ping_wheel(loop)``: the one wheel of ``loop``
ping_wheel: LoopLocal[PingWheel] = LoopLocal(PingWheel)
