"""Chat messages: the one path behind the chat socket, REST ``/api/chat`` and GraphQL ``sendMessage`` and
``messages``, so every surface applies the same rules and counts the same metrics."""

from __future__ import annotations

import time

from api.errors import PayloadTooLarge
from api.metrics import Metrics
from api.models import chat_payload, over_limit
from broker import Broker, Event, Published, PublishThen, chat_channel


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

    def publish_then(self, room: str, user: str, text: str, then: PublishThen, key: str | None = None) -> None:
        """``publish`` started now, its outcome told to ``then`` (``Broker.publish_then``): a chat socket's
        frames are handled without a task or a future per publish. Counted and timed like ``publish``."""
        if over_limit(text, self.max_message_bytes):
            raise PayloadTooLarge(f"text is larger than HERALD_MAX_MESSAGE_BYTES ({self.max_message_bytes} bytes)")
        metrics, started = self._metrics, time.perf_counter()

        def counted(published: Published | None, error: BaseException | None) -> None:
            if error is None:
                metrics.published(started)
            then(published, error)

        self._broker.publish_then(chat_channel(room), chat_payload(room, user, text), counted, key=key)

    async def history(self, room: str, since: str | None, limit: int) -> list[Event]:
        """Retained messages of ``room``: the last ``limit``, or (``since`` given) the first ``limit`` after it."""
        return await self._broker.history(chat_channel(room), since, limit)
