"""What a GraphQL-over-HTTP request is, said once for ``/graphql`` (``http.py``) and ``/graphql/stream``
(``api.sse.graphql``): the JSON body a POST carries (for /docs; the routes read the body themselves, so a
malformed one is a GraphQL 400, not FastAPI's 422) and the parameters' types (a 400 when they are wrong)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_STRING = {"type": "string"}

#: the JSON schema of a POST body
BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {"query": _STRING, "variables": {"type": "object"}, "operationName": _STRING},
}


@dataclass(frozen=True)
class Params:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


def parameters(query: object, variables: object, operation_name: object) -> Params | str:
    """A request's ``query``, ``variables`` and ``operationName``, or why they are not (a 400)."""
    if not isinstance(query, str):
        return "The request has no 'query' string."
    if variables is not None and not isinstance(variables, dict):
        return "'variables' must be a JSON object."
    if operation_name is not None and not isinstance(operation_name, str):
        return "'operationName' must be a string."
    return Params(query, variables, operation_name)
