"""``/graphql`` over HTTP: ``POST`` with a JSON body, ``GET ?query=`` for queries only.

GraphQL over HTTP (graphql/graphql-over-http) as SPEC §5 and §7 want it; the npm ``graphql-http`` package's
server audits pass every MUST and SHOULD (tests/e2e/test_graphql_http_audit.py):

- the response media type follows ``Accept``, first acceptable entry wins (as graphql-http's own server does):
  ``application/graphql-response+json``, or ``application/json`` (also for ``*/*``, ``application/*`` and no
  ``Accept``); anything else is 406;
- a POST body must be ``application/json`` (charset utf-8 or none): anything else, ``text/plain`` and form
  encodings included, is 415 and never runs, because a cross-site page can send those without a preflight;
- 400 when the request itself is malformed (not JSON, no ``query`` string, ``variables`` or ``extensions`` not an
  object, ``operationName`` not a string);
- under ``application/json``, 200 for every well-formed request, errors included (syntax, validation, variable
  coercion, resolver errors such as a duplicate ISBN, or ``redis is unavailable`` on a query); under
  ``application/graphql-response+json`` a request that fails to parse, validate or coerce its variables is 400
  (no ``data`` entry), and a result with ``data`` is 200;
- 405 for a mutation (or subscription) sent with GET;
- 401 for a mutation without a valid token when auth is on (or for any request carrying an invalid token), with a
  GraphQL ``errors`` body;
- 503 for a mutation Redis did not run or did not confirm (the error says which; a retry is safe with a key).

A browser's GET without a query gets a minimal, self-contained query page (no CDN is reachable offline).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse
from graphql import GraphQLError, OperationType
from graphql.execution.values import get_variable_values

from api.errors import RateLimited, Unauthorized
from api.graphql.graphiql import PAGE
from api.graphql.request import BODY_SCHEMA, Params, parameters
from api.identity import Access, identify
from api.limits import writer_key
from api.state import AppState
from broker import Unavailable

router = APIRouter(tags=["graphql"])

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"

# The routes read the request themselves (api.graphql.request), so their OpenAPI description is written out here.
_STRING = {"type": "string"}
_POST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": BODY_SCHEMA,
                "example": {"query": "{ books(limit: 5) { isbn title author offset } }"},
            }
        },
    }
}
_GET_DOC: dict[str, Any] = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": _STRING, "description": description}
        for name, description in (
            ("query", "the GraphQL document (a query)"),
            ("variables", "JSON object"),
            ("operationName", "which operation of the document to run"),
        )
    ]
}


#: longest error message sent back; graphql-core quotes the offending token or operation name, which a
#: 1 MiB body could make 1 MiB long (SPEC §8: error responses never echo large inputs)
MAX_MESSAGE_CHARS = 1024


def _bounded(errors: list[Any]) -> list[Any]:
    for error in errors:
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str) and len(message) > MAX_MESSAGE_CHARS:
            error["message"] = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return errors


def _errors(status_code: int, errors: list[Any], media: str = JSON, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"errors": _bounded(errors)})
    return Response(body, status_code=status_code, media_type=media, headers=headers)


def _refuse(status_code: int, message: str, media: str = JSON, headers: dict[str, str] | None = None) -> Response:
    return _errors(status_code, [{"message": message}], media, headers)


def response_type(accept: str | None) -> str | None:
    """The media type to answer with, from ``Accept``; None when neither JSON type is acceptable."""
    if not accept:
        return JSON
    for entry in accept.replace(" ", "").lower().split(","):
        media, *params = entry.split(";")
        if any(param.startswith("charset=") and param != "charset=utf-8" for param in params):
            continue
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            return JSON
    return None


def is_json_body(content_type: str | None) -> bool:
    """``application/json``, with no charset or utf-8: the only body a POST may carry."""
    if not content_type:
        return False
    media, *params = content_type.replace(" ", "").lower().split(";")
    charsets = [param for param in params if param.startswith("charset=")]
    return media == JSON and all(charset == "charset=utf-8" for charset in charsets)


@router.post("/graphql", summary="Run a GraphQL query or mutation", response_class=Response, openapi_extra=_POST_DOC)
async def graphql_post(request: Request) -> Response:
    media = response_type(request.headers.get("accept"))
    if media is None:
        return _refuse(status.HTTP_406_NOT_ACCEPTABLE, f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}.")
    if not is_json_body(request.headers.get("content-type")):
        # Checked before the body is read: a form or text/plain POST (no CORS preflight) never runs.
        message = "The request body must be application/json (charset utf-8)."
        return _refuse(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, message, media)
    try:
        body = orjson.loads(await request.body())
    except ValueError:
        return _refuse(status.HTTP_400_BAD_REQUEST, "The request body is not JSON.", media)
    if not isinstance(body, dict):
        return _refuse(status.HTTP_400_BAD_REQUEST, "The request body must be a JSON object (no batches).", media)
    if body.get("extensions") is not None and not isinstance(body["extensions"], dict):
        return _refuse(status.HTTP_400_BAD_REQUEST, "'extensions' must be a JSON object.", media)
    return await _run(
        request, parameters(body.get("query"), body.get("variables"), body.get("operationName")), media, get=False
    )


@router.get("/graphql", summary="Run a GraphQL query (queries only)", response_class=Response, openapi_extra=_GET_DOC)
async def graphql_get(request: Request) -> Response:
    params = request.query_params
    query = params.get("query")
    if query is None and "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(PAGE)
    media = response_type(request.headers.get("accept"))
    if media is None:
        return _refuse(status.HTTP_406_NOT_ACCEPTABLE, f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}.")
    if query is None:
        return _refuse(status.HTTP_400_BAD_REQUEST, "Must provide query string.", media)
    try:
        variables = orjson.loads(params["variables"]) if params.get("variables") else None
        extensions = orjson.loads(params["extensions"]) if params.get("extensions") else None
    except ValueError:
        return _refuse(status.HTTP_400_BAD_REQUEST, "'variables' and 'extensions' must be JSON.", media)
    if extensions is not None and not isinstance(extensions, dict):
        return _refuse(status.HTTP_400_BAD_REQUEST, "'extensions' must be a JSON object.", media)
    return await _run(request, parameters(query, variables, params.get("operationName") or None), media, get=True)


async def _run(request: Request, parsed: Params | str, media: str, *, get: bool) -> Response:
    if isinstance(parsed, str):
        return _refuse(status.HTTP_400_BAD_REQUEST, parsed, media)
    query, variables, operation_name = parsed.query, parsed.variables, parsed.operation_name
    state: AppState = request.app.state.herald
    service = state.graphql
    prepared = service.prepare(query)
    operation = prepared.operation(operation_name)
    kind = operation.operation if operation is not None else None
    if get and kind not in (None, OperationType.QUERY):
        assert kind is not None
        return _refuse(
            status.HTTP_405_METHOD_NOT_ALLOWED,
            f"GET runs queries only; send this {kind.value} with POST.",
            media,
            {"Allow": "POST"},
        )
    try:
        access = Access.WRITE if kind is OperationType.MUTATION else Access.READ
        principal = identify(state.auth, access, request.query_params, request.headers)
    except Unauthorized as exc:
        return _refuse(status.HTTP_401_UNAUTHORIZED, exc.detail, media, {"WWW-Authenticate": "Bearer"})
    if kind is OperationType.MUTATION and principal is not None:
        client = request.client.host if request.client else None
        try:
            state.write_limits.take(writer_key(principal.user, client, state.auth.enabled))
        except RateLimited as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            return _refuse(status.HTTP_429_TOO_MANY_REQUESTS, exc.detail, media, headers)
    # Under application/graphql-response+json a request that cannot execute (no "data" entry) is a 400.
    refused = status.HTTP_400_BAD_REQUEST if media == GRAPHQL_RESPONSE else status.HTTP_200_OK
    errors = prepared.errors or prepared.operation_errors(operation_name)
    if errors or prepared.document is None or operation is None:
        return _errors(refused, [error.formatted for error in errors], media)
    if kind is OperationType.SUBSCRIPTION:
        message = "Subscriptions need a WebSocket: connect to /graphql with graphql-transport-ws or graphql-ws."
        return _refuse(refused, message, media)
    coerced = get_variable_values(service.schema, operation.variable_definitions, variables or {}, max_errors=50)
    if isinstance(coerced, list):
        return _errors(refused, [error.formatted for error in coerced], media)
    result = await service.execute(prepared.document, variables, operation_name, service.context(principal))
    unavailable = kind is OperationType.MUTATION and any(map(_is_unavailable, result.errors or ()))
    formatted = result.formatted
    if formatted.get("errors"):
        _bounded(formatted["errors"])
    return Response(
        orjson.dumps(formatted),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE if unavailable else status.HTTP_200_OK,
        media_type=media,
    )


def _is_unavailable(error: GraphQLError) -> bool:
    return isinstance(error.original_error, Unavailable)
