"""Sans-I/O server side of ``graphql-transport-ws`` (enisdenjo/graphql-ws PROTOCOL.md).

Rules, in the order the reference server (graphql-ws ``src/server.ts``) applies them:

- Every frame is validated first (``validateMessage`` in ``src/common.ts``); anything invalid closes 4400 with a
  reason saying what was wrong, even before ``connection_init``.
- ``connection_init`` (payload an object, null or missing) -> authorize -> ``connection_ack``, or close 4403.
  A second ``connection_init`` closes 4429, whatever became of the first.
- No ``connection_init`` *received* by ``init_timeout()`` closes 4408 (an init that was rejected already closed).
- ``ping`` -> ``pong`` echoing the payload, at any time; ``pong`` is ignored.
- ``subscribe`` before the ack closes 4401; with an id still active closes 4409.
- Client ``complete`` stops the operation and no server ``complete`` follows for it; an unknown id is ignored.
- Server ``error`` ends the operation without ``complete``. Results for inactive ids are dropped.
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
    OperationTable,
    PongMessage,
    Start,
    Stop,
)
from api.ws.actions import Close, Send

logger = logging.getLogger(__name__)

MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame body is at most 125 bytes, 2 of them the code
_SERVER_TYPES = frozenset({"connection_ack", "next", "error"})


class InvalidMessage(ValueError):
    """The reason a frame broke PROTOCOL.md; becomes the 4400 close reason."""


def close_action(code: CloseCode, reason: str) -> Close:
    """``Close`` whose reason fits a close frame; too long (or unencodable) falls back to the standard text."""
    try:
        fits = len(reason.encode()) <= MAX_CLOSE_REASON_BYTES
    except UnicodeEncodeError:
        fits = False
    return Close(code, reason if fits else CLOSE_CODE_EXPLANATIONS[code])


def kind(value: object) -> str:
    """A JSON value's type in JavaScript words, as graphql-ws's ``extendedTypeof`` names it in its errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _optional_object(message: dict[str, Any], key: str, where: str) -> None:
    value = message.get(key)
    if value is not None and not isinstance(value, dict):
        got = kind(value)
        raise InvalidMessage(
            f"{where} expects the '{key}' property to be an object or nullish or missing, but got {got}"
        )


def _require_id(message: dict[str, Any], type_: str) -> None:
    op_id = message.get("id", ...)
    if not isinstance(op_id, str):
        got = _kind_or_missing(op_id)
        raise InvalidMessage(f"\"{type_}\" message expects the 'id' property to be a string, but got {got}")
    if not op_id:
        raise InvalidMessage(f"\"{type_}\" message requires a non-empty 'id' property")


def _kind_or_missing(value: object) -> str:
    return "undefined" if value is ... else kind(value)


