"""Sans-I/O server side of the legacy ``graphql-ws`` subprotocol (apollographql/subscriptions-transport-ws).

Rules, as PROTOCOL.md states them and the reference ``src/server.ts`` implements them:

- ``connection_init`` -> authorize -> ``connection_ack`` then ``ka``; rejected -> ``connection_error``
  ``{"message": "Forbidden"}`` then close 4403. A repeated init is acknowledged again.
- A frame that is not a JSON object gets ``connection_error`` ``{"message": ...}``; the socket stays open.
- ``start``/``stop`` sent before ``connection_init`` wait for it, as the reference server chains them on its
  init promise; a rejected init drops them.
- ``start`` with an id that is running stops the old operation first; a ``start`` the server cannot run gets an
  ``error`` frame for its id.
- ``stop`` of a running operation -> the server answers ``complete`` (clients such as gql wait for it).
- ``connection_terminate`` closes 1000. An unknown type gets ``error`` ``{"message": "Invalid message type!"}``.
- Server ``error`` carries one error object (not a list) and ends the operation without ``complete``.

The protocol has no init timeout; Herald's ``init_timeout()`` sends ``connection_error`` and closes 4408 so a
silent socket cannot hold operations queued forever.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from api.errors import CLOSE_CODE_EXPLANATIONS, CloseCode
from api.graphql.types import (
    Action,
    Authorizer,
    CompleteMessage,
    ConnectionAckMessage,
    ConnectionErrorMessage,
    KeepAliveMessage,
    LegacyErrorMessage,
    OperationTable,
    Start,
    Stop,
)
from api.ws.actions import Close, Send

logger = logging.getLogger(__name__)

MAX_PENDING = 100  # start/stop frames held while waiting for connection_init

_ACK = orjson.dumps(ConnectionAckMessage(type="connection_ack")).decode()
_KA = orjson.dumps(KeepAliveMessage(type="ka")).decode()


def _encode(message: object) -> str:
    return orjson.dumps(message).decode()


def _connection_error(message: str) -> Send:
    frame: ConnectionErrorMessage = {"type": "connection_error", "payload": {"message": message}}
    return Send(_encode(frame))


def _error_frame(message: dict[str, Any], reason: str) -> Send:
    frame: LegacyErrorMessage = {"type": "error", "payload": {"message": reason}}
    if "id" in message:  # echo whatever the client sent, so it can match the error to its request
        frame["id"] = message["id"]
    return Send(_encode(frame))


def _start_problem(payload: dict[str, Any]) -> str | None:
    """Why a ``start`` payload cannot run, or None if it can."""
    if not isinstance(payload.get("query"), str):
        return "start message payload expects the 'query' property to be a string"
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return "start message payload expects the 'variables' property to be an object or null"
    if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
        return "start message payload expects the 'operationName' property to be a string or null"
    return None


class GraphQLWS(OperationTable):
    """One legacy ``graphql-ws`` connection: feed it frames and ticks, execute the actions it returns."""

    def __init__(self, authorize: Authorizer) -> None:
        super().__init__(authorize)
        self._pending: list[dict[str, Any]] = []

    def receive(self, text: str) -> list[Action]:
        if self._finished:
            return []
        try:
            message = orjson.loads(text)
        except ValueError as exc:
            return [_connection_error(str(exc))]
        if not isinstance(message, dict):
            return [_connection_error("Message must be a JSON object")]
        type_ = message.get("type")
        if type_ == "connection_init":
            return self._connection_init(message.get("payload"))
        if type_ == "connection_terminate":
            return self._close(CloseCode.NORMAL, "connection_terminate")
        if type_ in ("start", "stop"):
            if self.principal is not None:
                return self._operation(message)
            if len(self._pending) >= MAX_PENDING:
                return [_connection_error("Too many operations before connection_init")]
            self._pending.append(message)
            return []
        return [_error_frame(message, "Invalid message type!")]

    def _connection_init(self, payload: object) -> list[Action]:
        if payload is not None and not isinstance(payload, dict):
            return [_connection_error("connection_init message expects the 'payload' property to be an object")]
        if self.principal is not None:
            return [Send(_ACK), Send(_KA)]
        try:
            principal = self._authorize(payload)
        except Exception:
            logger.exception("authorizer raised on connection_init")
            return [
                _connection_error("Internal server error"),
                *self._close(CloseCode.INTERNAL_ERROR, CLOSE_CODE_EXPLANATIONS[CloseCode.INTERNAL_ERROR]),
            ]
        if principal is None:
            return [_connection_error("Forbidden"), *self._close(CloseCode.GQL_FORBIDDEN, "Forbidden")]
        self.principal = principal
        actions: list[Action] = [Send(_ACK), Send(_KA)]
        pending, self._pending = self._pending, []
        for message in pending:
            actions += self._operation(message)
        return actions

    def _operation(self, message: dict[str, Any]) -> list[Action]:
        op_id = message.get("id")
        if message["type"] == "stop":
            if not isinstance(op_id, str) or not self._end(op_id):
                return []
            done: CompleteMessage = {"type": "complete", "id": op_id}
            return [Stop(op_id), Send(_encode(done))]
        if not isinstance(op_id, str):
            return [_error_frame(message, "start message expects the 'id' property to be a string")]
        # the reference server unsubscribes a running operation with this id before looking at the new one
        actions: list[Action] = [Stop(op_id)] if self._end(op_id) else []
        payload = message.get("payload")
        if not isinstance(payload, dict):
            return [*actions, _error_frame(message, "start message expects the 'payload' property to be an object")]
        problem = _start_problem(payload)
        if problem is not None:
            return [*actions, _error_frame(message, problem)]
        self._active[op_id] = None
        return [*actions, Start(op_id, payload["query"], payload.get("variables"), payload.get("operationName"))]

    def init_timeout(self) -> list[Action]:
        if self._finished or self.principal is not None:
            return []
        reason = CLOSE_CODE_EXPLANATIONS[CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT]
        return [_connection_error(reason), *self._close(CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT, reason)]

    def keepalive(self) -> list[Action]:
        if self._finished or self.principal is None:
            return []
        return [Send(_KA)]

    def next(self, op_id: str, result_json: str) -> list[Action]:
        if not self._running(op_id):
            return []
        # result_json is shared by every subscriber of the same document: splice it, never re-encode it
        return [Send('{"type":"data","id":' + _encode(op_id) + ',"payload":' + result_json + "}")]

    def error(self, op_id: str, errors_json: str) -> list[Action]:
        if not self._end(op_id):
            return []
        try:
            errors = orjson.loads(errors_json)
        except ValueError:
            errors = None
        # the protocol's error payload is one error object; clients (gql, apollo) accept exactly that
        first = errors[0] if isinstance(errors, list) and errors else errors
        frame: LegacyErrorMessage = {
            "type": "error",
            "id": op_id,
            "payload": first if isinstance(first, dict) else {"message": "Unknown error"},
        }
        return [Send(_encode(frame))]

    def complete(self, op_id: str) -> list[Action]:
        if not self._end(op_id):
            return []
        done: CompleteMessage = {"type": "complete", "id": op_id}
        return [Send(_encode(done))]

    def _finish(self) -> None:
        super()._finish()
        self._pending = []

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        self._finish()
        return [Close(code, reason)]
