"""The graphene schema of SPEC §5: names are the contract, so fields are spelled as the SDL spells them.

Queries and mutations go through the services the REST routes and the chat socket use (``api.books``,
``api.chat``), handed to the resolvers in the ``Context``.
Subscription fields do not produce async generators: ``subscribe_*`` validates the arguments and returns a
``Source`` naming the channel and ``since``; ``api.graphql.shared`` feeds it from the broker and executes the
document once per event with the event as root value (``resolve_*`` is graphene's identity resolver).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import graphene
import orjson
from pydantic import ValidationError

from api.auth import Principal
from api.books import Books
from api.chat import Chat
from api.errors import BadRequest, Unauthorized, shown
from api.models import ROOM_PATTERN, BookIn, is_room, valid_since
from api.ws.chat_protocol import MAX_KEY_CHARS
from broker import BOOKS_CHANNEL, Event, chat_channel

MAX_LIMIT = 1000


@dataclass(slots=True)
class Context:
    books: Books
    chat: Chat
    #: None: an HTTP reader without a token while auth is on (book reads are open; chat reads are refused)
    principal: Principal | None = None

    def writer(self) -> Principal:
        if self.principal is None:
            raise Unauthorized("a bearer token is required to write")
        return self.principal

    def channel(self, room: str) -> str:
        """The chat channel of ``room``, after checking its name and the token's ``channels`` claim."""
        if not is_room(room):
            raise BadRequest(f"invalid room name {shown(room)}: it must match {ROOM_PATTERN}")
        if self.principal is None:  # only an HTTP reader without a token while auth is on (api.identity)
            raise Unauthorized("a bearer token is required to read a chat room")
        self.principal.check_room(room)
        return chat_channel(room)


@dataclass(frozen=True, slots=True)
class Source:
    """What a subscription listens to. Herald feeds it from the broker; it is never iterated."""

    channel: str
    since: str | None
    #: turns one event of ``channel`` into the root value of the subscription field (None: skip the event)
    root: Any

    def __aiter__(self) -> AsyncIterator[Any]:
        raise TypeError("a Herald subscription source is fed by api.graphql.shared, not iterated")


def book_root(event: Event) -> dict[str, Any] | None:
    book: dict[str, Any] = orjson.loads(event.data)
    book["offset"] = event.offset
    return book


def message_root(event: Event) -> dict[str, Any] | None:
    if event.offset is None:
        return None  # join/leave frames share the room's channel; they are not chat messages
    message: dict[str, Any] = orjson.loads(event.data)
    message["id"] = event.offset
    return message


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


class Book(graphene.ObjectType):  # type: ignore[misc]
    isbn = graphene.String(required=True)
    title = graphene.String(required=True)
    author = graphene.String(required=True)
    addedAt = graphene.Float(required=True)
    offset = graphene.String(required=True)


class ChatMessage(graphene.ObjectType):  # type: ignore[misc]
    id = graphene.ID(required=True)
    room = graphene.String(required=True)
    user = graphene.String(required=True)
    text = graphene.String(required=True)
    ts = graphene.Float(required=True)


def _list_of(of_type: type[graphene.ObjectType], **arguments: Any) -> graphene.Field:
    return graphene.Field(graphene.NonNull(graphene.List(graphene.NonNull(of_type))), **arguments)


class Query(graphene.ObjectType):  # type: ignore[misc]
    book = graphene.Field(Book, isbn=graphene.String(required=True))
    books = _list_of(Book, limit=graphene.Int(default_value=20))
    messages = _list_of(ChatMessage, room=graphene.String(required=True), limit=graphene.Int(default_value=50))

    @staticmethod
    async def resolve_book(root: None, info: graphene.ResolveInfo, isbn: str) -> dict[str, Any] | None:
        book = await info.context.books.get(isbn)
        return book.model_dump() if book is not None else None

    @staticmethod
    async def resolve_books(root: None, info: graphene.ResolveInfo, limit: int) -> list[dict[str, Any]]:
        return [book.model_dump() for book in await info.context.books.newest(_limit(limit))]

    @staticmethod
    async def resolve_messages(root: None, info: graphene.ResolveInfo, room: str, limit: int) -> list[Any]:
        context: Context = info.context
        context.channel(room)  # refuses a bad room, or one outside the token's rooms
        events = await context.chat.history(room, None, _limit(limit))
        return [message_root(event) for event in events]


class Mutation(graphene.ObjectType):  # type: ignore[misc]
    addBook = graphene.Field(
        graphene.NonNull(Book),
        isbn=graphene.String(required=True),
        title=graphene.String(required=True),
        author=graphene.String(required=True),
    )
    sendMessage = graphene.Field(
        graphene.NonNull(ChatMessage),
        room=graphene.String(required=True),
        text=graphene.String(required=True),
        key=graphene.String(),
    )

    @staticmethod
    async def resolve_addBook(root: None, info: graphene.ResolveInfo, **fields: str) -> dict[str, Any]:
        context: Context = info.context
        context.writer()
        try:
            book = BookIn(**fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BadRequest(f"invalid book: {problems}") from None
        stored = await context.books.add(book)
        return stored.model_dump()

    @staticmethod
    async def resolve_sendMessage(
        root: None, info: graphene.ResolveInfo, room: str, text: str, key: str | None = None
    ) -> dict[str, Any]:
        context: Context = info.context
        user = context.writer().user
        context.channel(room)  # refuses a bad room, or one outside the token's rooms
        if not text:
            raise BadRequest("text must not be empty")
        if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
            raise BadRequest(f"key must be 1 to {MAX_KEY_CHARS} characters")
        published, payload = await context.chat.publish(room, user, text, key)
        message: dict[str, Any] = orjson.loads(payload)
        message["id"] = published.offset
        return message


class Subscription(graphene.ObjectType):  # type: ignore[misc]
    newBook = graphene.Field(graphene.NonNull(Book), since=graphene.String())
    chatMessage = graphene.Field(
        graphene.NonNull(ChatMessage), room=graphene.String(required=True), since=graphene.String()
    )

    @staticmethod
    def subscribe_newBook(root: None, info: graphene.ResolveInfo, since: str | None = None) -> Source:
        return Source(BOOKS_CHANNEL, valid_since(since), book_root)

    @staticmethod
    def subscribe_chatMessage(root: None, info: graphene.ResolveInfo, room: str, since: str | None = None) -> Source:
        context: Context = info.context
        return Source(context.channel(room), valid_since(since), message_root)


def build_schema() -> graphene.Schema:
    return graphene.Schema(query=Query, mutation=Mutation, subscription=Subscription)