def parse_message(text: str) -> dict[str, Any]:
    """Decode and validate one client frame, or raise ``InvalidMessage`` with a helpful reason."""
    try:
        message = orjson.loads(text)
    except ValueError as exc:
        raise InvalidMessage(f"Invalid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise InvalidMessage(f"Message is expected to be an object, but got {kind(message)}")
    type_ = message.get("type")
    if type_ is None or type_ == "":
        raise InvalidMessage("Message is missing the 'type' property")
    if not isinstance(type_, str):
        raise InvalidMessage(f"Message expects the 'type' property to be a string, but got {kind(type_)}")
    if type_ in ("connection_init", "ping", "pong"):
        _optional_object(message, "payload", f'"{type_}" message')
    elif type_ == "subscribe":
        _require_id(message, type_)
        payload = message.get("payload", ...)
        if not isinstance(payload, dict):
            got = _kind_or_missing(payload)
            raise InvalidMessage(f"\"subscribe\" message expects the 'payload' property to be an object, but got {got}")
        if not isinstance(payload.get("query"), str):
            got = _kind_or_missing(payload.get("query", ...))
            raise InvalidMessage(
                f"\"subscribe\" message payload expects the 'query' property to be a string, but got {got}"
            )
        _optional_object(payload, "variables", '"subscribe" message payload')
        _optional_object(payload, "extensions", '"subscribe" message payload')
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            raise InvalidMessage(
                "\"subscribe\" message payload expects the 'operationName' property to be a string or nullish "
                f"or missing, but got {kind(name)}"
            )
    elif type_ == "complete":
        _require_id(message, type_)
    elif type_ in _SERVER_TYPES:
        raise InvalidMessage(f'Unexpected message of type "{type_}" received')
    else:
        raise InvalidMessage(f"Invalid message 'type' property \"{type_}\"")
    return message


def _encode(message: object) -> str:
    return orjson.dumps(message).decode()


class GraphQLTransportWS(OperationTable):
    """One ``graphql-transport-ws`` connection: feed it frames and ticks, execute the actions it returns."""

    def __init__(self, authorize: Authorizer) -> None:
        super().__init__(authorize)
        self._init_received = False

    def receive(self, text: str) -> list[Action]:
        if self._finished:
            return []
        try:
            message = parse_message(text)
        except InvalidMessage as exc:
            return self._close(CloseCode.GQL_BAD_REQUEST, str(exc))
        type_ = message["type"]
        if type_ == "connection_init":
            return self._connection_init(message.get("payload"))
        if type_ == "ping":
            pong: PongMessage = {"type": "pong"}
            if message.get("payload") is not None:
                pong["payload"] = message["payload"]
            return [Send(_encode(pong))]
        if type_ == "pong":
            return []
        if type_ == "subscribe":
            return self._subscribe(message["id"], message["payload"])
        # complete: the client stopped listening, so the operation ends without our ``complete``
        return [Stop(message["id"])] if self._end(message["id"]) else []

    def _connection_init(self, payload: dict[str, Any] | None) -> list[Action]:
        if self._init_received:
            return self._close(CloseCode.GQL_TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests")
        self._init_received = True
        try:
            principal = self._authorize(payload)
        except Exception:
            logger.exception("authorizer raised on connection_init")
            return self._close(CloseCode.GQL_INTERNAL_SERVER_ERROR, "Internal server error")
        if principal is None:
            return self._close(CloseCode.GQL_FORBIDDEN, "Forbidden")
        self.principal = principal
        ack: ConnectionAckMessage = {"type": "connection_ack"}
        return [Send(_encode(ack))]

    def _subscribe(self, op_id: str, payload: dict[str, Any]) -> list[Action]:
        if self.principal is None:
            return self._close(CloseCode.GQL_UNAUTHORIZED, "Unauthorized")
        if op_id in self._active:
            return self._close(CloseCode.GQL_SUBSCRIBER_ALREADY_EXISTS, f"Subscriber for {op_id} already exists")
        self._active[op_id] = None
        return [Start(op_id, payload["query"], payload.get("variables"), payload.get("operationName"))]

    def init_timeout(self) -> list[Action]:
        if self._finished or self._init_received:
            return []
        return self._close(CloseCode.GQL_CONNECTION_INITIALISATION_TIMEOUT, "Connection initialisation timeout")

    def keepalive(self) -> list[Action]:
        return []  # this protocol keeps alive with client pings (and WebSocket pings from the server)

    def next(self, op_id: str, result_json: str) -> list[Action]:
        if not self._running(op_id):
            return []
        # result_json is shared by every subscriber of the same document: splice it, never re-encode it
        return [Send('{"id":' + _encode(op_id) + ',"type":"next","payload":' + result_json + "}")]

    def error(self, op_id: str, errors_json: str) -> list[Action]:
        if not self._end(op_id):
            return []
        return [Send('{"id":' + _encode(op_id) + ',"type":"error","payload":' + errors_json + "}")]

    def complete(self, op_id: str) -> list[Action]:
        if not self._end(op_id):
            return []
        message: CompleteMessage = {"id": op_id, "type": "complete"}
        return [Send(_encode(message))]

    def _close(self, code: CloseCode, reason: str) -> list[Action]:
        self._finish()
        return [close_action(code, reason)]
