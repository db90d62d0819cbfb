"""``/graphql`` over HTTP: ``POST`` with a JSON body, ``GET ?query=`` for queries only.

Responses are ``application/json`` ``{"data", "errors"}``. Status codes, as GraphQL over HTTP (application/json)
and SPEC §7 want them:

- 200 for every well-formed request, errors included (syntax, validation, resolver errors such as a duplicate
  ISBN, or ``redis is unavailable`` on a query);
- 400 when the request itself is malformed (not JSON, no ``query`` string, ``variables`` not an object);
- 405 for a mutation (or subscription) sent with GET;
- 401 for a mutation without a valid token when auth is on (a query with an invalid token too: reads are open,
  but a token that is given must be valid), with a GraphQL ``errors`` body;
- 503 for a mutation Redis did not run or did not confirm (the error says which; a retry is safe with a key).

A browser's GET without a query gets a minimal, self-contained query page (no CDN is reachable offline).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse
from graphql import GraphQLError, OperationType

from api.auth import Principal, token_from
from api.errors import Unauthorized
from api.graphql.graphiql import PAGE
from api.graphql.schema import Context
from api.graphql.service import GraphQLService, result_json
from api.state import AppState
from broker import Unavailable

router = APIRouter(tags=["graphql"])

JSON = "application/json"

# The routes read the request themselves (a malformed one is a GraphQL 400, not FastAPI's 422), so their
# OpenAPI description is written out here for /docs.
_STRING = {"type": "string"}
_POST_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["query"],
                    "properties": {"query": _STRING, "variables": {"type": "object"}, "operationName": _STRING},
                },
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


def _errors(status_code: int, errors: list[Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"errors": errors}), status_code=status_code, media_type=JSON, headers=headers)


def _refuse(status_code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _errors(status_code, [{"message": message}], headers)


@router.post("/graphql", summary="Run a GraphQL query or mutation", response_class=Response, openapi_extra=_POST_DOC)
async def graphql_post(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except ValueError:
        return _refuse(status.HTTP_400_BAD_REQUEST, "The request body is not JSON.")
    if not isinstance(body, dict):
        return _refuse(status.HTTP_400_BAD_REQUEST, "The request body must be a JSON object (no batches).")
    return await _run(request, body.get("query"), body.get("variables"), body.get("operationName"), get=False)


@router.get("/graphql", summary="Run a GraphQL query (queries only)", response_class=Response, openapi_extra=_GET_DOC)
async def graphql_get(request: Request) -> Response:
    params = request.query_params
    query = params.get("query")
    if query is None:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(PAGE)
        return _refuse(status.HTTP_400_BAD_REQUEST, "Must provide query string.")
    try:
        variables = orjson.loads(params["variables"]) if params.get("variables") else None
    except ValueError:
        return _refuse(status.HTTP_400_BAD_REQUEST, "The 'variables' parameter is not JSON.")
    return await _run(request, query, variables, params.get("operationName") or None, get=True)


async def _run(request: Request, query: object, variables: object, operation_name: object, *, get: bool) -> Response:
    if not isinstance(query, str):
        return _refuse(status.HTTP_400_BAD_REQUEST, "The request has no 'query' string.")
    if variables is not None and not isinstance(variables, dict):
        return _refuse(status.HTTP_400_BAD_REQUEST, "'variables' must be a JSON object.")
    if operation_name is not None and not isinstance(operation_name, str):
        return _refuse(status.HTTP_400_BAD_REQUEST, "'operationName' must be a string.")
    state: AppState = request.app.state.herald
    service: GraphQLService = state.graphql
    prepared = service.prepare(query)
    operation = prepared.operation(operation_name)
    kind = operation.operation if operation is not None else None
    if get and kind not in (None, OperationType.QUERY):
        assert kind is not None
        return _refuse(
            status.HTTP_405_METHOD_NOT_ALLOWED,
            f"GET runs queries only; send this {kind.value} with POST.",
            {"Allow": "POST"},
        )
    try:
        principal = _principal(request, state, write=kind is OperationType.MUTATION)
    except Unauthorized as exc:
        return _refuse(status.HTTP_401_UNAUTHORIZED, exc.detail, {"WWW-Authenticate": "Bearer"})
    errors = prepared.errors or prepared.operation_errors(operation_name)
    if errors or prepared.document is None:
        return _errors(status.HTTP_200_OK, [error.formatted for error in errors])
    if kind is OperationType.SUBSCRIPTION:
        message = "Subscriptions need a WebSocket: connect to /graphql with graphql-transport-ws or graphql-ws."
        return _refuse(status.HTTP_200_OK, message)
    result = await service.execute(prepared.document, variables, operation_name, Context(state, principal))
    unavailable = kind is OperationType.MUTATION and any(map(_is_unavailable, result.errors or ()))
    return Response(
        result_json(result),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE if unavailable else status.HTTP_200_OK,
        media_type=JSON,
    )


def _principal(request: Request, state: AppState, *, write: bool) -> Principal | None:
    """Who is asking: anonymous when auth is off; a verified token's principal; None for an open read."""
    auth = state.auth
    if not auth.enabled:
        return auth.principal(None)
    token = token_from(request.query_params, request.headers)
    if token is None:
        if write:
            raise Unauthorized("a bearer token is required to write")
        return None
    return auth.verify(token)


def _is_unavailable(error: GraphQLError) -> bool:
    return isinstance(error.original_error, Unavailable)
