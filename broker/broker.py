"""``RedisBroker``: the ``Broker`` surface over Redis, whatever its topology.

It wires the publish script, the pub/sub link, the listener with its
catch-up, the hub, history, presence and the book store around one client.
What depends on the topology (one server or Sentinel, or Cluster) comes in as
``broker.wiring.Parts``, chosen by ``open_broker``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from broker import history
from broker.catchup import CatchUp, Read, replay_pages
from broker.connect import create_redis, is_memory, redact, text
from broker.errors import REDIS_FAILURES, Duplicate, Unavailable
from broker.facade import (
    BrokerOptions,
    BrokerStats,
    NodeLinks,
    PresenceChange,
    PresenceEntry,
    Published,
    PublishThen,
    StoredBook,
)
from broker.history import HistoryPage, PageQuery
from broker.hub import Hub
from broker.keys import BOOKS_CHANNEL, ChannelKeys, book_index_key, book_key, idempotency_key
from broker.listener import Listener
from broker.presence import Presence
from broker.types import Event, Offset, Sink, parse_offset
from broker.wiring import Client, Parts, standalone_parts

log = logging.getLogger(__name__)

UNAVAILABLE = "redis is unavailable"

#: channels whose key names are kept at once; past it the cache starts over (a cheap bound, no LRU)
KEYS_CACHED = 10_000


class _Subscription:
    __slots__ = (
        "_catchup",
        "_closed",
        "_first",
        "broker",
        "channel",
        "offset",
        "presence",
        "recovered",
    )  # one per socket

    def __init__(self, broker: RedisBroker, channel: str, catchup: CatchUp) -> None:
        self.broker = broker
        self.channel = channel
        self.recovered: bool | None = None
        self.offset: Offset | None = None
        self.presence: PresenceChange | None = None
        self._catchup = catchup
        self._first: list[Event] = []
        self._closed = False

    async def replay(self) -> AsyncIterator[list[Event]]:
        first, self._first = self._first, []
        if first:
            yield first
        async for events in replay_pages(self._catchup, lambda read: self.broker.read_page(self.channel, read)):
            yield events

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.broker.listener.detach(self.channel, self._catchup)


class RedisBroker:
    def __init__(self, client: Client, options: BrokerOptions, parts: Parts, *, description: str = "redis") -> None:
        self.client = client
        self.options = options
        self._description = description
        self._parts = parts
        self._keys: dict[str, ChannelKeys] = {}
        self.hub = Hub(options.fan_out)
        self.listener = Listener(self.hub, options.prefix, self.read_page, parts.link)
        self.presence = Presence(
            client,
            options.prefix,
            options.replica_id,
            options.presence_ttl_s,
            run=parts.presence.run,
            announce=parts.announce,
        )

    @classmethod
    def from_url(cls, url: str, options: BrokerOptions) -> RedisBroker:
        """``memory://`` or ``redis://``/``rediss://`` (``broker.open_broker`` knows every topology)."""
        description = "embedded in-process Redis (memory://, single replica)" if is_memory(url) else redact(url)
        client = create_redis(url, options.pool_size)
        return cls(client, options, standalone_parts(client, options), description=description)

    def describe(self) -> str:
        return self._description

    def keys(self, channel: str) -> ChannelKeys:
        # every publish needs its channel's key names: built once per channel (five f-strings and a dataclass)
        keys = self._keys.get(channel)
        if keys is None:
            if len(self._keys) >= KEYS_CACHED:
                self._keys.clear()
            keys = self._keys[channel] = ChannelKeys.of(self.options.prefix, channel)
        return keys

    async def start(self) -> None:
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.stop()
        await self._parts.close()

    @property
    def ready(self) -> bool:
        return self.listener.ready

    async def ping(self) -> bool:
        try:
            return await self._parts.ping()
        except REDIS_FAILURES:
            return False

    def stats(self) -> BrokerStats:
        link = self.listener.link
        return BrokerStats(
            channels=len(self.listener.channels()),
            reconnects=link.reconnects,
            malformed=self.listener.malformed,
            nodes=link.nodes,
            links=tuple(NodeLinks(node, 1, names) for node, names in sorted(link.links().items())),
            topology_changes=link.topology_changes,
        )

    # -- publishing ------------------------------------------------------------------

    async def publish(self, channel: str, data: str, *, key: str | None = None) -> Published:
        result = await self._run_publish(channel, data, key, self.options.history_ttl_s)
        assert result is not None
        return result

    async def publish_ephemeral(self, channel: str, frame: str) -> None:
        try:
            await self._parts.ephemeral(self.keys(channel).pubsub, "\n" + frame)
        except Unavailable:
            raise
        except REDIS_FAILURES as exc:
            raise Unavailable(UNAVAILABLE) from exc

    def publish_then(self, channel: str, data: str, then: PublishThen, *, key: str | None = None) -> None:
        keys, args = self._script_call(channel, data, key, self.options.history_ttl_s)
        self._parts.publisher.submit(keys, args, partial(_settle_published, then))

    async def _run_publish(
        self, channel: str, data: str, key: str | None, ttl_s: int, book: tuple[str, ...] = ()
    ) -> Published | None:
        reply = await self._parts.publisher.run(*self._script_call(channel, data, key, ttl_s, book))
        if not reply:
            return None
        offset, repeated = reply
        return Published(text(offset), bool(repeated))

    def _script_call(
        self, channel: str, data: str, key: str | None, ttl_s: int, book: tuple[str, ...] = ()
    ) -> tuple[list[str], list[Any]]:
        """The publish script's keys and arguments (``lua/publish.lua``)."""
        keys = self.keys(channel)
        script_keys = [keys.stream, keys.meta]
        if key is not None:
            script_keys.append(idempotency_key(self.options.prefix, channel, key))
        script_keys += book[1:]
        options = self.options
        return script_keys, [
            keys.pubsub,
            options.history_size,
            data,
            self._parts.announce,
            ttl_s,
            options.idempotency_ttl_s,
            "1" if key is not None else "0",
            book[0] if book else "",
        ]

    # -- subscribing and history -------------------------------------------------------

    async def subscribe(
        self, channel: str, sink: Sink, since: Offset | None = None, *, presence: PresenceEntry | None = None
    ) -> _Subscription:
        position = parse_offset(since) if since is not None else None
        catchup = CatchUp(sink, position, buffer_limit=self.options.buffer_limit, from_newest=since is None)
        # SUBSCRIBE confirmed before the read: an event published in between is both read and buffered
        await self.listener.attach(channel, catchup)
        subscription = _Subscription(self, channel, catchup)
        request = catchup.next_read()
        assert request is not None
        try:
            if presence is None:
                page = await self.read_page(channel, request)
            else:  # one round trip: presence enter, its join and this read in one script call
                query = PageQuery(self.keys(channel), request.after, request.count)
                subscription.presence, page = await self.presence.enter_reading(presence, query)
        except Unavailable:
            await subscription.close()
            raise
        first = catchup.page(page, request)
        if since is not None:
            subscription.recovered = not (first and first[0].gap)
            first = first[1:] if not subscription.recovered else first
        subscription.offset = page.newest
        subscription._first = first
        self.listener.note_floor(channel, page.newest_position)
        return subscription

    async def read_page(self, channel: str, read: Read) -> HistoryPage:
        return await self._parts.reads.read(PageQuery(self.keys(channel), read.after, read.count))

    async def history(self, channel: str, since: Offset | None = None, limit: int = 100) -> list[Event]:
        try:
            if since is None:
                return await history.read_latest(self.client, self.keys(channel), limit)
        except REDIS_FAILURES as exc:
            raise Unavailable(UNAVAILABLE) from exc
        page = await self._parts.reads.read(PageQuery(self.keys(channel), since, limit))
        return page.events

    # -- books -------------------------------------------------------------------------

    async def add_book(self, isbn: str, data: str, *, key: str | None = None) -> Published:
        prefix = self.options.prefix
        book = (isbn, book_key(prefix, isbn), book_index_key(prefix))
        published = await self._run_publish(BOOKS_CHANNEL, data, key, 0, book)
        if published is None:
            raise Duplicate(f"a book with ISBN {isbn} already exists")
        return published

    async def get_book(self, isbn: str) -> StoredBook | None:
        try:
            fields = await self.client.hgetall(book_key(self.options.prefix, isbn))
        except REDIS_FAILURES as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return _stored_book(fields)

    async def list_books(self, limit: int) -> list[StoredBook]:
        prefix = self.options.prefix
        try:
            isbns = await self.client.lrange(book_index_key(prefix), 0, max(limit, 0) - 1)
            pipe = self.client.pipeline(transaction=False)
            for isbn in isbns:
                pipe.hgetall(book_key(prefix, text(isbn)))
            rows = await pipe.execute() if isbns else []
        except REDIS_FAILURES as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return [book for book in map(_stored_book, rows) if book is not None]


def _stored_book(fields: dict[Any, Any]) -> StoredBook | None:
    if not fields:
        return None
    return StoredBook(data=fields[b"d"].decode(), offset=fields[b"offset"].decode())


def _settle_published(then: PublishThen, reply: Any, error: BaseException | None) -> None:
    """The publish script's reply (or its error) -> ``then``; a reply of another shape is an error."""
    if error is None:
        try:
            offset, repeated = reply
            published = Published(text(offset), bool(repeated))
        except Exception as exc:
            error = exc
        else:
            then(published, None)
            return
    then(None, error)
