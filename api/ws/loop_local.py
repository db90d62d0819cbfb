"""One object per event loop, made on first use.

The frame flusher (``api.ws.coalesce``) and the keepalive wheel (``api.ws.keepalive``) are each one per
loop: a replica runs one loop, but tests run many loops in one process, and an object bound to a
closed loop must not be handed to the next one (nor kept alive by it: the map holds loops weakly).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """``LoopLocal(make)(loop)``: the one ``make(loop)`` of ``loop``."""

    __slots__ = ("_by_loop", "_make")

    def __init__(self, make: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._make = make
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def __call__(self, loop: asyncio.AbstractEventLoop) -> T:
        made = self._by_loop.get(loop)
        if made is None:
            made = self._by_loop[loop] = self._make(loop)
        return made
