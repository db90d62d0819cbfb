"""Herald's Redis-facing core: publish, subscribe with catch-up, history, presence, books.

Knows Redis and channels; knows nothing of HTTP, WebSockets or GraphQL. This
package's namespace is the facade ``api/`` uses; its submodules are private.
"""

from broker.errors import BrokerError, Duplicate, OutcomeUnknown, Unavailable
from broker.facade import (
    Broker,
    BrokerOptions,
    BrokerStats,
    NodeLinks,
    OnDeparted,
    PresenceChange,
    PresenceEntry,
    PresenceStore,
    Published,
    PublishThen,
    StoredBook,
    Subscription,
)
from broker.factory import open_broker
from broker.keys import BOOKS_CHANNEL, chat_channel
from broker.types import SINCE_START, Event, Offset, Sink, is_offset, parse_offset
from broker.urls import ClusterUrl, InvalidRedisUrl, MemoryUrl, parse_redis_url

__all__ = [
    "BOOKS_CHANNEL",
    "SINCE_START",
    "Broker",
    "BrokerError",
    "BrokerOptions",
    "BrokerStats",
    "ClusterUrl",
    "Duplicate",
    "Event",
    "InvalidRedisUrl",
    "MemoryUrl",
    "NodeLinks",
    "Offset",
    "OnDeparted",
    "OutcomeUnknown",
    "PresenceChange",
    "PresenceEntry",
    "PresenceStore",
    "PublishThen",
    "Published",
    "Sink",
    "StoredBook",
    "Subscription",
    "Unavailable",
    "chat_channel",
    "is_offset",
    "open_broker",
    "parse_offset",
    "parse_redis_url",
]
