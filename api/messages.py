"""Publishing a chat message: the one path shared by the chat socket, REST and GraphQL,
so every surface applies the same rules and counts the same metrics."""

from __future__ import annotations

from api.errors import PayloadTooLarge
from api.models import chat_payload
from api.state import AppState
from broker import Published, chat_channel


async def publish_chat(
    state: AppState, room: str, user: str, text: str, key: str | None = None
) -> tuple[Published, str]:
    """Publish ``text`` to ``room`` as ``user``; returns where it landed and the stored payload.

    ``key`` is an idempotency key: a repeat publishes nothing and returns the first offset.
    ``PayloadTooLarge`` past ``HERALD_MAX_MESSAGE_BYTES`` (sockets are bounded by their
    frame size already; HTTP bodies are not); ``broker.Unavailable`` when Redis refused it,
    ``broker.OutcomeUnknown`` when it stopped answering mid-publish.
    """
    limit = state.settings.max_message_bytes
    if len(text) * 4 > limit and len(text.encode()) > limit:
        raise PayloadTooLarge(f"text is larger than HERALD_MAX_MESSAGE_BYTES ({limit} bytes)")
    payload = chat_payload(room, user, text)
    with state.metrics.publishing():
        published = await state.broker.publish(chat_channel(room), payload, key=key)
    return published, payload
