"""Chat messages: the one path behind the chat socket, REST ``/api/chat`` and GraphQL ``sendMessage`` and
``messages``, so every surface applies the same rules and counts the same metrics."""

from __future__ import annotations

import asyncio
import time
from functools import partial

from api.errors import PayloadTooLarge
from api.metrics import Metrics
from api.models import chat_payload, over_limit
from broker import Broker, Event, Published, chat_channel


class Chat:
    def __init__(self, broker: Broker, metrics: Metrics, *, max_message_bytes: int) -> None:
        self._broker = broker
        self._metrics = metrics
        self.max_message_bytes = max_message_bytes

    async def publish(self, room: str, user: str, text: str, key: str | None = None) -> tuple[Published, str]:
        """Publish ``text`` to ``room`` as ``user``; returns where it landed and the stored payload.

        ``key`` is an idempotency key: a repeat publishes nothing and returns the first offset.
        ``PayloadTooLarge`` past ``HERALD_MAX_MESSAGE_BYTES`` (sockets are bounded by their
        frame size already; HTTP bodies are not); ``broker.Unavailable`` when Redis refused it,
        ``broker.OutcomeUnknown`` when it stopped answering mid-publish.
        """
        if over_limit(text, self.max_message_bytes):
            raise PayloadTooLarge(f"text is larger than HERALD_MAX_MESSAGE_BYTES ({self.max_message_bytes} bytes)")
        payload = chat_payload(room, user, text)
        with self._metrics.publishing():
            published = await self._broker.publish(chat_channel(room), payload, key=key)
        return published, payload

    def publish_soon(self, room: str, user: str, text: str, key: str | None = None) -> asyncio.Future[Published]:
        """``publish`` started now, its outcome on the future: a chat socket's frames are handled without a
        task per publish. Counted and timed like ``publish`` once it succeeded."""
        if over_limit(text, self.max_message_bytes):
            raise PayloadTooLarge(f"text is larger than HERALD_MAX_MESSAGE_BYTES ({self.max_message_bytes} bytes)")
        published = self._broker.publish_soon(chat_channel(room), chat_payload(room, user, text), key=key)
        published.add_done_callback(partial(self._metrics.published, time.perf_counter()))
        return published

    async def history(self, room: str, since: str | None, limit: int) -> list[Event]:
        """Retained messages of ``room``: the last ``limit``, or (``since`` given) the first ``limit`` after it."""
        return await self._broker.history(chat_channel(room), since, limit)
