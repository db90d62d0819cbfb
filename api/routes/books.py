"""``/api/books``: the same store and the same ``books`` event as GraphQL's ``addBook``.

A book is stored as its data JSON ``{"isbn","title","author","addedAt"}``; ``Book.offset`` is the offset of
the event that announced it. The helpers below are shared with the GraphQL resolvers.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, status

from api.deps import IdempotencyKey, StateDep, WriterDep
from api.errors import Conflict, NotFound
from api.models import Book, BookIn, dumps, now
from api.state import AppState
from broker import Duplicate, StoredBook

router = APIRouter(prefix="/api/books", tags=["books"])


def _book(stored: StoredBook) -> Book:
    return Book(**orjson.loads(stored.data), offset=stored.offset)


async def add_book(state: AppState, book: BookIn, key: str | None = None) -> Book:
    """Store and announce ``book`` atomically; ``broker.Duplicate`` when its ISBN exists (nothing published).

    A repeat of idempotency ``key`` publishes nothing and answers with the book its first use stored.
    """
    data = dumps({"isbn": book.isbn, "title": book.title, "author": book.author, "addedAt": now()})
    with state.metrics.publishing():
        published = await state.broker.add_book(book.isbn, data, key=key)
    stored = await state.broker.get_book(book.isbn) if published.repeated else None
    return _book(stored or StoredBook(data, published.offset))


async def get_book(state: AppState, isbn: str) -> Book | None:
    stored = await state.broker.get_book(isbn)
    return _book(stored) if stored is not None else None


async def list_books(state: AppState, limit: int) -> list[Book]:
    """The ``limit`` newest books, newest first."""
    return [_book(stored) for stored in await state.broker.list_books(limit)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Book,
    responses={409: {"description": "a book with this ISBN exists; nothing was published"}},
)
async def post_book(body: BookIn, writer: WriterDep, state: StateDep, key: IdempotencyKey = None) -> Book:
    try:
        return await add_book(state, body, key)
    except Duplicate as exc:
        raise Conflict(str(exc)) from None


@router.get("/{isbn}", response_model=Book, responses={404: {"description": "no book with this ISBN"}})
async def read_book(isbn: str, state: StateDep) -> Book:
    book = await get_book(state, isbn)
    if book is None:
        raise NotFound(f"no book with ISBN {isbn}")
    return book


@router.get("", response_model=list[Book])
async def read_books(
    state: StateDep, limit: Annotated[int, Query(ge=1, le=1000, description="how many, newest first")] = 20
) -> list[Book]:
    return await list_books(state, limit)
