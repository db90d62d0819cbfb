"""Where a channel lives in Redis.

Every key of a channel and its pub/sub channel share one hash tag, ``{chat:R}``,
so one channel maps to one Redis Cluster slot and the publish script's keys are
co-located.
"""

from __future__ import annotations

from dataclasses import dataclass

BOOKS_CHANNEL = "books"


def chat_channel(room: str) -> str:
    return f"chat:{room}"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    channel: str
    #: bounded stream of the channel's events (the history)
    stream: str
    #: hash: ``origin`` (the stream's first offset ever) and ``trimmed`` (newest offset trimmed away)
    meta: str
    #: pub/sub channel carrying "<offset>\n<data>" (ephemeral events: "\n<frame>")
    pubsub: str
    #: presence: members "user\x00connection" scored by expiry time (ms)
    presence: str

    @classmethod
    def of(cls, prefix: str, channel: str) -> ChannelKeys:
        tag = f"{prefix}:{{{channel}}}"
        return cls(
            channel=channel,
            stream=f"{tag}:stream",
            meta=f"{tag}:meta",
            pubsub=f"{tag}:events",
            presence=f"{tag}:presence",
        )


def idempotency_key(prefix: str, channel: str, key: str) -> str:
    """Where a publish's idempotency key remembers the offset it got (same hash tag as the channel)."""
    return f"{prefix}:{{{channel}}}:key:{key}"


def book_key(prefix: str, isbn: str) -> str:
    return f"{prefix}:{{{BOOKS_CHANNEL}}}:book:{isbn}"


def book_index_key(prefix: str) -> str:
    return f"{prefix}:{{{BOOKS_CHANNEL}}}:index"


def channel_of_pubsub(prefix: str, pubsub_name: str) -> str | None:
    """Inverse of ``ChannelKeys.pubsub``: ``"herald:{chat:a}:events"`` -> ``"chat:a"``."""
    head = f"{prefix}:{{"
    tail = "}:events"
    if pubsub_name.startswith(head) and pubsub_name.endswith(tail):
        return pubsub_name[len(head) : -len(tail)]
    return None
