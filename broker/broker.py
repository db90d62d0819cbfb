"""``Broker``: the one object ``api/`` talks to. It wires the publisher script,
the listener, the hub, history and the book store around one Redis client."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from broker import history
from broker.connect import create_redis
from broker.errors import Duplicate, Unavailable
from broker.hub import Hub
from broker.keys import BOOKS_CHANNEL, ChannelKeys, book_index_key, book_key
from broker.listener import Listener
from broker.publisher import Publisher
from broker.recovery import RecoveringSink
from broker.types import SINCE_START, Event, Offset, Sink, parse_offset

log = logging.getLogger(__name__)

UNAVAILABLE = "redis is unavailable"


@dataclass(slots=True)
class StoredBook:
    data: str
    offset: Offset


@dataclass(eq=False)
class _Subscription:
    broker: Broker
    channel: str
    sink: RecoveringSink
    recovered: bool | None = None
    offset: Offset | None = None
    replay: list[Event] = field(default_factory=list)
    _closed: bool = False

    def go_live(self) -> bool:
        return self.sink.go_live(self.replay)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.broker.listener.detach(self.channel, self.sink)


class Broker:
    def __init__(
        self,
        client: redis.Redis,
        *,
        replica_id: str,
        prefix: str = "herald",
        history_size: int = 1000,
        buffer_limit: int = 1000,
    ) -> None:
        self.client = client
        self.replica_id = replica_id
        self.prefix = prefix
        self.history_size = history_size
        self.buffer_limit = buffer_limit
        self.hub = Hub()
        self.listener = Listener(client, self.hub, prefix, replica_id, self._replay_after)
        self._publisher = Publisher(client, resources.files("broker").joinpath("lua/publish.lua").read_text())

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 64, **options: Any) -> Broker:
        return cls(create_redis(url, pool_size), **options)

    def keys(self, channel: str) -> ChannelKeys:
        return ChannelKeys.of(self.prefix, channel)

    async def start(self) -> None:
        await self.listener.start()

    async def close(self) -> None:
        await self.listener.stop()
        await self.client.aclose()

    @property
    def ready(self) -> bool:
        return self.listener.ready

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    # -- publishing ----------------------------------------------------------------

    async def publish(self, channel: str, data: str) -> Offset:
        """Append ``data`` (a JSON object text) to the channel and announce it; returns its offset."""
        keys = self.keys(channel)
        return str(await self._run_publish([keys.stream, keys.meta], [keys.pubsub, self.history_size, data]))

    async def publish_ephemeral(self, channel: str, frame: str) -> None:
        """Announce ``frame`` to the channel's current listeners; not stored, never replayed."""
        try:
            await self.client.publish(self.keys(channel).pubsub, "\n" + frame)
        except (RedisError, OSError) as exc:
            raise Unavailable(UNAVAILABLE) from exc

    async def _run_publish(self, keys: list[str], args: list[Any]) -> Any:
        return await self._publisher.run(keys, args)

    # -- subscribing and history -----------------------------------------------------

    async def subscribe(self, channel: str, sink: Sink, since: Offset | None = None) -> _Subscription:
        """Register ``sink`` (buffering) and read what it missed; see ``broker.types.Subscription``."""
        position = parse_offset(since) if since is not None else None
        wrapped = RecoveringSink(sink, self.buffer_limit)
        await self.listener.attach(channel, wrapped)
        subscription = _Subscription(self, channel, wrapped)
        try:
            if since is None:
                page = await history.read_newest(self.client, self.keys(channel))
            else:
                page = await history.read_after(self.client, self.keys(channel), since)
            if position is not None and page.foreign(position):
                # The client's position belongs to a history Redis lost: all that is retained is new to it.
                subscription.recovered, position = False, None
                page = await history.read_after(self.client, self.keys(channel), SINCE_START)
        except (RedisError, OSError) as exc:
            await subscription.close()
            raise Unavailable(UNAVAILABLE) from exc
        subscription.offset = page.newest
        subscription.replay = page.events
        newest = parse_offset(page.newest) if page.newest is not None else None
        if position is not None:
            subscription.recovered = page.reaches(position)
        wrapped.position = position if since is not None else newest
        self.hub.note_position(channel, newest)
        return subscription

    async def history(self, channel: str, since: Offset | None = None, limit: int = 100) -> list[Event]:
        """Retained events, oldest first: the first ``limit`` after ``since``, or else the last ``limit``."""
        try:
            if since is None:
                return await history.read_latest(self.client, self.keys(channel), limit)
            page = await history.read_after(self.client, self.keys(channel), since, limit)
        except (RedisError, OSError) as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return page.events

    async def _replay_after(self, channel: str, since: Offset) -> list[Event]:
        page = await history.read_after(self.client, self.keys(channel), since)
        return page.events

    # -- books -------------------------------------------------------------------------

    async def add_book(self, isbn: str, data: str) -> Offset:
        """Store the book and publish it on ``books`` atomically; ``Duplicate`` if the ISBN exists."""
        keys = self.keys(BOOKS_CHANNEL)
        offset = await self._run_publish(
            [keys.stream, keys.meta, book_key(self.prefix, isbn), book_index_key(self.prefix)],
            [keys.pubsub, self.history_size, data, isbn],
        )
        if offset is None:
            raise Duplicate(f"a book with ISBN {isbn} already exists")
        return str(offset)

    async def get_book(self, isbn: str) -> StoredBook | None:
        try:
            fields = await self.client.hgetall(book_key(self.prefix, isbn))
        except (RedisError, OSError) as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return _stored_book(fields)

    async def list_books(self, limit: int) -> list[StoredBook]:
        """The ``limit`` newest books, newest first."""
        try:
            isbns = await self.client.lrange(book_index_key(self.prefix), 0, max(limit, 0) - 1)
            pipe = self.client.pipeline(transaction=False)
            for isbn in isbns:
                pipe.hgetall(book_key(self.prefix, isbn.decode() if isinstance(isbn, bytes) else isbn))
            rows = await pipe.execute() if isbns else []
        except (RedisError, OSError) as exc:
            raise Unavailable(UNAVAILABLE) from exc
        return [book for book in map(_stored_book, rows) if book is not None]


def _stored_book(fields: dict[Any, Any]) -> StoredBook | None:
    if not fields:
        return None
    return StoredBook(data=fields[b"d"].decode(), offset=fields[b"offset"].decode())
