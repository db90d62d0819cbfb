"""GraphQL subscriptions over graphql-transport-ws (enisdenjo/graphql-ws PROTOCOL.md), resumed on reconnect.

One socket per subscription keeps the reconnect story simple: when it drops, the
operation is sent again on a new socket, with ``since`` = the offset of the last result
when the operation declares a ``$since`` variable (``newBook``, ``chatMessage``), so
nothing is missed and nothing repeats; without one it just resubscribes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from herald_client.core import Disconnect, Frame, Reconnector, SubscriptionTracker, classify_close, classify_handshake
from herald_client.errors import GraphQLError

if TYPE_CHECKING:
    from herald_client.client import HeraldClient

SUBPROTOCOL = "graphql-transport-ws"
_OPERATION_ID = "1"


class _Completed(Exception):
    """The server completed the operation: the iterator ends."""


async def subscribe(
    client: HeraldClient, query: str, variables: dict[str, Any] | None, operation_name: str | None
) -> AsyncGenerator[Frame]:
    tracker = SubscriptionTracker(query, variables)
    reconnector = Reconnector(client.policy, client.rng)
    while True:
        try:
            ws = await connect(
                client.graphql_url(),
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                additional_headers=client.headers(),
                **client.ws_options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            kind, detail, code = classify_handshake(status), f"handshake refused with HTTP {status}", None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            kind, detail, code = Disconnect.RETRY, f"cannot connect: {exc}", None
        else:
            try:
                async with ws:
                    await _start(client, ws, query, tracker.variables_for_next_attempt(), operation_name)
                    reconnector.connected()
                    async for raw in ws:
                        message = json.loads(raw)
                        if message.get("type") == "ping":
                            await ws.send(json.dumps({"type": "pong"}))
                        result = _receive(message)
                        if result is not None and tracker.accept(result):
                            yield result
            except _Completed:
                return
            except (ConnectionClosed, TimeoutError, ValueError):
                pass
            code = ws.close_code
            kind, detail = classify_close(code), f"close {code} {ws.close_reason or ''}".strip()
        await asyncio.sleep(reconnector.next_delay(kind, detail, code))  # raises on auth and fatal codes


async def _start(
    client: HeraldClient, ws: ClientConnection, query: str, variables: dict[str, Any], operation_name: str | None
) -> None:
    """``connection_init`` (token in the payload), wait for the ack, ``subscribe``."""
    payload: dict[str, Any] = {"token": client.token} if client.token else {}
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    async with asyncio.timeout(client.open_timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "connection_ack":
                break
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
    operation: dict[str, Any] = {"query": query, "variables": variables}
    if operation_name is not None:
        operation["operationName"] = operation_name
    await ws.send(json.dumps({"type": "subscribe", "id": _OPERATION_ID, "payload": operation}))


def _receive(message: Frame) -> Frame | None:
    """A server message -> a result for the application, None for protocol chatter; raises at the end."""
    kind = message.get("type")
    if kind == "next" and message.get("id") == _OPERATION_ID:
        payload = message.get("payload")
        return payload if isinstance(payload, dict) else {"data": None}
    if kind == "error" and message.get("id") == _OPERATION_ID:
        errors = message.get("payload")
        raise GraphQLError(errors if isinstance(errors, list) else [{"message": str(errors)}])
    if kind == "complete" and message.get("id") == _OPERATION_ID:
        raise _Completed
    return None
