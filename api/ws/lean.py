"""The two asyncio objects uvicorn's WebSocket protocol keeps per socket, in the size an idle socket needs.

uvicorn's ``WebSocketsSansIOProtocol`` makes, per connection, an ``asyncio.Queue`` (the ASGI receive queue:
three deques and an ``asyncio.Event`` with a fourth) and an ``asyncio.Event`` (``writable``: a fifth deque).
A deque is ~760 bytes however empty, so that is ~4 KB of a socket that, once its handler reads frames
straight from the protocol (``api.ws.fastpath.FrameReader``), queues nothing but its ``connect`` and its
``disconnect``. ``Inbox`` and ``Gate`` do what the protocol asks of those two (``put_nowait``, ``get``,
``empty``; ``set``, ``clear``, ``is_set``, ``wait``) with the same semantics, holding a list only while
something waits in it.
"""

from __future__ import annotations

import asyncio
from typing import Any


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
