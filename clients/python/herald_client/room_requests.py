"""Requests on a room's socket (``send``, ``presence``): each is answered once, or fails clearly.

A request stays pending until answered: written on the current connection if there is one,
and re-sent, in order, on every new connection (a ``message`` keeps its idempotency key, so
the server publishes it at most once). The server handles one frame of a socket at a time,
so answers without a key (``error``, ``presence``, ``pong``) come back in request order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from herald_client.core import Frame, ReconnectPolicy
from herald_client.errors import OutcomeUnknown, RequestRefused, Unavailable

#: an ``unavailable`` detail that means "maybe published" (SPEC §8)
_UNKNOWN_HINTS = ("unknown", "may or may not")


@dataclass(eq=False)
class _Request:
    frame: str
    key: str | None
    future: asyncio.Future[Frame]
    #: handed to a socket at least once
    written: bool = field(default=False)


class Requests:
    def __init__(self, policy: ReconnectPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._pending: deque[_Request] = deque()
        self._inflight: deque[_Request] = deque()
        self._write_lock = asyncio.Lock()
        self._ws: ClientConnection | None = None

    async def call(self, frame: Frame, key: str | None) -> Frame:
        """Send ``frame`` (now, or on the next connection) and return its answer; retries as the policy says."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.request_timeout_s
        text = json.dumps(frame)
        unknown = False
        answer: Frame = {}
        for attempt in range(self._policy.request_attempts):
            request = _Request(text, key, loop.create_future())
            self._pending.append(request)
            try:
                await self._write(request)
                async with asyncio.timeout_at(deadline):
                    answer = await request.future
            except TimeoutError:
                if request.written or unknown:
                    raise OutcomeUnknown(
                        f"no answer within {self._policy.request_timeout_s} s: the outcome is unknown"
                    ) from None
                raise Unavailable(f"not connected within {self._policy.request_timeout_s} s; not sent") from None
            finally:
                self._forget(request)
            if answer.get("type") != "error":
                return answer
            code, detail = str(answer.get("code")), str(answer.get("detail"))
            if code == "unavailable":
                unknown = unknown or any(hint in detail for hint in _UNKNOWN_HINTS)
            elif code != "rate_limited":
                raise RequestRefused(code, detail)
            if attempt + 1 < self._policy.request_attempts:
                pause = self._rng.uniform(0, self._policy.base_s * 2**attempt)
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        code, detail = str(answer.get("code")), str(answer.get("detail"))
        if unknown:
            raise OutcomeUnknown(f"{detail} (after {self._policy.request_attempts} attempts)")
        if code == "unavailable":
            raise Unavailable(f"{detail} (after {self._policy.request_attempts} attempts)")
        raise RequestRefused(code, detail)

    async def _write(self, request: _Request) -> None:
        """Send now if connected; otherwise the next connection sends it (``attach``)."""
        ws = self._ws
        if ws is None:
            return
        async with self._write_lock:
            if self._ws is not ws or request in self._inflight or request.future.done():
                return
            self._inflight.append(request)
            request.written = True
            with contextlib.suppress(ConnectionClosed):
                await ws.send(request.frame)

    async def attach(self, ws: ClientConnection) -> None:
        """A new connection: send every unanswered request on it, in order, before anything new."""
        self._ws = ws
        async with self._write_lock:
            self._inflight.clear()
            for request in list(self._pending):
                if request.future.done():
                    continue
                self._inflight.append(request)
                request.written = True
                await ws.send(request.frame)

    def _forget(self, request: _Request) -> None:
        with contextlib.suppress(ValueError):
            self._pending.remove(request)
        with contextlib.suppress(ValueError):
            self._inflight.remove(request)

    def detach(self) -> None:
        """The connection is gone: what was in flight is sent again on the next one."""
        self._ws = None
        self._inflight.clear()

    def answer(self, frame: Frame) -> None:
        """An ``ack`` (matched by key) or an ``error``/``presence``/``pong`` (the oldest in flight)."""
        request: _Request | None = None
        if frame.get("type") == "ack":
            request = next((r for r in self._inflight if r.key == frame.get("key")), None)
        elif self._inflight:
            request = self._inflight[0]
        if request is not None:
            self._forget(request)
            if not request.future.done():
                request.future.set_result(frame)

    def fail(self, error: BaseException) -> None:
        for request in list(self._pending):
            if not request.future.done():
                request.future.set_exception(error)
        self._pending.clear()
        self._inflight.clear()
