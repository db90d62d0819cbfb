"""The broker's public surface: what ``api/`` may use, whatever Redis topology is behind it.

Like encode/broadcaster's backend interface, small on purpose: publish,
subscribe (with catch-up), history, presence, books, health and stats. The
implementation is ``broker.broker.RedisBroker`` on every topology (one
server, Sentinel, Cluster); what differs per topology is ``broker.wiring.Parts``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from broker.types import Event, Offset, Sink


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    replica_id: str
    #: prefix of every Redis key and pub/sub channel
    prefix: str = "herald"
    #: events retained per channel, exactly
    history_size: int = 1000
    #: a channel's stream expires after this long without a publish (0: never); books never expire
    history_ttl_s: int = 604_800
    #: how long an idempotency key is remembered
    idempotency_ttl_s: int = 300
    #: live events one subscriber buffers while it replays; more and the gap is re-read from the stream
    buffer_limit: int = 1000
    #: how often the pub/sub link is probed end to end
    probe_s: float = 10.0
    #: presence entries' lifetime, refreshed while their connection lives
    presence_ttl_s: float = 30.0
    #: command connections (the pub/sub link has its own)
    pool_size: int = 64
    #: a publish is acknowledged only once this many Redis replicas hold it (WAIT; 0: off)
    min_replicas_ack: int = 0
    #: how long that WAIT may take before the publish is "not confirmed"
    ack_timeout_ms: int = 500
    #: wraps the local fan-out of one event once, at start (tracing); None: the plain function, no cost
    fan_out: Callable[[Callable[[Event], None]], Callable[[Event], None]] | None = None


@dataclass(frozen=True, slots=True)
class Published:
    offset: Offset
    #: the idempotency key was seen before: nothing new was published, ``offset`` is the first publish's
    repeated: bool = False


#: told a publish's outcome: ``(published, None)``, or ``(None, error)`` with ``publish``'s errors
PublishThen = Callable[[Published | None, BaseException | None], None]


@dataclass(frozen=True, slots=True)
class StoredBook:
    data: str
    offset: Offset


@dataclass(frozen=True, slots=True)
class NodeLinks:
    """The pub/sub connections this replica holds to one Redis node."""

    #: ``host:port`` as the topology names it
    node: str
    #: open pub/sub connections to it (Herald keeps at most one per node)
    connections: int
    #: channels subscribed over them
    channels: int


@dataclass(frozen=True, slots=True)
class BrokerStats:
    #: channels this replica is subscribed to
    channels: int
    #: pub/sub links lost and re-established
    reconnects: int
    #: pub/sub payloads skipped because they did not decode
    malformed: int
    #: Redis masters this replica knows: 1 for one server or Sentinel (the current master), the slot map's
    #: masters for a cluster
    nodes: int = 1
    #: pub/sub connections per node, one entry per node this replica listens on
    links: tuple[NodeLinks, ...] = ()
    #: failovers and slot moves this replica followed
    topology_changes: int = 0


@dataclass(slots=True)
class PresenceChange:
    """Outcome of an enter/exit: whether it changed the user's presence, and users whose entries expired."""

    changed: bool
    departed: list[str]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """A connection entering presence as it subscribes (``Broker.subscribe(..., presence=...)``)."""

    user: str
    #: unique among this replica's connections
    connection: str
    #: an ephemeral frame published to the channel, in the same round trip, when this is the user's first connection
    announce: str | None = None


#: told (channel, users) when a refresh purged users whose every entry expired (their replica died)
OnDeparted = Callable[[str, list[str]], Awaitable[None]]


class PresenceStore(Protocol):
    """Cluster-wide presence per channel: one member per connection, a user present while any lives."""

    def start(self, on_departed: OnDeparted | None = None) -> None: ...
    async def stop(self) -> None: ...
    async def enter(self, channel: str, user: str, connection: str, announce: str | None = None) -> PresenceChange:
        """``announce``: an ephemeral frame published to the channel, in the same round trip, when this is the
        user's first connection."""

    async def exit(self, channel: str, user: str, connection: str, announce: str | None = None) -> PresenceChange:
        """``announce``: published, in the same round trip, when this was the user's last connection."""

    async def users(self, channel: str) -> list[str]: ...


class Subscription(Protocol):
    """One sink registered on one channel.

    It starts out buffering live events. The caller sends what ``replay()``
    yields (retained events after ``since``, then the live ones that arrived
    meanwhile), page by page, awaiting each before asking for the next; when the
    iterator is exhausted the sink is live and gets every later event directly.
    A gap marker (``Event.gap``) in a page or in the sink means stored events
    were lost for this subscriber: tell the client.
    """

    channel: str
    #: False when ``since`` was given and history no longer reaches it; True when it does;
    #: None without ``since``.
    recovered: bool | None
    #: the channel's newest retained offset when subscribing; None when it has none
    offset: Offset | None
    #: what entering presence changed, when ``subscribe`` was given a ``PresenceEntry``; else None
    presence: PresenceChange | None

    def replay(self) -> AsyncIterator[list[Event]]: ...

    async def close(self) -> None:
        """Stop delivery; unsubscribes from Redis when this was the last local sink. Idempotent."""


class Broker(Protocol):
    @property
    def options(self) -> BrokerOptions: ...

    @property
    def presence(self) -> PresenceStore: ...

    @property
    def ready(self) -> bool:
        """The pub/sub link is up: live events flow."""

    def describe(self) -> str:
        """What this broker talks to, fit for a log line (no password)."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> bool: ...

    async def publish(self, channel: str, data: str, *, key: str | None = None) -> Published:
        """Append ``data`` (a JSON object text) to the channel and announce it, in one round trip.

        ``key``: an idempotency key; a repeat within the TTL publishes nothing and returns the
        first publish's offset. Raises ``Unavailable`` (nothing happened) or ``OutcomeUnknown``.
        """

    def publish_then(self, channel: str, data: str, then: PublishThen, *, key: str | None = None) -> None:
        """``publish``, started now; its outcome goes to ``then(published, None)`` or ``then(None, error)``
        (the same errors), called as soon as Redis answered. For callers that must not await (a chat
        socket's frame handler): no task, no future per publish."""

    async def publish_ephemeral(self, channel: str, frame: str) -> None:
        """Announce ``frame`` to the channel's current listeners; not stored, never replayed."""

    async def subscribe(
        self, channel: str, sink: Sink, since: Offset | None = None, *, presence: PresenceEntry | None = None
    ) -> Subscription:
        """Register ``sink`` (buffering; see ``Subscription``) and read where the channel stands.

        The channel's pub/sub subscription is confirmed first, then the read (the newest offset, or
        the first page after ``since``) goes out, so no event falls in between. With ``presence`` the
        same script call enters it (and announces the join): one round trip for a subscriber's start.
        The caller then owns the entry and must ``presence.exit`` it, also when the replay fails.
        Raises ``Unavailable`` (nothing subscribed, nothing entered; an ``OutcomeUnknown``, though,
        may have entered: exit it).
        """

    async def history(self, channel: str, since: Offset | None = None, limit: int = 100) -> list[Event]:
        """Retained events, oldest first: the first ``limit`` after ``since``, or else the last ``limit``."""

    async def add_book(self, isbn: str, data: str, *, key: str | None = None) -> Published:
        """Store the book and publish it on ``books`` atomically; ``Duplicate`` if the ISBN exists."""

    async def get_book(self, isbn: str) -> StoredBook | None: ...

    async def list_books(self, limit: int) -> list[StoredBook]:
        """The ``limit`` newest books, newest first."""

    def stats(self) -> BrokerStats: ...
