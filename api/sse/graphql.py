"""``/graphql/stream``: GraphQL over SSE, the graphql-sse protocol's "distinct connections" mode (SPEC §10).

A POST (JSON body) or GET (``?query=``) with ``Accept: text/event-stream`` runs one operation and
streams ``next`` events, then ``complete``. As the protocol asks, errors found before execution
(syntax, validation, a refused subscription) arrive as a ``next`` event in a 200 stream; only a
malformed request (400), a method a mutation may not use (405), a missing ``Accept`` (406) and
authentication (401) are HTTP errors.

Subscriptions join the same shared streams as the WebSocket transports
(``GraphQLService.subscribe``): one execution per event per replica, and the ``next`` event's
bytes are built once per result, however many SSE members the stream has. A stream that ends
without ``complete`` (a drain, a slow consumer) is a network error to the graphql-sse client,
which retries; a gap reaches the client as ``"extensions": {"recovered": false}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, Request, status
from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.responses import Response

from api.auth import Principal
from api.errors import CloseCode, HeraldError, RateLimited
from api.graphql.request import BODY_SCHEMA, Params, parameters
from api.graphql.schema import Source
from api.graphql.service import GraphQLService, result_json, stream_key
from api.graphql.shared import FellBehind, Key, Run
from api.identity import Access, identify, on_expiry
from api.limits import writer_key
from api.origins import origin_policy
from api.sse.response import MEDIA_TYPE, EventStream200, EventStreamResponse
from api.sse.stream import EventStream, sse_event
from api.state import AppState
from broker import Unavailable

router = APIRouter(tags=["graphql"])

PATH = "/graphql/stream"
COMPLETE = b"event: complete\ndata:\n\n"  # with an empty data line, so a browser EventSource dispatches it

_STRING = {"type": "string"}
_ACCEPT = {"name": "Accept", "in": "header", "required": True, "schema": {"type": "string", "enum": [MEDIA_TYPE]}}
_POST_DOC: dict[str, Any] = {
    "parameters": [_ACCEPT],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": BODY_SCHEMA,
                "example": {"query": 'subscription { chatMessage(room: "lobby") { id user text } }'},
            }
        },
    },
}
_GET_DOC: dict[str, Any] = {
    "parameters": [
        _ACCEPT,
        *(
            {"name": name, "in": "query", "required": name == "query", "schema": _STRING}
            for name in ("query", "variables", "operationName")
        ),
    ]
}


class _NextEvent:
    """The ``next`` event of the latest result: a stream hands the same ``str`` to every member in turn,
    so one slot turns it into bytes once per result, not once per subscriber."""

    __slots__ = ("_event", "_result")

    def __init__(self) -> None:
        self._result: str | None = None
        self._event = b""

    def __call__(self, result: str) -> bytes:
        if result is not self._result:
            self._result, self._event = result, sse_event("next", result).encode()
        return self._event


next_event = _NextEvent()


def _json(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"errors": [{"message": message}]})
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def _done(result: str) -> Response:
    """An operation answered at once: one ``next``, then ``complete``."""
    return Response(next_event(result) + COMPLETE, media_type=MEDIA_TYPE, headers={"cache-control": "no-store"})


def _refused(request: Request) -> Response | None:
    """403 for a browser page of an origin that is not allowed (SPEC §7), as for a WebSocket handshake;
    406 for a client that does not accept an event stream; None when the request may go on."""
    state: AppState = request.app.state.herald
    if not origin_policy(state.settings.allowed_origins).allows(request.scope):
        return _json(status.HTTP_403_FORBIDDEN, "origin not allowed")
    if MEDIA_TYPE not in request.headers.get("accept", ""):
        return _json(status.HTTP_406_NOT_ACCEPTABLE, NOT_ACCEPTABLE)
    return None


NOT_ACCEPTABLE = "This endpoint streams server-sent events: send Accept: text/event-stream (or use /graphql)."


@router.post(
    "/graphql/stream",
    summary="Run a GraphQL operation over SSE (graphql-sse)",
    response_class=EventStream200,
    openapi_extra=_POST_DOC,
)
async def graphql_stream_post(request: Request) -> Response:
    if refused := _refused(request):
        return refused
    try:
        body = orjson.loads(await request.body())
    except ValueError:
        return _json(status.HTTP_400_BAD_REQUEST, "The request body is not JSON.")
    if not isinstance(body, dict):
        return _json(status.HTTP_400_BAD_REQUEST, "The request body must be a JSON object (no batches).")
    return await _operation(
        request, parameters(body.get("query"), body.get("variables"), body.get("operationName")), get=False
    )


@router.get(
    "/graphql/stream",
    summary="Run a GraphQL query or subscription over SSE (graphql-sse)",
    response_class=EventStream200,
    openapi_extra=_GET_DOC,
)
async def graphql_stream_get(request: Request) -> Response:
    if refused := _refused(request):
        return refused
    params = request.query_params
    try:
        variables = orjson.loads(params["variables"]) if params.get("variables") else None
    except ValueError:
        return _json(status.HTTP_400_BAD_REQUEST, "The 'variables' parameter is not JSON.")
    return await _operation(
        request, parameters(params.get("query"), variables, params.get("operationName") or None), get=True
    )


async def _operation(request: Request, parsed: Params | str, *, get: bool) -> Response:
    if isinstance(parsed, str):
        return _json(status.HTTP_400_BAD_REQUEST, parsed)
    query, variables, operation_name = parsed.query, parsed.variables, parsed.operation_name
    state: AppState = request.app.state.herald
    service: GraphQLService = state.graphql
    prepared = service.prepare(query)
    operation = prepared.operation(operation_name)
    kind = operation.operation if operation is not None else None
    if get and kind is OperationType.MUTATION:
        return _json(status.HTTP_405_METHOD_NOT_ALLOWED, "GET cannot run a mutation; use POST.", {"Allow": "POST"})
    try:
        principal = _principal(request, state, kind)
    except HeraldError as exc:
        return _json(exc.status_code, exc.detail, {"WWW-Authenticate": "Bearer"})
    if kind is OperationType.MUTATION and principal is not None:
        client = request.client.host if request.client else None
        try:  # the same per-writer bucket as every other write (SPEC §12)
            state.write_limits.take(writer_key(principal.user, client, state.auth.enabled))
        except RateLimited as exc:
            return _json(status.HTTP_429_TOO_MANY_REQUESTS, exc.detail, {"Retry-After": str(exc.retry_after)})
    errors = prepared.errors or prepared.operation_errors(operation_name)
    if errors or prepared.document is None:
        return _done(orjson.dumps({"errors": [error.formatted for error in errors]}).decode())
    context = service.context(principal)
    if kind is not OperationType.SUBSCRIPTION:
        return _done(result_json(await service.execute(prepared.document, variables, operation_name, context)))
    source = await service.source(prepared.document, variables, operation_name, context)
    if isinstance(source, ExecutionResult):  # the subscribe resolver refused (bad room, bad since...)
        return _done(result_json(source))
    key = stream_key(query, operation_name, variables, principal.channels if principal is not None else None)
    run = service.runner(prepared.document, variables, operation_name, context)

    async def serve(stream: EventStream) -> None:
        await _subscription(stream, service, source, run, key, principal, state)

    return EventStreamResponse(state, "graphql", principal.user if principal else "", serve, None)


def _principal(request: Request, state: AppState, kind: OperationType | None) -> Principal | None:
    """Who is asking. As on ``/graphql``: reads are open, a given token must be valid, a mutation needs one.
    A subscription needs one too, as on the WebSocket transports (their ``connection_init``)."""
    access = Access.READ if kind is OperationType.QUERY else Access.SOCKET
    return identify(state.auth, access, request.query_params, request.headers)


async def _subscription(
    stream: EventStream,
    service: GraphQLService,
    source: Source,
    run: Run,
    key: Key,
    principal: Principal | None,
    state: AppState,
) -> None:
    slow_close_s = state.settings.slow_close_s

    def deliver(result: str) -> None:
        stream.push(next_event(result))

    async def replay(result: str) -> None:
        try:
            async with asyncio.timeout(slow_close_s):
                await stream.send_now(sse_event("next", result))
        except TimeoutError:
            raise FellBehind(f"replay not read within {slow_close_s:g} s") from None

    try:
        membership = await service.subscribe(source, run, key, deliver, replay)
    except Unavailable as exc:
        stream.push(next_event(result_json(ExecutionResult(None, [GraphQLError(str(exc))]))))
        stream.push(COMPLETE)
        stream.end(CloseCode.NORMAL, "", flush=True)
        return
    except FellBehind as exc:
        stream.end(CloseCode.TRY_AGAIN_LATER, f"slow consumer: {exc}")
        return
    expires_at = principal.expires_at if principal is not None else None
    expiry = on_expiry(expires_at, stream.end, CloseCode.POLICY_VIOLATION)
    try:
        await stream.serve()
    finally:
        membership.leave()
        if expiry is not None:
            expiry.cancel()
