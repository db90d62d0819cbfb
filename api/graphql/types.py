"""Wire shapes of Herald's two GraphQL WebSocket subprotocols, and the actions their machines return.

Both machines (``transport_ws.GraphQLTransportWS`` and ``legacy_ws.GraphQLWS``) are sans-I/O: they take one
incoming text frame or one tick and return a list of actions, awaiting nothing. A runner executes the actions
in order (``Send`` and ``Close`` are shared with the chat machine, ``api.ws.actions``):

- ``Send(text)``: send ``text`` as one text frame.
- ``Close(code, reason)``: close the socket. The machine is finished afterwards and returns ``[]`` to everything;
  the runner still calls ``closed()`` once the socket is gone, to cancel what is left.
- ``Start(op_id, ...)``: execute the operation; feed its results back through ``next``/``error``/``complete``.
- ``Stop(op_id)``: the client stopped the operation; cancel it *before* acting on any later action (a legacy
  client may restart the same id right after, and results of the old run must not reach the new one).

``graphql-transport-ws`` is enisdenjo/graphql-ws PROTOCOL.md; ``graphql-ws`` is apollographql
subscriptions-transport-ws PROTOCOL.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from api.ws.actions import Close, Send

GRAPHQL_TRANSPORT_WS_PROTOCOL = "graphql-transport-ws"
GRAPHQL_WS_PROTOCOL = "graphql-ws"  # the legacy subscriptions-transport-ws protocol
SUBPROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL)


# --- actions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    op_id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


@dataclass(frozen=True, slots=True)
class Stop:
    op_id: str


Action = Send | Close | Start | Stop

Authorizer = Callable[[dict[str, Any] | None], object | None]
"""Called with the ``connection_init`` payload (None if absent); returns a principal to accept, None to reject."""


class GraphQLWSMachine(Protocol):
    """What one runner drives, whichever subprotocol the client chose."""

    principal: object | None

    def receive(self, text: str) -> list[Action]: ...
    def init_timeout(self) -> list[Action]: ...
    def keepalive(self) -> list[Action]: ...
    def next(self, op_id: str, result_json: str) -> list[Action]: ...
    def error(self, op_id: str, errors_json: str) -> list[Action]: ...
    def complete(self, op_id: str) -> list[Action]: ...
    def closed(self) -> list[str]: ...


# --- shared by both protocols --------------------------------------------------------------------------------


class OperationTable:
    """What both machines share: the connection's principal, its running operation ids, and its end."""

    def __init__(self, authorize: Authorizer) -> None:
        self._authorize = authorize
        self.principal: object | None = None
        self._finished = False
        self._active: dict[str, None] = {}  # insertion-ordered set of running operation ids

    def closed(self) -> list[str]:
        """The connection is over: the ids still running, for the runner to cancel."""
        self._finish()
        ids, self._active = list(self._active), {}
        return ids

    def _running(self, op_id: str) -> bool:
        return not self._finished and op_id in self._active

    def _end(self, op_id: str) -> bool:
        """Forget ``op_id``; False if it was not running (or the connection is over)."""
        if not self._running(op_id):
            return False
        del self._active[op_id]
        return True

    def _finish(self) -> None:
        self._finished = True


class ConnectionAckMessage(TypedDict):
    """Direction: Server -> Client."""

    type: Literal["connection_ack"]
    payload: NotRequired[dict[str, Any]]


class CompleteMessage(TypedDict):
    """Direction: Server -> Client (both protocols); also Client -> Server in graphql-transport-ws."""

    type: Literal["complete"]
    id: str


# --- graphql-transport-ws ------------------------------------------------------------------------------------


class PongMessage(TypedDict):
    """Direction: bidirectional."""

    type: Literal["pong"]
    payload: NotRequired[dict[str, Any] | None]


# --- graphql-ws (legacy) -------------------------------------------------------------------------------------


class ConnectionErrorMessage(TypedDict):
    """Direction: Server -> Client. Rejected init (then close), or an unparsable frame (socket stays open)."""

    type: Literal["connection_error"]
    payload: dict[str, Any]


class KeepAliveMessage(TypedDict):
    """Direction: Server -> Client, right after ``connection_ack`` and then periodically."""

    type: Literal["ka"]


class LegacyErrorMessage(TypedDict):
    """Direction: Server -> Client. One error object (not a list); the operation is over."""

    type: Literal["error"]
    id: NotRequired[Any]
    payload: dict[str, Any]
