"""``AppState.graphql``: the schema, parsed and validated documents, execution, and the subscription streams.

Both transports (``http.py`` and ``endpoint.py``) go through here, so a document is parsed and validated
(standard rules plus Herald's size limits) once per replica, whatever the number of clients sending it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationDefinitionNode,
    create_source_event_stream,
    execute,
    execute_sync,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)

from api.auth import Principal
from api.books import Books
from api.chat import Chat
from api.graphql.schema import Context, Source, build_schema
from api.graphql.shared import Deliver, Key, Membership, Run, Streams
from api.graphql.validation import limit_errors
from api.metrics import Counts
from api.settings import Settings
from broker import Broker

log = logging.getLogger(__name__)

CACHE_SIZE = 512
CACHEABLE_CHARS = 16_384  # longer documents are validated every time rather than pinned in memory
#: parse gives up past this many tokens. A document within HERALD_GRAPHQL_MAX_FIELDS (500) with aliases and
#: arguments is ~1,500 tokens and GraphiQL's introspection query ~700; a 2,000-alias bomb (24,000) is cut short
#: here, before the parse itself becomes the cost (~25 µs a token).
MAX_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class Prepared:
    #: None when the text does not parse
    document: DocumentNode | None
    #: syntax or validation errors; empty when the document may run
    errors: list[GraphQLError]

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        return get_operation_ast(self.document, name) if self.document is not None else None

    def operation_errors(self, name: str | None) -> list[GraphQLError]:
        """Why no operation of a parsed document can be chosen ([] when one can)."""
        if self.document is None or self.operation(name) is not None:
            return []
        if name:
            return [GraphQLError(f"Unknown operation named '{name}'.")]
        return [GraphQLError("Must provide operation name if query contains multiple operations.")]


def errors_json(errors: list[GraphQLError]) -> str:
    return orjson.dumps([error.formatted for error in errors]).decode()


def result_json(result: ExecutionResult) -> str:
    return orjson.dumps(result.formatted).decode()


class GraphQLService:
    def __init__(self, settings: Settings, broker: Broker, counts: Counts, *, books: Books, chat: Chat) -> None:
        self.schema = build_schema().graphql_schema
        self.max_depth, self.max_fields = settings.graphql_max_depth, settings.graphql_max_fields
        self._documents: OrderedDict[str, Prepared] = OrderedDict()
        self.streams = Streams(broker)
        self._counts = counts
        self._books = books
        self._chat = chat

    def context(self, principal: Principal | None) -> Context:
        """What the resolvers of one request or socket see."""
        return Context(self._books, self._chat, principal)

    # -- the /metrics gauges --------------------------------------------------------------------------------

    def subscriptions(self) -> int:
        return self.streams.subscriptions

    def shared_streams(self) -> int:
        return self.streams.count()

    # -- documents -------------------------------------------------------------------------------------------

    def prepare(self, query: str) -> Prepared:
        prepared = self._documents.get(query)
        if prepared is not None:
            self._documents.move_to_end(query)
            return prepared
        prepared = self._prepare(query)
        if len(query) <= CACHEABLE_CHARS:
            self._documents[query] = prepared
            if len(self._documents) > CACHE_SIZE:
                self._documents.popitem(last=False)
        return prepared

    def _prepare(self, query: str) -> Prepared:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return Prepared(None, [error])
        except RecursionError:
            return Prepared(None, [GraphQLError("The document is nested too deeply.")])
        try:
            # Size first, on the syntax tree alone: an oversized document never reaches the standard rules.
            too_big = limit_errors(document, self.max_depth, self.max_fields)
            return Prepared(document, too_big or validate(self.schema, document, specified_rules))
        except RecursionError:
            return Prepared(None, [GraphQLError("The document is nested too deeply.")])

    # -- execution -------------------------------------------------------------------------------------------

    async def execute(
        self, document: DocumentNode, variables: dict[str, Any] | None, operation_name: str | None, context: Context
    ) -> ExecutionResult:
        """A query or mutation."""
        result = execute(self.schema, document, None, context, variables, operation_name)
        return await result if isawaitable(result) else result

    async def source(
        self, document: DocumentNode, variables: dict[str, Any] | None, operation_name: str | None, context: Context
    ) -> Source | ExecutionResult:
        """The subscription's source, or a result carrying the errors that prevent it (bad room, bad since...)."""
        source = await create_source_event_stream(self.schema, document, None, context, variables, operation_name)
        return source if isinstance(source, Source) else _errors_only(source)

    def runner(
        self, document: DocumentNode, variables: dict[str, Any] | None, operation_name: str | None, context: Context
    ) -> Run:
        """One execution of the subscription's selection for one event, as result JSON; counted."""
        counts = self._counts

        def run(root: Any) -> str:
            counts.graphql_executions += 1
            return result_json(execute_sync(self.schema, document, root, context, variables, operation_name))

        return run

    async def subscribe(
        self,
        source: Source,
        run: Run,
        key: Key,
        deliver: Deliver,
        replay: Callable[[str], Awaitable[None]],
    ) -> Membership:
        """Join the shared stream of ``key``, or (``since`` given) open a private one that replays first."""
        if source.since is None:
            return await self.streams.join(key, source, run, deliver)
        return await self.streams.open_private(source, run, deliver, replay)


def _errors_only(result: Any) -> ExecutionResult:
    if isinstance(result, ExecutionResult):
        return result
    return ExecutionResult(None, [GraphQLError("Subscription field must return a Herald source.")])


def stream_key(
    query: str, operation_name: str | None, variables: dict[str, Any] | None, channels: frozenset[str] | None
) -> Key:
    """What makes two subscriptions identical: same text, operation, variables and room restriction."""
    canonical = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS).decode()
    return (query, operation_name, canonical, tuple(sorted(channels)) if channels is not None else None)
