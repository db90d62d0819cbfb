"""One ``transport.write`` per socket per loop turn, however many events it was handed in that turn.

A batched pub/sub read (``broker.replies``) hands the fan-out several events at once; written one by one,
each would cost every recipient a ``transport.write``, i.e. a ``send()`` system call (uvloop writes at once
while its buffer is empty). Instead a socket's prepared frames are held for the rest of the turn and the
first frame it holds registers it here; at the end of the turn (one ``loop.call_soon`` for all sockets)
each writes what it holds as one buffer. Nothing is encoded per socket and nothing awaits: the fan-out
loop only appends bytes to a list.

A socket that is about to write anything else (a close frame, a pong, a frame sent through ASGI) flushes
first (``api.ws.fastpath``), so held frames never overtake or trail what follows them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from api.ws.loop_local import LoopLocal

log = logging.getLogger(__name__)


class Holder(Protocol):
    def flush(self) -> None:
        """Write what is held, if anything."""


class Flusher:
    """The sockets holding frames this loop turn; flushed once, in the next turn of the loop."""

    __slots__ = ("_dirty", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Holder] = []

    def add(self, holder: Holder) -> None:
        """``holder`` started holding frames this turn (called once per turn per socket)."""
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(holder)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for holder in dirty:
            try:
                holder.flush()
            except Exception:  # one broken socket must not cost the others their frames
                log.exception("flushing a socket's frames failed")


#: ``flusher_for(loop)``: the one flusher of ``loop``
flusher_for: LoopLocal[Flusher] = LoopLocal(Flusher)
