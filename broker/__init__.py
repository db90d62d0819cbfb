"""Herald's Redis-facing core: publish, subscribe with recovery, history, presence, books.

Knows Redis and channels; knows nothing of HTTP, WebSockets or GraphQL.
"""

from broker.broker import Broker, StoredBook
from broker.errors import BrokerError, Duplicate, Unavailable
from broker.keys import BOOKS_CHANNEL, chat_channel
from broker.types import SINCE_START, Event, Offset, Sink, Subscription, is_offset, parse_offset

__all__ = [
    "BOOKS_CHANNEL",
    "SINCE_START",
    "Broker",
    "BrokerError",
    "Duplicate",
    "Event",
    "Offset",
    "Sink",
    "StoredBook",
    "Subscription",
    "Unavailable",
    "chat_channel",
    "is_offset",
    "parse_offset",
]
