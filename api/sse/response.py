"""``EventStreamResponse``: a Starlette response whose body is an ``EventStream``, run in the request's task.

The route checks the request first (a refusal is an ordinary 4xx with a JSON ``detail``); the
response then counts the stream, starts it (headers and the ``retry:`` hint) and hands it to the
route's ``run``, which sends the backlog and serves it live.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.sse.stream import EventStream, Farewell
from api.state import AppState

log = logging.getLogger(__name__)

MEDIA_TYPE = "text/event-stream"
#: a reconnecting EventSource waits this long, plus a random share of the jitter, chosen per stream,
#: so the clients of a drained replica do not all arrive at the survivors in the same instant
RETRY_MS = 1000
RETRY_JITTER_MS = 2000

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass events through as they come
]

Run = Callable[[EventStream], Awaitable[None]]


class EventStream200(Response):
    """What a route's ``response_class`` names, for the OpenAPI document: ``text/event-stream``."""

    media_type = MEDIA_TYPE


class EventStreamResponse(EventStream200):
    def __init__(self, state: AppState, endpoint: str, user: str, run: Run, farewell: Farewell | None) -> None:
        super().__init__(media_type=MEDIA_TYPE)
        self._state = state
        self._endpoint = endpoint
        self._user = user
        self._run = run
        self._farewell = farewell

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state, settings = self._state, self._state.settings
        stream = EventStream(
            receive,
            send,
            endpoint=self._endpoint,
            limit=settings.send_queue,
            heartbeat_s=settings.heartbeat_s,
            close_timeout_s=settings.slow_close_s,
            counts=state.metrics.counts,
            farewell=self._farewell,
        )
        stream.user = self._user
        registry = state.sse
        full = state.connections.total() + registry.total() >= settings.max_connections
        registry.add(stream)
        try:
            await stream.open(HEADERS, RETRY_MS + random.randrange(RETRY_JITTER_MS))
            if full:
                stream.end(CloseCode.TRY_AGAIN_LATER, "replica at HERALD_MAX_CONNECTIONS")
            elif not stream.closed:
                await self._run(stream)
        except OSError:
            pass  # the client vanished mid-write
        except Exception:
            log.exception("sse stream %s (%s) failed", stream.id, self._user)
            stream.end(CloseCode.INTERNAL_ERROR, CLOSE_CODE_EXPLANATIONS[CloseCode.INTERNAL_ERROR])
        finally:
            registry.discard(stream)
            await stream.finish()
