"""Books: the one store behind REST ``/api/books`` and GraphQL ``book``, ``books`` and ``addBook``.

A book is stored as its data JSON ``{"isbn","title","author","addedAt"}`` and announced on the ``books``
channel in the same atomic step; ``Book.offset`` is the offset of the event that announced it.
"""

from __future__ import annotations

import orjson

from api.errors import Conflict
from api.metrics import Metrics
from api.models import Book, BookIn, dumps, now
from broker import Broker, Duplicate, StoredBook


def _book(stored: StoredBook) -> Book:
    return Book(**orjson.loads(stored.data), offset=stored.offset)


class Books:
    def __init__(self, broker: Broker, metrics: Metrics) -> None:
        self._broker = broker
        self._metrics = metrics

    async def add(self, book: BookIn, key: str | None = None) -> Book:
        """Store and announce ``book``; ``Conflict`` (409) when its ISBN exists, and nothing is published.

        A repeat of idempotency ``key`` publishes nothing and answers with the book its first use stored.
        """
        data = dumps({"isbn": book.isbn, "title": book.title, "author": book.author, "addedAt": now()})
        try:
            with self._metrics.publishing():
                published = await self._broker.add_book(book.isbn, data, key=key)
        except Duplicate as exc:
            raise Conflict(str(exc)) from None
        stored = await self._broker.get_book(book.isbn) if published.repeated else None
        return _book(stored or StoredBook(data, published.offset))

    async def get(self, isbn: str) -> Book | None:
        stored = await self._broker.get_book(isbn)
        return _book(stored) if stored is not None else None

    async def newest(self, limit: int) -> list[Book]:
        """The ``limit`` newest books, newest first."""
        return [_book(stored) for stored in await self._broker.list_books(limit)]
