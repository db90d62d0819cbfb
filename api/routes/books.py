"""``/api/books``: HTTP over ``api.books`` (the same store and ``books`` event as GraphQL's ``addBook``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import BooksDep, IdempotencyKey, WriterDep
from api.errors import NotFound
from api.models import Book, BookIn

router = APIRouter(prefix="/api/books", tags=["books"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Book,
    responses={409: {"description": "a book with this ISBN exists; nothing was published"}},
)
async def post_book(body: BookIn, writer: WriterDep, books: BooksDep, key: IdempotencyKey = None) -> Book:
    return await books.add(body, key)


@router.get("/{isbn}", response_model=Book, responses={404: {"description": "no book with this ISBN"}})
async def read_book(isbn: str, books: BooksDep) -> Book:
    book = await books.get(isbn)
    if book is None:
        raise NotFound(f"no book with ISBN {isbn}")
    return book


@router.get("", response_model=list[Book])
async def read_books(
    books: BooksDep, limit: Annotated[int, Query(ge=1, le=1000, description="how many, newest first")] = 20
) -> list[Book]:
    return await books.newest(limit)
